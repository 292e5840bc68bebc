// decode_request: every stateless rule of docs/protocol.md ("Ops"), in the order a VMM author meets them:
// the header (parse_header), reserved ops, the daemon's host, Header::vsmmu, the fds, the body (zero-extension
// rule), its fields, then the tail. Field names in refusals: header.X and body.X for fixed fields, wishes.X
// (check_wishes), the tail's length fields bare (name_len, device_name_len, engine_len) as split_tail names
// them, the tail's pieces by what they hold (name, device_name, engine), and fds.
#include "service/requests.hpp"

#include <limits>
#include <utility>

#include <fmt/format.h>

namespace vsmmu::service {

namespace {

using Decoded = std::expected<RequestArgs, Refusal>;

std::unexpected<Refusal> refuse(std::uint16_t op, std::string field, std::string reason, int err = EINVAL) {
  return std::unexpected(Refusal{err, op, std::move(field), std::move(reason)});
}

std::string_view host_name(HostKind host) { return host == HostKind::kernel ? "kernel" : "sim"; }

// ---- Header::vsmmu and the fds

enum class Target { none, required, either };

std::optional<Refusal> check_target(const Header& h, Target target) {
  if (target == Target::required && h.vsmmu == 0)
    return Refusal{EINVAL, h.op, "header.vsmmu",
                   fmt::format("is 0; {} acts on one vSMMU: put the handle CREATE_VSMMU's reply gave", op_name(h.op))};
  if (target == Target::none && h.vsmmu != 0)
    return Refusal{EINVAL, h.op, "header.vsmmu",
                   fmt::format("is {}; {} is not addressed to a vSMMU, so it must be 0", h.vsmmu, op_name(h.op))};
  return std::nullopt;
}

std::optional<Refusal> no_fds(std::uint16_t op, std::size_t fds, std::string_view why) {
  if (fds == 0) return std::nullopt;
  return Refusal{EINVAL, op, "fds", fmt::format("{} came with the packet; {} takes none{}", fds, op_name(op), why)};
}

std::optional<Refusal> one_fd(std::uint16_t op, std::size_t fds, std::string_view what) {
  if (fds == 0)
    return Refusal{EBADF, op, "fds", fmt::format("none came with the packet; {} needs {} (SCM_RIGHTS)", op_name(op), what)};
  if (fds > 1)
    return Refusal{EINVAL, op, "fds", fmt::format("{} came with the packet; {} takes exactly one: {}", fds, op_name(op), what)};
  return std::nullopt;
}

// ---- body fields

std::optional<Refusal> zero(std::uint16_t op, const char* field, std::uint64_t value) {
  if (value == 0) return std::nullopt;
  return Refusal{EINVAL, op, field, fmt::format("is {:#x}; reserved fields must be zero in protocol version 1", value)};
}

std::optional<Refusal> aligned(std::uint16_t op, const char* field, std::uint64_t value, std::uint64_t align,
                               std::string_view why) {
  if (value % align == 0) return std::nullopt;
  return Refusal{EINVAL, op, field, fmt::format("{:#x} is not a multiple of {:#x} ({})", value, align, why)};
}

// [start, start + length) must end at or below 2^64.
std::optional<Refusal> fits_64(std::uint16_t op, const char* field, std::uint64_t start, std::uint64_t length,
                               std::string_view start_name) {
  if (length <= std::numeric_limits<std::uint64_t>::max() - start) return std::nullopt;
  return Refusal{EINVAL, op, field,
                 fmt::format("{} + {:#x} passes 2^64 ({} is {:#x})", start_name, length, start_name, start)};
}

// ---- names (tail pieces): a vSMMU's, a device's, a DMA engine's

std::optional<Refusal> name_length(std::uint16_t op, const char* field, std::uint32_t len, bool may_be_empty,
                                   std::string_view what) {
  if (len > kMaxNameLength)
    return Refusal{EINVAL, op, field, fmt::format("{} bytes; {} is at most {} bytes", len, what, kMaxNameLength)};
  if (len == 0 && !may_be_empty) return Refusal{EINVAL, op, field, fmt::format("is 0; {} must be named", what)};
  return std::nullopt;
}

std::optional<Refusal> printable(std::uint16_t op, const char* field, std::span<const std::byte> name) {
  for (std::size_t i = 0; i < name.size(); ++i) {
    const auto c = std::to_integer<unsigned>(name[i]);
    if (c < 0x21 || c > 0x7e)
      return Refusal{EINVAL, op, field,
                     fmt::format("byte {} is {:#04x}; names are printable ASCII without spaces (0x21-0x7e), no "
                                 "terminating NUL",
                                 i, c)};
  }
  return std::nullopt;
}

// The device a CREATE_VSMMU or ATTACH_DEVICE names: the packet's one fd (the VFIO cdev) on the kernel host, the
// name in the tail on the simulated host. Checks the fds and the name's length; the name itself comes later.
std::optional<Refusal> device_source(std::uint16_t op, std::size_t fds, std::uint32_t device_name_len,
                                     const DecodeContext& context) {
  if (context.host == HostKind::kernel) {
    if (auto bad = one_fd(op, fds, "the device's VFIO cdev fd (/dev/vfio/devices/vfioN)")) return bad;
    if (device_name_len != 0)
      return Refusal{EINVAL, op, "device_name_len",
                     fmt::format("is {}; this daemon runs the kernel host, where the device is the fd in the "
                                 "packet: send no name",
                                 device_name_len)};
    return std::nullopt;
  }
  if (auto bad = no_fds(op, fds, ": on the simulated host a device is named in the tail")) return bad;
  return name_length(op, "device_name_len", device_name_len, false, "the device's name (simulated host)");
}

// The device as decode_request hands it on: the packet's fd 0 on the kernel host, the name on the sim host.
DeviceRef device_ref(std::uint32_t vsid, std::span<const std::byte> name, const DecodeContext& context) {
  return DeviceRef{vsid, std::string(as_text(name)), context.host == HostKind::kernel ? 0 : -1};
}

template <class T>
std::expected<Body<T>, Refusal> body_of(const Packet& p) {
  Body<T> b;
  if (auto bad = decode_body(p, b, sizeof(T))) return std::unexpected(std::move(*bad));
  return b;
}

// The tail in `pieces` order and nothing after it.
std::expected<std::vector<std::span<const std::byte>>, Refusal> tail_of(
    std::uint16_t op, std::span<const std::byte> tail, std::span<const std::pair<const char*, std::uint32_t>> pieces) {
  std::vector<std::span<const std::byte>> parts;
  if (auto bad = split_tail(op, tail, pieces, parts)) return std::unexpected(std::move(*bad));
  return parts;
}

std::optional<Refusal> no_tail(std::uint16_t op, std::span<const std::byte> tail) {
  std::vector<std::span<const std::byte>> parts;
  return split_tail(op, tail, {}, parts);
}

// ---- the ops

Decoded hello(const Packet& p) {
  const std::uint16_t op = p.header.op;
  auto b = body_of<HelloRequest>(p);
  if (!b) return std::unexpected(b.error());
  const HelloRequest& r = b->fixed;
  if (r.magic != kMagic)
    return refuse(op, "body.magic", fmt::format("{:#x} is not {:#x} (\"SMMU\"): is this a vsmmud socket?", r.magic, kMagic));
  if (r.version_min > r.version_max)
    return refuse(op, "body.version_min",
                  fmt::format("{} is above version_max {}; offer a range min <= max", r.version_min, r.version_max));
  if (r.version_min > kProtocolVersion || r.version_max < kProtocolVersion)
    return refuse(op, r.version_min > kProtocolVersion ? "body.version_min" : "body.version_max",
                  fmt::format("the range {}-{} does not contain {}: this daemon speaks protocol version {} only",
                              r.version_min, r.version_max, kProtocolVersion, kProtocolVersion));
  if (auto bad = zero(op, "body.reserved", r.reserved)) return std::unexpected(*bad);
  if (auto bad = no_tail(op, b->tail)) return std::unexpected(*bad);
  // Unknown feature bits are the client's offer: the reply's features say which ones the daemon takes.
  return HelloArgs{r};
}

Decoded create(const Packet& p, std::size_t fds, const DecodeContext& context) {
  const std::uint16_t op = p.header.op;
  auto b = body_of<CreateRequest>(p);
  if (!b) return std::unexpected(b.error());
  const CreateRequest& r = b->fixed;
  if (auto bad = device_source(op, fds, r.device_name_len, context)) return std::unexpected(*bad);
  if (r.policy > static_cast<std::uint32_t>(Policy::per_command))
    return refuse(op, "body.policy", fmt::format("{} is not a policy: 0 (batched) or 1 (per_command)", r.policy));
  if (r.flags & ~kKnownCreateFlags)
    return refuse(op, "body.flags",
                  fmt::format("unknown bits {:#x} are set (only {:#x} GBPA abort, {:#x} MSI delivery)",
                              r.flags & ~kKnownCreateFlags, kCreateGbpaAbort, kCreateMsiDelivery));
  if (auto bad = check_wishes(op, r.wishes)) return std::unexpected(*bad);
  if (auto bad = name_length(op, "name_len", r.name_len, true, "the vSMMU's name")) return std::unexpected(*bad);
  const std::pair<const char*, std::uint32_t> pieces[] = {{"name_len", r.name_len},
                                                          {"device_name_len", r.device_name_len}};
  auto parts = tail_of(op, b->tail, pieces);
  if (!parts) return std::unexpected(parts.error());
  if (auto bad = printable(op, "name", (*parts)[0])) return std::unexpected(*bad);
  if (auto bad = printable(op, "device_name", (*parts)[1])) return std::unexpected(*bad);
  return CreateArgs{r, std::string(as_text((*parts)[0])), device_ref(r.vsid, (*parts)[1], context)};
}

Decoded destroy(const Packet& p) {
  auto b = body_of<DestroyRequest>(p);
  if (!b) return std::unexpected(b.error());
  if (auto bad = zero(p.header.op, "body.reserved", b->fixed.reserved)) return std::unexpected(*bad);
  if (auto bad = no_tail(p.header.op, b->tail)) return std::unexpected(*bad);
  return DestroyArgs{};
}

Decoded add_region(const Packet& p, std::size_t fds) {
  const std::uint16_t op = p.header.op;
  if (auto bad = one_fd(op, fds, "the memfd that backs the region")) return std::unexpected(*bad);
  auto b = body_of<AddRegionRequest>(p);
  if (!b) return std::unexpected(b.error());
  const AddRegionRequest& r = b->fixed;
  if (auto bad = zero(op, "body.reserved", r.reserved)) return std::unexpected(*bad);
  constexpr std::string_view why = "regions are mapped in 4 KiB pages";
  if (auto bad = aligned(op, "body.gpa", r.gpa, kRegionAlign, why)) return std::unexpected(*bad);
  if (r.length == 0) return refuse(op, "body.length", "is 0; a region has at least one page");
  if (auto bad = aligned(op, "body.length", r.length, kRegionAlign, why)) return std::unexpected(*bad);
  if (auto bad = aligned(op, "body.fd_offset", r.fd_offset, kRegionAlign, why)) return std::unexpected(*bad);
  if (auto bad = fits_64(op, "body.length", r.gpa, r.length, "gpa")) return std::unexpected(*bad);
  if (auto bad = fits_64(op, "body.length", r.fd_offset, r.length, "fd_offset")) return std::unexpected(*bad);
  if (auto bad = no_tail(op, b->tail)) return std::unexpected(*bad);
  return AddRegionArgs{r.gpa, r.length, r.fd_offset};
}

Decoded remove_region(const Packet& p) {
  const std::uint16_t op = p.header.op;
  auto b = body_of<RemoveRegionRequest>(p);
  if (!b) return std::unexpected(b.error());
  const RemoveRegionRequest& r = b->fixed;
  if (auto bad = zero(op, "body.reserved", r.reserved)) return std::unexpected(*bad);
  if (auto bad = aligned(op, "body.gpa", r.gpa, kRegionAlign, "a region starts on a 4 KiB page"))
    return std::unexpected(*bad);
  if (auto bad = no_tail(op, b->tail)) return std::unexpected(*bad);
  return RemoveRegionArgs{r.gpa};
}

Decoded attach(const Packet& p, std::size_t fds, const DecodeContext& context) {
  const std::uint16_t op = p.header.op;
  auto b = body_of<AttachRequest>(p);
  if (!b) return std::unexpected(b.error());
  const AttachRequest& r = b->fixed;
  if (auto bad = device_source(op, fds, r.device_name_len, context)) return std::unexpected(*bad);
  if (auto bad = zero(op, "body.reserved", r.reserved)) return std::unexpected(*bad);
  const std::pair<const char*, std::uint32_t> pieces[] = {{"device_name_len", r.device_name_len}};
  auto parts = tail_of(op, b->tail, pieces);
  if (!parts) return std::unexpected(parts.error());
  if (auto bad = printable(op, "device_name", (*parts)[0])) return std::unexpected(*bad);
  return AttachArgs{device_ref(r.vsid, (*parts)[0], context)};
}

Decoded detach(const Packet& p) {
  auto b = body_of<DetachRequest>(p);
  if (!b) return std::unexpected(b.error());
  if (auto bad = no_tail(p.header.op, b->tail)) return std::unexpected(*bad);
  return DetachArgs{b->fixed.vsid};
}

// An access to the vSMMU's two 64 KiB register pages: 32 or 64 bits, naturally aligned (IHI 0070 6.2).
std::optional<Refusal> mmio_access(std::uint16_t op, std::uint32_t width, std::uint64_t offset) {
  if (width != 4 && width != 8)
    return Refusal{EINVAL, op, "body.width", fmt::format("{} bytes; SMMU registers are accessed 4 or 8 bytes wide", width)};
  if (offset % width != 0)
    return Refusal{EINVAL, op, "body.offset", fmt::format("{:#x} is not aligned to the {}-byte width", offset, width)};
  if (offset > kMmioSpan - width)
    return Refusal{EINVAL, op, "body.offset",
                   fmt::format("{:#x} + {} is past the register pages 0 and 1 ({:#x} bytes)", offset, width, kMmioSpan)};
  return std::nullopt;
}

Decoded mmio_read(const Packet& p) {
  auto b = body_of<MmioReadRequest>(p);
  if (!b) return std::unexpected(b.error());
  const MmioReadRequest& r = b->fixed;
  if (auto bad = mmio_access(p.header.op, r.width, r.offset)) return std::unexpected(*bad);
  if (auto bad = no_tail(p.header.op, b->tail)) return std::unexpected(*bad);
  return MmioReadArgs{r.offset, r.width};
}

Decoded mmio_write(const Packet& p) {
  const std::uint16_t op = p.header.op;
  auto b = body_of<MmioWriteRequest>(p);
  if (!b) return std::unexpected(b.error());
  const MmioWriteRequest& r = b->fixed;
  if (auto bad = mmio_access(op, r.width, r.offset)) return std::unexpected(*bad);
  if (r.width == 4 && (r.value >> 32) != 0)
    return refuse(op, "body.value", fmt::format("{:#x} does not fit a 4-byte write: the high 32 bits must be zero", r.value));
  if (auto bad = no_tail(op, b->tail)) return std::unexpected(*bad);
  return MmioWriteArgs{r.offset, r.value, r.width, (p.header.flags & kFlagPosted) != 0};
}

Decoded set_irq(const Packet& p, std::size_t fds) {
  const std::uint16_t op = p.header.op;
  if (fds > 1)
    return refuse(op, "fds", fmt::format("{} came with the packet; SET_IRQ takes one eventfd, or none to clear the line", fds));
  auto b = body_of<SetIrqRequest>(p);
  if (!b) return std::unexpected(b.error());
  const SetIrqRequest& r = b->fixed;
  if (r.line > static_cast<std::uint32_t>(IrqLine::cmd_sync))
    return refuse(op, "body.line", fmt::format("{} is not a line: 0 (eventq), 1 (gerror) or 2 (cmd_sync)", r.line));
  if (auto bad = no_tail(op, b->tail)) return std::unexpected(*bad);
  return SetIrqArgs{static_cast<IrqLine>(r.line), fds == 1};
}

Decoded stats(const Packet& p) {
  auto b = body_of<StatsRequest>(p);
  if (!b) return std::unexpected(b.error());
  if (auto bad = zero(p.header.op, "body.reserved", b->fixed.reserved)) return std::unexpected(*bad);
  if (auto bad = no_tail(p.header.op, b->tail)) return std::unexpected(*bad);
  return StatsArgs{};
}

Decoded sim_dma(const Packet& p, const DecodeContext& context) {
  const std::uint16_t op = p.header.op;
  auto b = body_of<SimDmaRequest>(p);
  if (!b) return std::unexpected(b.error());
  const SimDmaRequest& r = b->fixed;
  if (r.direction > static_cast<std::uint32_t>(DmaDirection::read))
    return refuse(op, "body.direction", fmt::format("{} is not a direction: 0 (write) or 1 (read)", r.direction));
  if (r.flags & ~kDmaSsidValid)
    return refuse(op, "body.flags",
                  fmt::format("unknown bits {:#x} are set (only {:#x}, SSID valid)", r.flags & ~kDmaSsidValid, kDmaSsidValid));
  if (!(r.flags & kDmaSsidValid) && r.ssid != 0)
    return refuse(op, "body.ssid", fmt::format("is {:#x} but flags lack SSID valid ({:#x}): set both or neither",
                                               r.ssid, kDmaSsidValid));
  if (auto bad = name_length(op, "engine_len", r.engine_len, false, "the DMA engine's name")) return std::unexpected(*bad);
  if (r.length == 0) return refuse(op, "body.length", "is 0; a DMA moves at least one byte");
  if (auto bad = fits_64(op, "body.length", r.iova, r.length, "iova")) return std::unexpected(*bad);
  const bool read = r.direction == static_cast<std::uint32_t>(DmaDirection::read);
  if (read) {
    const std::uint64_t reply = sizeof(Header) + sizeof(SimDmaReply) + std::uint64_t{r.length};
    if (reply > context.max_message)
      return refuse(op, "body.length",
                    fmt::format("the reply would be {} bytes ({} read), more than this connection's max_message {}: "
                                "read in smaller pieces",
                                reply, r.length, context.max_message),
                    EMSGSIZE);
  }
  const std::pair<const char*, std::uint32_t> pieces[] = {{"engine_len", r.engine_len},
                                                          {"body.length", read ? 0u : r.length}};
  auto parts = tail_of(op, b->tail, pieces);
  if (!parts) return std::unexpected(parts.error());
  if (auto bad = printable(op, "engine", (*parts)[0])) return std::unexpected(*bad);
  SimDmaArgs args;
  args.direction = static_cast<DmaDirection>(r.direction);
  args.iova = r.iova;
  args.length = r.length;
  args.engine = std::string(as_text((*parts)[0]));
  args.data = (*parts)[1];
  if (r.flags & kDmaSsidValid) args.ssid = r.ssid;
  return args;
}

// ---- live migration (docs/protocol.md "Live migration")

Decoded dirty_start(const Packet& p) {
  auto b = body_of<DirtyStartRequest>(p);
  if (!b) return std::unexpected(b.error());
  if (b->fixed.flags != 0)
    return refuse(p.header.op, "body.flags", fmt::format("{:#x}: DIRTY_START defines no flags; send 0", b->fixed.flags));
  if (auto bad = no_tail(p.header.op, b->tail)) return std::unexpected(*bad);
  return DirtyStartArgs{};
}

Decoded dirty_stop(const Packet& p) {
  auto b = body_of<DirtyStopRequest>(p);
  if (!b) return std::unexpected(b.error());
  if (auto bad = zero(p.header.op, "body.reserved", b->fixed.reserved)) return std::unexpected(*bad);
  if (auto bad = no_tail(p.header.op, b->tail)) return std::unexpected(*bad);
  return DirtyStopArgs{};
}

Decoded dirty_get(const Packet& p, std::size_t fds) {
  const std::uint16_t op = p.header.op;
  if (auto bad = one_fd(op, fds, "the bitmap file (a memfd) the daemon writes the region's dirty bitmap into"))
    return std::unexpected(*bad);
  auto b = body_of<DirtyGetRequest>(p);
  if (!b) return std::unexpected(b.error());
  const DirtyGetRequest& r = b->fixed;
  if (r.flags & ~kDirtyGetNoClear)
    return refuse(op, "body.flags",
                  fmt::format("unknown bits {:#x} are set (only {:#x}, NO_CLEAR)", r.flags & ~kDirtyGetNoClear,
                              kDirtyGetNoClear));
  if (auto bad = aligned(op, "body.region_gpa", r.region_gpa, kRegionAlign, "a region starts on a 4 KiB page"))
    return std::unexpected(*bad);
  if (auto bad = aligned(op, "body.bitmap_offset", r.bitmap_offset, kBitmapAlign,
                         "the daemon maps the bitmap file at that offset"))
    return std::unexpected(*bad);
  if (auto bad = no_tail(op, b->tail)) return std::unexpected(*bad);
  return DirtyGetArgs{r.region_gpa, r.bitmap_offset, r.flags};
}

Decoded save_state(const Packet& p, std::size_t fds) {
  const std::uint16_t op = p.header.op;
  if (auto bad = one_fd(op, fds, "the file (a memfd) the daemon writes the vSMMU's state into")) return std::unexpected(*bad);
  auto b = body_of<SaveStateRequest>(p);
  if (!b) return std::unexpected(b.error());
  if (auto bad = zero(op, "body.reserved", b->fixed.reserved)) return std::unexpected(*bad);
  if (auto bad = no_tail(op, b->tail)) return std::unexpected(*bad);
  return SaveStateArgs{};
}

Decoded load_state(const Packet& p, std::size_t fds) {
  const std::uint16_t op = p.header.op;
  if (auto bad = one_fd(op, fds, "the file the daemon reads the saved state from")) return std::unexpected(*bad);
  auto b = body_of<LoadStateRequest>(p);
  if (!b) return std::unexpected(b.error());
  const LoadStateRequest& r = b->fixed;
  if (r.flags != 0) return refuse(op, "body.flags", fmt::format("{:#x}: LOAD_STATE defines no flags; send 0", r.flags));
  if (r.state_bytes == 0) return refuse(op, "body.state_bytes", "is 0; send the state_bytes SAVE_STATE's reply gave");
  if (r.state_bytes > kMaxStateBytes)
    return refuse(op, "body.state_bytes",
                  fmt::format("{} bytes is more than the {} a vSMMU's state may have: this is not a saved state",
                              r.state_bytes, kMaxStateBytes),
                  E2BIG);
  if (auto bad = no_tail(op, b->tail)) return std::unexpected(*bad);
  return LoadStateArgs{r.state_bytes};
}

// Header::vsmmu as each op needs it (docs/protocol.md, "Ops").
Target target_of(Op op) {
  switch (op) {
    case Op::destroy_vsmmu:
    case Op::attach_device:
    case Op::detach_device:
    case Op::mmio_read:
    case Op::mmio_write:
    case Op::set_irq:
    case Op::save_state:
    case Op::load_state:
      return Target::required;
    case Op::stats:
      return Target::either;
    default:
      return Target::none;
  }
}

}  // namespace

std::expected<Request, Refusal> decode_request(std::span<const std::byte> packet, std::size_t fds,
                                               const DecodeContext& context) {
  Packet p;
  if (auto bad = parse_header(packet, true, p)) return std::unexpected(std::move(*bad));
  const Header& h = p.header;
  if (packet.size() > context.max_message)
    return refuse(h.op, "header.size",
                  fmt::format("{} bytes is more than this connection's max_message {} (HelloReply)", packet.size(),
                              context.max_message),
                  EMSGSIZE);
  if (op_reserved(h.op)) {
    return refuse(h.op, "header.op",
                  fmt::format("{} is reserved (docs/protocol.md); this daemon does not implement it", h.op),
                  ENOSYS);
  }
  const auto op = static_cast<Op>(h.op);
  if (op == Op::sim_dma && context.host != HostKind::sim)
    return refuse(h.op, "header.op",
                  fmt::format("this daemon runs the {} host; SIM_DMA exists only on the simulated host (vsmmud "
                              "--host sim)",
                              host_name(context.host)),
                  EOPNOTSUPP);
  if (auto bad = check_target(h, target_of(op))) return std::unexpected(std::move(*bad));

  Decoded args = [&]() -> Decoded {
    switch (op) {
      case Op::create_vsmmu: return create(p, fds, context);
      case Op::add_region: return add_region(p, fds);
      case Op::attach_device: return attach(p, fds, context);
      case Op::set_irq: return set_irq(p, fds);
      case Op::dirty_get: return dirty_get(p, fds);
      case Op::save_state: return save_state(p, fds);
      case Op::load_state: return load_state(p, fds);
      default: break;
    }
    if (auto bad = no_fds(h.op, fds, "")) return std::unexpected(std::move(*bad));
    switch (op) {
      case Op::hello: return hello(p);
      case Op::destroy_vsmmu: return destroy(p);
      case Op::remove_region: return remove_region(p);
      case Op::detach_device: return detach(p);
      case Op::mmio_read: return mmio_read(p);
      case Op::mmio_write: return mmio_write(p);
      case Op::stats: return stats(p);
      case Op::sim_dma: return sim_dma(p, context);
      case Op::dirty_start: return dirty_start(p);
      case Op::dirty_stop: return dirty_stop(p);
      default: break;
    }
    return refuse(h.op, "header.op", fmt::format("{} is not an op of protocol version 1", h.op), ENOSYS);
  }();
  if (!args) return std::unexpected(std::move(args).error());
  return Request{h, std::move(*args)};
}

}  // namespace vsmmu::service

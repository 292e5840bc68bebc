#include "service/client/client.hpp"

#include <poll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "base/log.hpp"
#include "base/try.hpp"
#include "service/packet_io.hpp"

namespace vsmmu::service {
namespace {

constexpr const char* kLog = "vsmmud.client";
// HELLO's reply is read before the daemon has said how large its packets are: this is room enough for any
// HelloReply a later version may grow to.
constexpr std::size_t kHelloBuffer = 64 * 1024;

// The replies that carry nothing (DESTROY_VSMMU, ADD_REGION, MMIO_WRITE, SET_IRQ, ...): protocol.hpp gives
// them no body, so the client takes either none (the header alone) or a size-first body with no field of its
// own, any longer one obeying the zero-extension rule.

std::string where(Op op) { return fmt::format("vsmmud {}", op_name(static_cast<std::uint16_t>(op))); }

std::uint32_t length_of(std::span<const std::byte> bytes) { return static_cast<std::uint32_t>(bytes.size()); }

// The one fd a request carries, if any.
std::span<const int> one_fd(const int& fd) { return fd >= 0 ? std::span<const int>(&fd, 1) : std::span<const int>(); }

Error refusal_error(Op op, const Refusal& r) { return Error{r.err, where(op), fmt::format("{}: {}", r.field, r.reason)}; }

std::unexpected<Error> malformed(Op op, const Refusal& r) {
  return fail(EPROTO, where(op), "the daemon's reply does not follow the protocol: {}", r.to_string());
}

}  // namespace

HelloRequest Client::default_offer() {
  HelloRequest offer;
  offer.features = kKnownFeatures;
  return offer;
}

Client::Client(host::UniqueFd socket, std::chrono::milliseconds timeout)
    : socket_(std::move(socket)), timeout_(timeout), buffer_(kHelloBuffer) {}

Result<std::unique_ptr<Client>> Client::connect(const std::string& socket_path, const HelloRequest& offer,
                                                std::chrono::milliseconds timeout) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (socket_path.empty() || socket_path.size() >= sizeof addr.sun_path)
    return fail(ENAMETOOLONG, "vsmmud", "socket path \"{}\": {} bytes; a UNIX socket path has 1 to {}", socket_path,
                socket_path.size(), sizeof addr.sun_path - 1);
  std::memcpy(addr.sun_path, socket_path.data(), socket_path.size());
  host::UniqueFd fd(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
  if (!fd) return fail(errno, "vsmmud", "socket(AF_UNIX, SOCK_SEQPACKET): {}", std::strerror(errno));
  if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0)
    return fail(errno, "vsmmud", "connecting to {}: {} (is vsmmud running and listening there?)", socket_path,
                std::strerror(errno));
  // A refusal of HELLO keeps its "vsmmud HELLO" and the daemon's "field: reason".
  return adopt(std::move(fd), offer, timeout);
}

Result<std::unique_ptr<Client>> Client::adopt(host::UniqueFd connected_socket, const HelloRequest& offer,
                                              std::chrono::milliseconds timeout) {
  std::unique_ptr<Client> client(new Client(std::move(connected_socket), timeout));
  VSMMU_TRY(client->set_timeout(timeout));
  VSMMU_TRY(client->say_hello(offer));
  return client;
}

Result<void> Client::set_timeout(std::chrono::milliseconds timeout) {
  std::lock_guard lock(mu_);
  const auto ms = timeout.count() > 0 ? timeout.count() : 0;
  const timeval tv{static_cast<time_t>(ms / 1000), static_cast<suseconds_t>((ms % 1000) * 1000)};
  for (const int option : {SO_RCVTIMEO, SO_SNDTIMEO})
    if (::setsockopt(socket_.get(), SOL_SOCKET, option, &tv, sizeof tv) != 0)
      return fail(errno, "vsmmud", "setting the socket's {} to {} ms: {}",
                  option == SO_RCVTIMEO ? "SO_RCVTIMEO" : "SO_SNDTIMEO", ms, std::strerror(errno));
  timeout_ = std::chrono::milliseconds(ms);
  return {};
}

Result<void> Client::say_hello(const HelloRequest& offer) {
  std::lock_guard lock(mu_);
  VSMMU_TRY_ASSIGN(const Packet packet, call(Op::hello, 0, offer));
  VSMMU_TRY_ASSIGN(const HelloReply reply, decode<HelloReply>(Op::hello, packet));
  const auto bad = [](std::string_view what, auto... args) {
    return fail(EPROTO, where(Op::hello), "the daemon's HELLO reply: {}", fmt::format(fmt::runtime(what), args...));
  };
  if (reply.version < offer.version_min || reply.version > offer.version_max)
    return bad("version {} is outside the offered range {}-{}", reply.version, offer.version_min, offer.version_max);
  if (reply.features & ~offer.features)
    return bad("features {:#x} include some not offered ({:#x})", reply.features, offer.features);
  if (reply.max_message < kMinMessage || reply.max_message > kMaxBuffer)
    return bad("max_message {} is outside {}-{} bytes", reply.max_message, kMinMessage, kMaxBuffer);
  if (offer.max_message != 0 && reply.max_message > offer.max_message)
    return bad("max_message {} exceeds the {} the client offered", reply.max_message, offer.max_message);
  hello_ = reply;
  buffer_.resize(reply.max_message);
  buffer_.shrink_to_fit();
  return {};
}

template <class T>
Result<Packet> Client::call(Op op, std::uint32_t vsmmu, const T& body,
                            std::initializer_list<std::span<const std::byte>> tail, std::span<const int> fds,
                            std::uint16_t flags) {
  Header h;
  h.op = static_cast<std::uint16_t>(op);
  h.flags = flags;
  h.tag = next_tag_++;
  h.vsmmu = vsmmu;
  const std::vector<std::byte> packet = build(h, body, tail);
  if (hello_.max_message != 0 && packet.size() > hello_.max_message)
    return fail(EMSGSIZE, where(op), "the request is {} bytes; the daemon takes at most {} (HELLO max_message)",
                packet.size(), hello_.max_message);
  if (auto sent = send_packet(socket_.get(), packet, fds); !sent) {
    if (sent.error().err == EAGAIN || sent.error().err == EWOULDBLOCK)
      return fail(ETIMEDOUT, where(op), "the daemon did not take request {} within {} ms (SO_SNDTIMEO): it is not "
                  "reading its socket", h.tag, timeout_.count());
    return fail(sent.error(), where(op), "sending request {}", h.tag);
  }
  if (flags & kFlagPosted) return Packet{};
  return await_reply(op, h.tag);
}

Result<Packet> Client::await_reply(Op op, std::uint64_t tag) {
  for (;;) {
    VSMMU_TRY_ASSIGN(const std::optional<Packet> reply, receive_one(op, tag));
    if (!reply) continue;
    if (reply->header.status != 0) return std::unexpected(refusal_error(op, parse_error(*reply)));
    return *reply;
  }
}

Result<std::optional<Packet>> Client::receive_one(Op awaited, std::uint64_t tag) {
  auto received = receive_packet(socket_.get(), buffer_, 0);
  if (!received) {
    if (received.error().err == EAGAIN || received.error().err == EWOULDBLOCK)
      return fail(ETIMEDOUT, where(awaited), "no reply to request {} within {} ms (SO_RCVTIMEO): is the daemon stuck? "
                  "A late reply will be dropped", tag, timeout_.count());
    return fail(received.error(), where(awaited), "waiting for the reply to request {}", tag);
  }
  if (received->size == 0 && !received->truncated)
    return fail(ECONNRESET, where(awaited), "the daemon closed the connection before it answered request {}", tag);
  if (received->truncated)
    return fail(EPROTO, where(awaited), "a packet larger than the daemon's max_message ({} bytes) arrived and was cut",
                buffer_.size());
  if (received->fds_truncated || !received->fds.empty())
    log::warn(kLog, "a packet from the daemon carried fds; replies carry none (closed)");
  Packet packet;
  if (auto bad = parse_header(std::span(buffer_.data(), received->size), false, packet)) return malformed(awaited, *bad);
  if ((packet.header.flags & kFlagAsync) && packet.header.status == 0 && op_from_daemon(packet.header.op)) {
    keep_unsolicited(packet);
    return std::optional<Packet>();
  }
  if (packet.header.flags & kFlagAsync) {
    keep_posted_failure(packet);
    return std::optional<Packet>();
  }
  if (packet.header.tag != tag) {
    log::debug(kLog, "dropping a {} reply to request {} while awaiting {}: a late answer to a request that timed out",
               op_name(packet.header.op), packet.header.tag, tag);
    return std::optional<Packet>();
  }
  if (packet.header.op != static_cast<std::uint16_t>(awaited))
    return fail(EPROTO, where(awaited), "the reply to request {} is for op {} ({})", tag, packet.header.op,
                op_name(packet.header.op));
  return std::optional<Packet>(packet);
}

void Client::keep_posted_failure(const Packet& packet) {
  if (posted_.kept.size() >= kMaxKeptFailures) {
    ++posted_.dropped;
    return;
  }
  const Refusal r = parse_error(packet);
  posted_.kept.push_back(PostedFailure{packet.header.vsmmu, packet.header.tag,
                                       refusal_error(static_cast<Op>(packet.header.op), r)});
}

void Client::keep_unsolicited(const Packet& packet) {
  const auto unreadable = [&](const Refusal& bad) {
    log::warn(kLog, "a {} message the client cannot read was dropped: {}", op_name(packet.header.op), bad.to_string());
  };
  if (packet.header.op == static_cast<std::uint16_t>(Op::msi)) {
    Body<MsiMessage> body;
    if (auto bad = decode_body(packet, body)) return unreadable(*bad);
    msis_.keep(Msi{packet.header.vsmmu, body.fixed.address, body.fixed.data, body.fixed.dropped});
    return;
  }
  Body<NoticeMessage> body;
  if (auto bad = decode_body(packet, body)) return unreadable(*bad);
  if (body.fixed.text_len > kMaxNoticeText)
    return unreadable(Refusal{EPROTO, packet.header.op, "text_len",
                              fmt::format("{} is beyond {} (kMaxNoticeText)", body.fixed.text_len, kMaxNoticeText)});
  const std::pair<const char*, std::uint32_t> pieces[] = {{"text_len", body.fixed.text_len}};
  std::vector<std::span<const std::byte>> text;
  if (auto bad = split_tail(packet.header.op, body.tail, pieces, text)) return unreadable(*bad);
  notices_.keep(ReceivedNotice{packet.header.vsmmu, body.fixed.dropped,
                               nesting::Notice{static_cast<nesting::NoticeKind>(body.fixed.kind), body.fixed.vsid,
                                               std::string(as_text(text[0]))}});
}

template <class T>
Result<T> Client::decode(Op op, const Packet& reply, std::span<const std::byte>* tail, std::size_t min_size) {
  Body<T> body;
  if (auto bad = decode_body(reply, body, min_size)) return malformed(op, *bad);
  if (tail) {
    *tail = body.tail;
  } else {
    std::vector<std::span<const std::byte>> none;
    if (auto bad = split_tail(reply.header.op, body.tail, {}, none)) return malformed(op, *bad);
  }
  return body.fixed;
}

Result<void> Client::decode_empty(Op op, const Packet& reply) {
  if (reply.body.empty()) return {};
  VSMMU_TRY(decode<EmptyReply>(op, reply));
  return {};
}

// ---- the ops

Result<CreateReply> Client::create_vsmmu(const VsmmuOptions& options, const RemoteDevice& device) {
  CreateRequest req;
  req.policy = static_cast<std::uint32_t>(options.policy);
  req.wishes = options.wishes;
  req.commands_per_access = options.commands_per_access;
  req.host_calls_per_access = options.host_calls_per_access;
  req.flags = (options.gbpa_abort ? kCreateGbpaAbort : 0) | (options.msi_delivery ? kCreateMsiDelivery : 0);
  req.vsid = device.vsid;
  req.name_len = length_of(bytes_of(options.name));
  req.device_name_len = length_of(bytes_of(device.name));
  std::lock_guard lock(mu_);
  VSMMU_TRY_ASSIGN(const Packet packet, call(Op::create_vsmmu, 0, req, {bytes_of(options.name), bytes_of(device.name)},
                                             one_fd(device.fd)));
  VSMMU_TRY_ASSIGN(const CreateReply reply, decode<CreateReply>(Op::create_vsmmu, packet));
  if (reply.handle == 0 || reply.handle != packet.header.vsmmu)
    return fail(EPROTO, where(Op::create_vsmmu), "the reply names vSMMU {} in its body and {} in its header",
                reply.handle, packet.header.vsmmu);
  return reply;
}

Result<void> Client::destroy_vsmmu(std::uint32_t handle) {
  std::lock_guard lock(mu_);
  VSMMU_TRY_ASSIGN(const Packet packet, call(Op::destroy_vsmmu, handle, DestroyRequest{}));
  return decode_empty(Op::destroy_vsmmu, packet);
}

Result<void> Client::attach_device(std::uint32_t handle, const RemoteDevice& device) {
  AttachRequest req;
  req.vsid = device.vsid;
  req.device_name_len = length_of(bytes_of(device.name));
  std::lock_guard lock(mu_);
  VSMMU_TRY_ASSIGN(const Packet packet, call(Op::attach_device, handle, req, {bytes_of(device.name)}, one_fd(device.fd)));
  return decode_empty(Op::attach_device, packet);
}

Result<void> Client::detach_device(std::uint32_t handle, std::uint32_t vsid) {
  DetachRequest req;
  req.vsid = vsid;
  std::lock_guard lock(mu_);
  VSMMU_TRY_ASSIGN(const Packet packet, call(Op::detach_device, handle, req));
  return decode_empty(Op::detach_device, packet);
}

Result<void> Client::add_region(std::uint64_t gpa, std::uint64_t length, int memfd, std::uint64_t fd_offset) {
  AddRegionRequest req;
  req.gpa = gpa;
  req.length = length;
  req.fd_offset = fd_offset;
  std::lock_guard lock(mu_);
  VSMMU_TRY_ASSIGN(const Packet packet, call(Op::add_region, 0, req, {}, one_fd(memfd)));
  return decode_empty(Op::add_region, packet);
}

Result<void> Client::remove_region(std::uint64_t gpa) {
  RemoveRegionRequest req;
  req.gpa = gpa;
  std::lock_guard lock(mu_);
  VSMMU_TRY_ASSIGN(const Packet packet, call(Op::remove_region, 0, req));
  return decode_empty(Op::remove_region, packet);
}

Result<std::uint64_t> Client::mmio_read(std::uint32_t handle, std::uint64_t offset, unsigned width) {
  MmioReadRequest req;
  req.width = width;
  req.offset = offset;
  std::lock_guard lock(mu_);
  VSMMU_TRY_ASSIGN(const Packet packet, call(Op::mmio_read, handle, req));
  VSMMU_TRY_ASSIGN(const MmioReadReply reply, decode<MmioReadReply>(Op::mmio_read, packet));
  return reply.value;
}

Result<void> Client::mmio_write(std::uint32_t handle, std::uint64_t offset, std::uint64_t value, unsigned width,
                                bool posted) {
  MmioWriteRequest req;
  req.width = width;
  req.offset = offset;
  req.value = value;
  const bool post = posted && posted_writes();
  std::lock_guard lock(mu_);
  VSMMU_TRY_ASSIGN(const Packet packet, call(Op::mmio_write, handle, req, {}, {}, post ? kFlagPosted : 0));
  if (post) return {};
  return decode_empty(Op::mmio_write, packet);
}

Result<void> Client::set_irq(std::uint32_t handle, IrqLine line, int eventfd) {
  SetIrqRequest req;
  req.line = static_cast<std::uint32_t>(line);
  std::lock_guard lock(mu_);
  VSMMU_TRY_ASSIGN(const Packet packet, call(Op::set_irq, handle, req, {}, one_fd(eventfd)));
  return decode_empty(Op::set_irq, packet);
}

Result<VsmmuStatsReply> Client::vsmmu_stats(std::uint32_t handle) {
  if (handle == 0)
    return fail(EINVAL, where(Op::stats), "vSMMU handle 0 names no vSMMU (daemon_stats() reads the daemon's figures)");
  std::lock_guard lock(mu_);
  VSMMU_TRY_ASSIGN(const Packet packet, call(Op::stats, handle, StatsRequest{}));
  return decode<VsmmuStatsReply>(Op::stats, packet, nullptr, kVsmmuStatsReplyV1Size);
}

Result<DaemonStatsReply> Client::daemon_stats() {
  std::lock_guard lock(mu_);
  VSMMU_TRY_ASSIGN(const Packet packet, call(Op::stats, 0, StatsRequest{}));
  return decode<DaemonStatsReply>(Op::stats, packet);
}

Result<SimDmaResult> Client::sim_dma(const SimDma& dma) {
  const bool read = dma.direction == DmaDirection::read;
  const std::span<const std::byte> data = read ? std::span<const std::byte>() : dma.data;
  SimDmaRequest req;
  req.direction = static_cast<std::uint32_t>(dma.direction);
  req.iova = dma.iova;
  req.length = read ? dma.read_length : length_of(data);
  req.engine_len = length_of(bytes_of(dma.engine));
  req.ssid = dma.ssid.value_or(0);
  req.flags = dma.ssid ? kDmaSsidValid : 0;
  std::lock_guard lock(mu_);
  VSMMU_TRY_ASSIGN(const Packet packet, call(Op::sim_dma, dma.vsmmu, req, {bytes_of(dma.engine), data}));
  std::span<const std::byte> tail;
  SimDmaResult result;
  VSMMU_TRY_ASSIGN(result.reply, decode<SimDmaReply>(Op::sim_dma, packet, &tail));
  const std::uint64_t expected_tail = read ? result.reply.bytes : 0;
  if (result.reply.bytes > req.length || tail.size() != expected_tail)
    return fail(EPROTO, where(Op::sim_dma), "the reply says {} of {} bytes moved and carries {} bytes of data",
                result.reply.bytes, req.length, tail.size());
  result.data.assign(tail.begin(), tail.end());
  return result;
}

Result<DirtyStart> Client::dirty_start() {
  std::lock_guard lock(mu_);
  VSMMU_TRY_ASSIGN(const Packet packet, call(Op::dirty_start, 0, DirtyStartRequest{}));
  std::span<const std::byte> tail;
  VSMMU_TRY_ASSIGN(const DirtyStartReply reply, decode<DirtyStartReply>(Op::dirty_start, packet, &tail));
  if (reply.reason_len != tail.size())
    return fail(EPROTO, where(Op::dirty_start), "the reply announces a {}-byte reason and carries {} bytes",
                reply.reason_len, tail.size());
  if (reply.mode != static_cast<std::uint32_t>(DirtyLogMode::hardware) &&
      reply.mode != static_cast<std::uint32_t>(DirtyLogMode::conservative))
    return fail(EPROTO, where(Op::dirty_start), "the reply's mode {} is neither 1 (hardware) nor 2 (conservative)",
                reply.mode);
  return DirtyStart{static_cast<DirtyLogMode>(reply.mode), std::string(as_text(tail)), reply.parents, reply.tracking};
}

Result<void> Client::dirty_stop() {
  std::lock_guard lock(mu_);
  VSMMU_TRY_ASSIGN(const Packet packet, call(Op::dirty_stop, 0, DirtyStopRequest{}));
  return decode_empty(Op::dirty_stop, packet);
}

Result<DirtyRound> Client::dirty_get(std::uint64_t region_gpa, int bitmap_fd, std::uint64_t bitmap_offset,
                                     std::uint32_t flags) {
  DirtyGetRequest req;
  req.flags = flags;
  req.region_gpa = region_gpa;
  req.bitmap_offset = bitmap_offset;
  std::lock_guard lock(mu_);
  VSMMU_TRY_ASSIGN(const Packet packet, call(Op::dirty_get, 0, req, {}, one_fd(bitmap_fd)));
  VSMMU_TRY_ASSIGN(const DirtyGetReply reply, decode<DirtyGetReply>(Op::dirty_get, packet));
  if (reply.dirty > reply.pages)
    return fail(EPROTO, where(Op::dirty_get), "the reply says {} of {} pages are dirty", reply.dirty, reply.pages);
  return DirtyRound{reply.pages, reply.dirty, (reply.flags & kDirtyConservative) != 0,
                    (reply.flags & kDirtyRemoved) != 0};
}

Result<std::uint64_t> Client::save_state_to(std::uint32_t handle, int fd) {
  std::lock_guard lock(mu_);
  VSMMU_TRY_ASSIGN(const Packet packet, call(Op::save_state, handle, SaveStateRequest{}, {}, one_fd(fd)));
  VSMMU_TRY_ASSIGN(const SaveStateReply reply, decode<SaveStateReply>(Op::save_state, packet));
  return reply.state_bytes;
}

Result<void> Client::load_state_from(std::uint32_t handle, int fd, std::uint64_t state_bytes) {
  LoadStateRequest req;
  req.state_bytes = state_bytes;
  std::lock_guard lock(mu_);
  VSMMU_TRY_ASSIGN(const Packet packet, call(Op::load_state, handle, req, {}, one_fd(fd)));
  return decode_empty(Op::load_state, packet);
}

Result<std::vector<std::byte>> Client::save_state(std::uint32_t handle) {
  host::UniqueFd fd(::memfd_create("vsmmu-state", MFD_CLOEXEC));
  if (!fd) return fail(errno, where(Op::save_state), "memfd_create for the state: {}", std::strerror(errno));
  VSMMU_TRY_ASSIGN(const std::uint64_t bytes, save_state_to(handle, fd.get()));
  if (bytes > kMaxStateBytes)
    return fail(EPROTO, where(Op::save_state), "the reply says the state has {} bytes, more than the {} a state may have",
                bytes, kMaxStateBytes);
  std::vector<std::byte> state(bytes);
  for (std::size_t done = 0; done < state.size();) {
    const ssize_t n = ::pread(fd.get(), state.data() + done, state.size() - done, static_cast<off_t>(done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0)
      return fail(n < 0 ? errno : EPROTO, where(Op::save_state), "reading the state back at {} of {} bytes: {}", done,
                  state.size(), n < 0 ? std::strerror(errno) : "the daemon wrote less than it says");
    done += static_cast<std::size_t>(n);
  }
  return state;
}

Result<void> Client::load_state(std::uint32_t handle, std::span<const std::byte> state) {
  host::UniqueFd fd(::memfd_create("vsmmu-state", MFD_CLOEXEC));
  if (!fd) return fail(errno, where(Op::load_state), "memfd_create for the state: {}", std::strerror(errno));
  for (std::size_t done = 0; done < state.size();) {
    const ssize_t n = ::pwrite(fd.get(), state.data() + done, state.size() - done, static_cast<off_t>(done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0)
      return fail(n < 0 ? errno : EIO, where(Op::load_state), "writing the state into a memfd at {} of {} bytes: {}",
                  done, state.size(), n < 0 ? std::strerror(errno) : "nothing written");
    done += static_cast<std::size_t>(n);
  }
  return load_state_from(handle, fd.get(), state.size());
}

// Outside a request, whatever waits on the socket is an ASYNC failure, an MSI, a NOTICE or a late reply (tag 0 is
// never sent).
void Client::read_waiting() {
  for (pollfd p{socket_.get(), POLLIN, 0}; ::poll(&p, 1, 0) > 0 && (p.revents & POLLIN);) {
    if (auto r = receive_one(Op::mmio_write, 0); !r) {
      log::debug(kLog, "reading waiting packets: {}", r.error());
      break;
    }
  }
}

PostedFailures Client::take_posted_failures() {
  std::lock_guard lock(mu_);
  read_waiting();
  return std::exchange(posted_, PostedFailures{});
}

std::vector<Msi> Client::take_msis(std::uint32_t vsmmu, std::size_t max) {
  std::lock_guard lock(mu_);
  read_waiting();
  return msis_.take(vsmmu, max);
}

std::vector<ReceivedNotice> Client::take_notices(std::uint32_t vsmmu, std::size_t max) {
  std::lock_guard lock(mu_);
  read_waiting();
  return notices_.take(vsmmu, max);
}

}  // namespace vsmmu::service

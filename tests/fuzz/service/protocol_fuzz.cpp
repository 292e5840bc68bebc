// decode_request against arbitrary packets: whatever a client sends, the daemon either refuses it with an
// errno, a field and a reason that survive an error reply's round trip, or gets a request that keeps every
// rule docs/protocol.md states (checked again here from the packet's own bytes, independently of requests.cpp).
//
// Input: byte 0 is the context, the rest is the packet.
//   bits 0-1: how many fds came with it (0-3)
//   bit 2:    the daemon's host (0: sim, 1: kernel)
//   bit 3:    max_message (0: 65536, 1: 4096)
// make_seeds.py writes the seeds in this format.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <span>
#include <string>
#include <variant>

#include <fmt/format.h>

#include "service/protocol.hpp"
#include "service/requests.hpp"

using namespace vsmmu::service;

namespace {

// A violation prints what and aborts, so libFuzzer keeps the input.
[[noreturn]] void violation(const std::string& what) {
  std::fprintf(stderr, "protocol fuzz invariant violated: %s\n", what.c_str());
  std::abort();
}

void check(bool ok, const char* what) {
  if (!ok) violation(what);
}

void check_name(std::string_view name, bool may_be_empty, const char* what) {
  if (name.size() > kMaxNameLength) violation(fmt::format("{}: {} bytes", what, name.size()));
  if (name.empty() && !may_be_empty) violation(fmt::format("{}: empty", what));
  for (char c : name)
    if (c < 0x21 || c > 0x7e) violation(fmt::format("{}: byte {:#x}", what, static_cast<unsigned char>(c)));
}

bool ends_in_64_bits(std::uint64_t start, std::uint64_t length) {
  return length <= std::numeric_limits<std::uint64_t>::max() - start;
}

// The fds a decoded request may have come with, per op and host.
void check_fds(Op op, const RequestArgs& args, std::size_t fds, HostKind host) {
  switch (op) {
    case Op::add_region:
    case Op::dirty_get:
    case Op::save_state:
    case Op::load_state: check(fds == 1, "a request that needs one fd decoded without exactly one"); return;
    case Op::set_irq:
      check(fds <= 1, "SET_IRQ decoded with more than one fd");
      check(std::get<SetIrqArgs>(args).has_fd == (fds == 1), "SET_IRQ has_fd differs from the fds");
      return;
    case Op::create_vsmmu:
    case Op::attach_device: {
      const DeviceRef& d = op == Op::create_vsmmu ? std::get<CreateArgs>(args).device : std::get<AttachArgs>(args).device;
      if (host == HostKind::kernel) {
        check(fds == 1 && d.fd_index == 0, "kernel host: a device decoded without its one fd");
        check(d.name.empty(), "kernel host: a device decoded with a name");
      } else {
        check(fds == 0 && d.fd_index == -1, "sim host: a device decoded with an fd");
        check_name(d.name, false, "device name");
      }
      return;
    }
    default: check(fds == 0, "a request that takes no fd decoded with one"); return;
  }
}

void check_request(const Request& r, std::span<const std::byte> packet, std::size_t fds, const DecodeContext& context) {
  Header h;
  std::memcpy(&h, packet.data(), sizeof h);
  check(std::memcmp(&h, &r.header, sizeof h) == 0, "the decoded header is not the packet's");
  check(h.size == packet.size() && packet.size() <= context.max_message, "a packet of the wrong size decoded");
  check(h.status == 0 && (h.flags & ~kFlagPosted) == 0, "a request decoded with a daemon's flag or a status");
  check((h.op >= 1 && h.op <= 12) || (h.op >= 16 && h.op <= 20), "an unknown or reserved op decoded");
  check(!op_reserved(h.op), "a reserved op decoded");
  check(!op_from_daemon(h.op), "a daemon-only op (MSI, NOTICE) decoded from a client");
  const auto op = static_cast<Op>(h.op);
  // RequestArgs lists the ops in order: 1-12, then 16-20.
  const std::size_t index = h.op <= 12 ? h.op - 1u : h.op - 4u;
  check(r.args.index() == index, "the decoded arguments are not the op's");
  check(!(h.flags & kFlagPosted) || op == Op::mmio_write, "a posted request other than MMIO_WRITE decoded");
  switch (op) {
    case Op::destroy_vsmmu:
    case Op::attach_device:
    case Op::detach_device:
    case Op::mmio_read:
    case Op::mmio_write:
    case Op::set_irq:
    case Op::save_state:
    case Op::load_state: check(h.vsmmu != 0, "a request on a vSMMU decoded without one"); break;
    case Op::stats: break;
    default: check(h.vsmmu == 0, "a request not on a vSMMU decoded naming one"); break;
  }
  check_fds(op, r.args, fds, context.host);

  if (const auto* a = std::get_if<HelloArgs>(&r.args)) {
    check(a->fixed.magic == kMagic, "HELLO without the magic");
    check(a->fixed.version_min <= kProtocolVersion && kProtocolVersion <= a->fixed.version_max,
          "HELLO whose range lacks version 1");
    check(a->fixed.reserved == 0, "HELLO with reserved bits");
  } else if (const auto* c = std::get_if<CreateArgs>(&r.args)) {
    check(c->fixed.policy <= 1 && (c->fixed.flags & ~kKnownCreateFlags) == 0, "CREATE with a bad policy or flag");
    check(!check_wishes(h.op, c->fixed.wishes), "CREATE with wishes check_wishes refuses");
    check_name(c->name, true, "vSMMU name");
  } else if (const auto* ar = std::get_if<AddRegionArgs>(&r.args)) {
    check(ar->length > 0 && ar->gpa % kRegionAlign == 0 && ar->length % kRegionAlign == 0 &&
              ar->fd_offset % kRegionAlign == 0,
          "ADD_REGION unaligned or empty");
    check(ends_in_64_bits(ar->gpa, ar->length) && ends_in_64_bits(ar->fd_offset, ar->length),
          "ADD_REGION past 2^64");
  } else if (const auto* rr = std::get_if<RemoveRegionArgs>(&r.args)) {
    check(rr->gpa % kRegionAlign == 0, "REMOVE_REGION unaligned");
  } else if (const auto* mr = std::get_if<MmioReadArgs>(&r.args)) {
    check((mr->width == 4 || mr->width == 8) && mr->offset % mr->width == 0 && mr->offset + mr->width <= kMmioSpan,
          "MMIO_READ of a bad width or offset");
  } else if (const auto* mw = std::get_if<MmioWriteArgs>(&r.args)) {
    check((mw->width == 4 || mw->width == 8) && mw->offset % mw->width == 0 && mw->offset + mw->width <= kMmioSpan,
          "MMIO_WRITE of a bad width or offset");
    check(mw->width == 8 || (mw->value >> 32) == 0, "a 4-byte MMIO_WRITE with high bits");
    check(mw->posted == ((h.flags & kFlagPosted) != 0), "MMIO_WRITE posted differs from the header");
  } else if (const auto* s = std::get_if<SetIrqArgs>(&r.args)) {
    check(static_cast<std::uint32_t>(s->line) <= 2, "SET_IRQ of an unknown line");
  } else if (const auto* g = std::get_if<DirtyGetArgs>(&r.args)) {
    check((g->flags & ~kDirtyGetNoClear) == 0, "DIRTY_GET with an unknown flag");
    check(g->region_gpa % kRegionAlign == 0 && g->bitmap_offset % kBitmapAlign == 0, "DIRTY_GET unaligned");
  } else if (const auto* l = std::get_if<LoadStateArgs>(&r.args)) {
    check(l->state_bytes > 0 && l->state_bytes <= kMaxStateBytes, "LOAD_STATE of no state or one above the cap");
  } else if (const auto* d = std::get_if<SimDmaArgs>(&r.args)) {
    check(context.host == HostKind::sim, "SIM_DMA decoded on the kernel host");
    check_name(d->engine, false, "DMA engine");
    check(d->length > 0 && ends_in_64_bits(d->iova, d->length), "SIM_DMA empty or past 2^64");
    const std::byte* end = packet.data() + packet.size();
    if (d->direction == DmaDirection::write) {
      check(d->data.size() == d->length, "a SIM_DMA write whose data is not `length` bytes");
      check(d->data.data() + d->data.size() == end, "a SIM_DMA write's data is not the packet's last bytes");
    } else {
      check(d->direction == DmaDirection::read && d->data.empty(), "a SIM_DMA read with data");
      check(sizeof(Header) + sizeof(SimDmaReply) + std::uint64_t{d->length} <= context.max_message,
            "a SIM_DMA read whose reply exceeds max_message");
    }
  }
}

// A refusal names an op, a field and a reason, and reads back the same from the error reply a client gets.
void check_refusal(const Refusal& f, std::span<const std::byte> packet) {
  check(f.err > 0 && !f.field.empty() && !f.reason.empty(), "a refusal without errno, field or reason");
  if (packet.size() < sizeof(Header)) return;
  Header h;
  std::memcpy(&h, packet.data(), sizeof h);
  check(f.op == h.op, "a refusal names another op");
  const auto reply = build_error(h, f, kFlagAsync);
  Packet p;
  if (auto bad = parse_header(reply, false, p)) violation("an error reply the client refuses: " + bad->to_string());
  check(p.header.tag == h.tag && p.header.vsmmu == h.vsmmu && p.header.status == f.err, "an error reply's header");
  const Refusal back = parse_error(p);
  if (back.err != f.err || back.op != f.op || back.field != f.field || back.reason != f.reason)
    violation(fmt::format("error reply round trip: sent {} / got {}", f.to_string(), back.to_string()));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::size_t fds = data[0] & 3u;
  const DecodeContext context{(data[0] & 4u) ? HostKind::kernel : HostKind::sim,
                              (data[0] & 8u) ? 4096u : 65536u};
  const auto packet = std::as_bytes(std::span(data + 1, size - 1));
  auto r = decode_request(packet, fds, context);
  if (r)
    check_request(*r, packet, fds, context);
  else
    check_refusal(r.error(), packet);
  return 0;
}

#include "service/protocol.hpp"

#include <algorithm>
#include <array>

#include <fmt/format.h>

namespace vsmmu::service {

namespace {

constexpr std::array<std::string_view, kLastOp + 1> kNames = [] {
  std::array<std::string_view, kLastOp + 1> n{};
  n[1] = "HELLO";
  n[2] = "CREATE_VSMMU";
  n[3] = "DESTROY_VSMMU";
  n[4] = "ADD_REGION";
  n[5] = "REMOVE_REGION";
  n[6] = "ATTACH_DEVICE";
  n[7] = "DETACH_DEVICE";
  n[8] = "MMIO_READ";
  n[9] = "MMIO_WRITE";
  n[10] = "SET_IRQ";
  n[11] = "STATS";
  n[12] = "SIM_DMA";
  n[13] = "MSI";
  n[14] = "NOTICE";
  n[16] = "DIRTY_START";
  n[17] = "DIRTY_STOP";
  n[18] = "DIRTY_GET";
  n[19] = "SAVE_STATE";
  n[20] = "LOAD_STATE";
  return n;
}();

Refusal refuse(std::uint16_t op, std::string field, std::string reason, int err = EINVAL) {
  return Refusal{err, op, std::move(field), std::move(reason)};
}

}  // namespace

std::string_view op_name(std::uint16_t op) {
  if (op <= kLastOp && !kNames[op].empty()) return kNames[op];
  return op_reserved(op) ? "reserved op" : "unknown op";
}
// 1-31 are all version 1's: parse_header passes them; the reserved ones (15, 21-31) the daemon answers ENOSYS.
bool op_known(std::uint16_t op) { return op >= 1 && op <= kLastOp; }
bool op_reserved(std::uint16_t op) { return op == 15 || (op >= 21 && op <= kLastOp); }
bool op_from_daemon(std::uint16_t op) {
  return op == static_cast<std::uint16_t>(Op::msi) || op == static_cast<std::uint16_t>(Op::notice);
}

std::string Refusal::to_string() const {
  if (op > kLastOp || kNames[op].empty()) return fmt::format("op {}: {}: {}", op, field, reason);
  return fmt::format("{}: {}: {}", kNames[op], field, reason);
}

std::optional<Refusal> parse_header(std::span<const std::byte> packet, bool from_client, Packet& out) {
  if (packet.size() < sizeof(Header))
    return refuse(0, "header", fmt::format("the packet has {} bytes, fewer than the {}-byte header", packet.size(),
                                           sizeof(Header)));
  std::memcpy(&out.header, packet.data(), sizeof(Header));
  const Header& h = out.header;
  if (h.size != packet.size())
    return refuse(h.op, "header.size",
                  fmt::format("says {} bytes but the packet has {} (one message per packet; size counts the header)",
                              h.size, packet.size()));
  // An error reply echoes its request's op, whatever it was: the ENOSYS answer to an op this daemon does not know
  // (a newer client probing) must reach the client.
  const bool error_reply = !from_client && h.status != 0;
  if (!op_known(h.op) && !error_reply)
    return refuse(h.op, "header.op", fmt::format("{} is not an op of protocol version 1", h.op), ENOSYS);
  if (h.flags & ~kKnownFlags)
    return refuse(h.op, "header.flags", fmt::format("unknown bits {:#x} are set (they must be zero)", h.flags & ~kKnownFlags));
  if (from_client) {
    if (h.flags & (kFlagReply | kFlagAsync))
      return refuse(h.op, "header.flags", "REPLY and ASYNC are the daemon's flags; a request carries neither");
    if ((h.flags & kFlagPosted) && h.op != static_cast<std::uint16_t>(Op::mmio_write))
      return refuse(h.op, "header.flags", "only MMIO_WRITE may be posted");
    if (h.status != 0) return refuse(h.op, "header.status", "must be zero in a request");
    if (op_from_daemon(h.op))
      return refuse(h.op, "header.op", fmt::format("{} ({}) is a message the daemon sends; a client never sends it",
                                                   op_name(h.op), h.op));
  } else if (!(h.flags & kFlagReply)) {
    return refuse(h.op, "header.flags", "a message from the daemon must carry REPLY");
  } else if (op_from_daemon(h.op) && h.status == 0 && (!(h.flags & kFlagAsync) || h.tag != 0)) {
    return refuse(h.op, "header.flags", fmt::format("{} is unsolicited: REPLY|ASYNC with tag 0", op_name(h.op)));
  }
  out.body = packet.subspan(sizeof(Header));
  return std::nullopt;
}

std::optional<Refusal> decode_body_bytes(std::uint16_t op, std::span<const std::byte> body, void* out,
                                         std::size_t known, std::size_t min_size, std::span<const std::byte>& tail) {
  std::uint32_t size = 0;
  if (body.size() < sizeof size)
    return refuse(op, "body.size", fmt::format("the body has {} bytes; it must begin with its 4-byte size", body.size()));
  std::memcpy(&size, body.data(), sizeof size);
  if (size < min_size)
    return refuse(op, "body.size", fmt::format("{} is smaller than the {} bytes version 1 requires", size, min_size));
  if (size > body.size())
    return refuse(op, "body.size", fmt::format("{} is larger than the {} bytes that follow the header", size, body.size()));
  const std::size_t copied = std::min<std::size_t>(size, known);
  std::memset(out, 0, known);
  std::memcpy(out, body.data(), copied);
  if (size > known) {
    const auto extra = body.subspan(known, size - known);
    const auto it = std::ranges::find_if(extra, [](std::byte b) { return b != std::byte{0}; });
    if (it != extra.end())
      return refuse(op, fmt::format("body byte {}", known + static_cast<std::size_t>(it - extra.begin())),
                    fmt::format("this daemon knows {} bytes of the body; the {} bytes after them must be zero "
                                "(zero-extension rule)",
                                known, size - known),
                    E2BIG);
  }
  tail = body.subspan(size);
  return std::nullopt;
}

std::optional<Refusal> split_tail(std::uint16_t op, std::span<const std::byte> tail,
                                  std::span<const std::pair<const char*, std::uint32_t>> pieces,
                                  std::vector<std::span<const std::byte>>& out) {
  out.clear();
  std::size_t at = 0;
  for (const auto& [field, len] : pieces) {
    if (len > tail.size() - at)
      return refuse(op, field, fmt::format("{} bytes, but only {} follow the body", len, tail.size() - at));
    out.push_back(tail.subspan(at, len));
    at += len;
  }
  if (at != tail.size())
    return refuse(op, "tail", fmt::format("{} bytes follow the last field the body announces", tail.size() - at));
  return std::nullopt;
}

std::string_view as_text(std::span<const std::byte> bytes) {
  return {reinterpret_cast<const char*>(bytes.data()), bytes.size()};
}

std::span<const std::byte> bytes_of(std::string_view s) { return std::as_bytes(std::span(s.data(), s.size())); }

std::vector<std::byte> build_error(const Header& request, const Refusal& refusal, std::uint16_t extra_flags) {
  Header h;
  h.op = request.op;
  h.flags = static_cast<std::uint16_t>(kFlagReply | extra_flags);
  h.tag = request.tag;
  h.vsmmu = request.vsmmu;
  h.status = refusal.err > 0 ? refusal.err : EINVAL;
  ErrorReply e;
  e.op = request.op;
  e.field_len = static_cast<std::uint32_t>(refusal.field.size());
  e.reason_len = static_cast<std::uint32_t>(refusal.reason.size());
  return build(h, e, {bytes_of(refusal.field), bytes_of(refusal.reason)});
}

Refusal parse_error(const Packet& reply) {
  Refusal r;
  r.err = reply.header.status > 0 ? reply.header.status : EPROTO;
  r.op = reply.header.op;
  Body<ErrorReply> b;
  if (auto bad = decode_body(reply, b)) {
    r.field = "reply";
    r.reason = "the daemon's error reply is malformed: " + bad->to_string();
    return r;
  }
  const std::pair<const char*, std::uint32_t> pieces[] = {{"field_len", b.fixed.field_len},
                                                          {"reason_len", b.fixed.reason_len}};
  std::vector<std::span<const std::byte>> parts;
  if (auto bad = split_tail(reply.header.op, b.tail, pieces, parts)) {
    r.field = "reply";
    r.reason = "the daemon's error reply is malformed: " + bad->to_string();
    return r;
  }
  r.field = std::string(as_text(parts[0]));
  r.reason = std::string(as_text(parts[1]));
  return r;
}

std::optional<Refusal> check_wishes(std::uint16_t op, const WireWishes& w) {
  if (w.present & ~kKnownWishes)
    return refuse(op, "wishes.present", fmt::format("unknown bits {:#x} are set", w.present & ~kKnownWishes));
  if (std::ranges::any_of(w.reserved, [](std::uint8_t b) { return b != 0; }))
    return refuse(op, "wishes.reserved", "must be zero");
  const std::pair<std::uint32_t, std::pair<const char*, std::uint8_t>> bools[] = {
      {kWishRil, {"wishes.ril", w.ril}},          {kWishAts, {"wishes.ats", w.ats}},
      {kWishGran4k, {"wishes.gran4k", w.gran4k}}, {kWishGran16k, {"wishes.gran16k", w.gran16k}},
      {kWishGran64k, {"wishes.gran64k", w.gran64k}}, {kWishMsi, {"wishes.msi", w.msi}},
      {kWishStall, {"wishes.stall", w.stall}}};
  for (const auto& [bit, field] : bools)
    if ((w.present & bit) && field.second > 1)
      return refuse(op, field.first, fmt::format("{} is not a boolean (0 or 1)", field.second));
  if ((w.present & kWishStLevel) && w.st_level > 1)
    return refuse(op, "wishes.st_level", fmt::format("{}: IDR0.ST_LEVEL is 0 (linear) or 1 (2-level)", w.st_level));
  if ((w.present & kWishTtEndian) && (w.tt_endian == 1 || w.tt_endian > 3))
    return refuse(op, "wishes.tt_endian",
                  fmt::format("{}: IDR0.TTENDIAN is 0 (mixed), 2 (little) or 3 (big); 1 is reserved", w.tt_endian));
  return std::nullopt;
}

}  // namespace vsmmu::service

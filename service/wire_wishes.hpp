// CREATE_VSMMU's wishes on the wire (WireWishes, docs/protocol.md "CREATE_VSMMU") and the vSMMU's
// (nesting::VsmmuWishes), both ways: a `present` bit set is a stated value, a clear one is "auto" (nullopt).
// The daemon reads them with from_wire; a C++ VMM holding VsmmuWishes sends them with to_wire.
#pragma once

#include "nesting/id_registers.hpp"
#include "service/protocol.hpp"

namespace vsmmu::service {

// `msi_delivery`: CREATE_VSMMU's kCreateMsiDelivery (not a wish on the wire: a flag of the request).
inline nesting::VsmmuWishes from_wire(const WireWishes& w, bool msi_delivery) {
  nesting::VsmmuWishes n;
  n.msi_delivery = msi_delivery;
  auto has = [&](std::uint32_t bit) { return (w.present & bit) != 0; };
  if (has(kWishIpaBits)) n.ipa_bits = w.ipa_bits;
  if (has(kWishOasBits)) n.oas_bits = w.oas_bits;
  if (has(kWishSidBits)) n.sid_bits = w.sid_bits;
  if (has(kWishSsidBits)) n.ssid_bits = w.ssid_bits;
  if (has(kWishRil)) n.ril = w.ril != 0;
  if (has(kWishAts)) n.ats = w.ats != 0;
  if (has(kWishStLevel)) n.st_level = static_cast<smmu::StLevel>(w.st_level);
  if (has(kWishTtEndian)) n.tt_endian = static_cast<smmu::TtEndian>(w.tt_endian);
  if (has(kWishGran4k)) n.gran4k = w.gran4k != 0;
  if (has(kWishGran16k)) n.gran16k = w.gran16k != 0;
  if (has(kWishGran64k)) n.gran64k = w.gran64k != 0;
  if (has(kWishCmdqLog2)) n.cmdq_log2 = w.cmdq_log2;
  if (has(kWishEventqLog2)) n.eventq_log2 = w.eventq_log2;
  if (has(kWishMsi)) n.msi = w.msi != 0;
  if (has(kWishStall)) n.stall = w.stall != 0;
  return n;
}

// Every stated field with its bit; the queue sizes only when they differ from VsmmuWishes' defaults. Values
// wider than a byte are clamped to 255, which the daemon then refuses as the field's own value.
// msi_delivery travels as kCreateMsiDelivery (VsmmuOptions::msi_delivery), not here.
inline WireWishes to_wire(const nesting::VsmmuWishes& n) {
  WireWishes w;
  auto byte = [](unsigned v) { return static_cast<std::uint8_t>(v > 255 ? 255 : v); };
  auto put = [&](std::uint32_t bit, std::uint8_t& field, auto value) {
    if (!value) return;
    w.present |= bit;
    field = byte(static_cast<unsigned>(*value));
  };
  put(kWishIpaBits, w.ipa_bits, n.ipa_bits);
  put(kWishOasBits, w.oas_bits, n.oas_bits);
  put(kWishSidBits, w.sid_bits, n.sid_bits);
  put(kWishSsidBits, w.ssid_bits, n.ssid_bits);
  put(kWishRil, w.ril, n.ril);
  put(kWishAts, w.ats, n.ats);
  put(kWishStLevel, w.st_level, n.st_level);
  put(kWishTtEndian, w.tt_endian, n.tt_endian);
  put(kWishGran4k, w.gran4k, n.gran4k);
  put(kWishGran16k, w.gran16k, n.gran16k);
  put(kWishGran64k, w.gran64k, n.gran64k);
  const nesting::VsmmuWishes defaults;
  if (n.cmdq_log2 != defaults.cmdq_log2) put(kWishCmdqLog2, w.cmdq_log2, std::optional<unsigned>(n.cmdq_log2));
  if (n.eventq_log2 != defaults.eventq_log2) put(kWishEventqLog2, w.eventq_log2, std::optional<unsigned>(n.eventq_log2));
  put(kWishMsi, w.msi, n.msi);
  put(kWishStall, w.stall, n.stall);
  return w;
}

}  // namespace vsmmu::service

// A field of an architecture record described at run time (name, position, how to show it), built from
// the constexpr Field/AddrField definitions so the opcode and event tables and the printers never repeat a
// bit position. Kept free of fmt so format tables can live next to their records.
#pragma once

#include <algorithm>
#include <cstdint>
#include <span>
#include <string_view>

#include "smmu/field.hpp"

namespace vsmmu::smmu {

// How a printer renders a field's value. The value names for each kind live in format.cpp only.
enum class Show : std::uint8_t {
  dec,          // unsigned decimal
  hex,          // 0x-prefixed hex (identifiers: SID, STAG ...)
  addr,         // an address, in place (AddrField) or a whole 64-bit word
  flag,         // a bit printed as its bare name when set and left out when clear (error lists)
  ssv,          // SubstreamID valid: not printed, it qualifies the Show::ssid field of the same record
  ssid,         // SubstreamID, printed "-" when the record has an SSV field and SSV == 0
  tlbi_tg,      // command TG: 0 any, 1 4K, 2 16K, 3 64K (IHI 0070 4.4.1.1)
  sync_cs,      // CMD_SYNC CS: none / IRQ / SEV
  pri_resp,     // CMD_PRI_RESP Resp
  resume_action,// CMD_RESUME Action
  rnw,          // 1 read "R", 0 write "W"
  evt_class,    // event CLASS: CD / TT / IN
  ste_config,   // STE.Config
  s1fmt,        // STE.S1Fmt
  s1dss,        // STE.S1DSS
  eats,         // STE.EATS
  strw,         // STE.STRW
  cache,        // TCR-style cacheability: NC / WBRA / WT / WB
  share,        // shareability: NSH / OSH / ISH
  tg0,          // TCR TG0 / VTCR TG: 0 4K, 1 64K, 2 16K
  tg1,          // TCR TG1: 1 16K, 2 4K, 3 64K
  addr_size,    // IDR5.OAS / CD.IPS / STE.S2PS encoding, printed as "48bit"
  ttf,          // IDR0.TTF
  httu,         // IDR0.HTTU
  ttendian,     // IDR0.TTENDIAN
  stall_model,  // IDR0.STALL_MODEL
  st_level,     // IDR0.ST_LEVEL
  vax,          // IDR5.VAX
  strtab_fmt,   // STRTAB_BASE_CFG.FMT
  cr1_cache,    // CR1 cacheability: NC / WB / WT
  cerror,       // CMDQ_CONS.ERR
};

struct FieldDesc {
  std::string_view name;
  unsigned word = 0;
  unsigned shift = 0;        // right shift after masking: Lo for a Field, 0 for an in-place AddrField
  std::uint64_t mask = 0;    // in place, within `word`
  Show show = Show::dec;

  constexpr std::uint64_t value(std::span<const std::uint64_t> dw) const { return (dw[word] & mask) >> shift; }
};

template <RecordField F>
constexpr FieldDesc describe(std::string_view name, F, Show show = Show::dec) {
  // A Field carries `max` and reads right-aligned; an AddrField reads its bits in place.
  constexpr bool in_place = !requires { F::max; };
  return FieldDesc{name, F::word, in_place ? 0U : F::lo, F::mask, show};
}

// A field paired with its printed name, as the opcode and event tables list parameters; the table builds a
// FieldDesc from it and ORs the field type's mask into the defined-bits masks (mask_of).
template <RecordField F>
struct Named {
  std::string_view name;
  F field;
  Show show;
};
template <RecordField F>
constexpr Named<F> named(std::string_view name, F f, Show show = Show::dec) {
  return {name, f, show};
}

// The entry of a table sorted by an 8-bit code (opcode, event ID) whose code is `value`, or nullptr.
template <class Table, class Code>
constexpr auto find_code(const Table& table, std::uint8_t value, Code code) -> decltype(&*std::begin(table)) {
  auto it = std::ranges::lower_bound(table, value, {}, [&](const auto& e) { return static_cast<std::uint8_t>(code(e)); });
  return it != std::end(table) && static_cast<std::uint8_t>(code(*it)) == value ? &*it : nullptr;
}

}  // namespace vsmmu::smmu

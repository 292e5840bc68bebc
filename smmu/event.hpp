// SMMUv3 event records (IHI 0070 7.3 Event records): 32 bytes. One Event record carries every field; the
// event table says which fields an event type fills.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

#include "smmu/field.hpp"
#include "smmu/field_desc.hpp"

namespace vsmmu::smmu {

// IHI 0070 7.3. 0xE0-0xEF are IMPLEMENTATION DEFINED (7.3.21); every other value is Reserved.
enum class EventId : std::uint8_t {
  F_UUT = 0x01,
  C_BAD_STREAMID = 0x02,
  F_STE_FETCH = 0x03,
  C_BAD_STE = 0x04,
  F_BAD_ATS_TREQ = 0x05,
  F_STREAM_DISABLED = 0x06,
  F_TRANSL_FORBIDDEN = 0x07,
  C_BAD_SUBSTREAMID = 0x08,
  F_CD_FETCH = 0x09,
  C_BAD_CD = 0x0a,
  F_WALK_EABT = 0x0b,
  F_TRANSLATION = 0x10,
  F_ADDR_SIZE = 0x11,
  F_ACCESS = 0x12,
  F_PERMISSION = 0x13,
  F_TLB_CONFLICT = 0x20,
  F_CFG_CONFLICT = 0x21,
  E_PAGE_REQUEST = 0x24,
  F_VMS_FETCH = 0x25,
};

// CLASS[41:40]: what the access that faulted was doing (IHI 0070 7.3, common fields).
enum class EventClass : std::uint8_t { CD = 0, TT = 1, IN = 2, reserved = 3 };

struct Event : Record<Event, 4> {
  // Dword 0
  static constexpr Field<0, 7, 0, EventId> ID{};
  static constexpr Field<0, 11, 11, bool> SSV{};
  static constexpr Field<0, 31, 12> SSID{};
  static constexpr Field<0, 63, 32, std::uint32_t> SID{};
  // Dword 1
  static constexpr Field<1, 15, 0, std::uint16_t> STAG{};     // stall events (F_TRANSLATION ... F_PERMISSION)
  static constexpr Field<1, 15, 0, std::uint16_t> Reason{};   // IMPLEMENTATION DEFINED cause, other events
  static constexpr Field<1, 16, 16, bool> GPCF{};             // fetch aborts from a GPC fault (IHI 0070 3.25.3)
  static constexpr Field<1, 31, 31, bool> Stall{};
  static constexpr Field<1, 33, 33, bool> PnU{};
  static constexpr Field<1, 34, 34, bool> InD{};
  static constexpr Field<1, 35, 35, bool> RnW{};
  static constexpr Field<1, 38, 38, bool> NSIPA{};
  static constexpr Field<1, 39, 39, bool> S2{};
  static constexpr Field<1, 41, 40, EventClass> CLASS{};
  static constexpr Field<1, 44, 44, bool> TTRnW{};
  // Dword 2
  static constexpr Field<2, 63, 0> InputAddr{};
  // Dword 3
  // The architecture allows [55:12] / [55:3]; bits above OAS are RES0 and vsmmu's OAS is at most 52.
  static constexpr AddrField<3, 51, 12> IPA{};          // translation-stage faults with S2=1
  static constexpr AddrField<3, 51, 3> FetchAddr{};     // F_STE_FETCH, F_CD_FETCH, F_WALK_EABT, F_VMS_FETCH
};

struct EventInfo {
  EventId id;
  std::string_view name;
  std::uint64_t dw_defined[4];  // the bits this event type fills; the rest are zero
  std::span<const FieldDesc> fields;  // the fields it fills, in print order (the ID itself excluded)
};

std::optional<EventInfo> event_info(std::uint8_t id);
std::span<const EventInfo> all_events();
std::string_view event_name(EventId id);  // "UNKNOWN" for undefined values

}  // namespace vsmmu::smmu

// The event table (IHI 0070 7.3.2 - 7.3.20): which fields each event type fills. Masks derive from the
// Event field definitions, so a field's position is written once, in event.hpp.
#include "smmu/event.hpp"

#include <algorithm>
#include <array>

namespace vsmmu::smmu {
namespace {

using E = Event;

constexpr std::size_t kMaxFields = 14;  // F_PERMISSION
struct EventDef {
  EventId id;
  std::string_view name;
  std::array<std::uint64_t, 4> dw;
  std::array<FieldDesc, kMaxFields> fields;
  std::size_t count;
};

template <class... Fs>
constexpr EventDef ev(EventId id, std::string_view name, Named<Fs>... fs) {
  static_assert(sizeof...(Fs) <= kMaxFields);
  return {id,
          name,
          {mask_of<0>(E::ID, Fs{}...), mask_of<1>(Fs{}...), mask_of<2>(Fs{}...), mask_of<3>(Fs{}...)},
          {describe(fs.name, fs.field, fs.show)...},
          sizeof...(Fs)};
}

// Field groups as the event layouts share them.
constexpr auto kSid = named("SID", E::SID, Show::hex);
constexpr auto kSsid = named("SSID", E::SSID, Show::ssid);
constexpr auto kSsv = named("SSV", E::SSV, Show::ssv);
constexpr auto kAddr = named("Addr", E::InputAddr, Show::addr);
constexpr auto kRnW = named("RnW", E::RnW, Show::rnw);
constexpr auto kInD = named("InD", E::InD);
constexpr auto kPnU = named("PnU", E::PnU);
constexpr auto kS2 = named("S2", E::S2);
constexpr auto kClass = named("CLASS", E::CLASS, Show::evt_class);
constexpr auto kNsipa = named("NSIPA", E::NSIPA);
constexpr auto kIpa = named("IPA", E::IPA, Show::addr);
constexpr auto kStag = named("STAG", E::STAG, Show::hex);
constexpr auto kStall = named("Stall", E::Stall);
constexpr auto kReason = named("Reason", E::Reason, Show::hex);
constexpr auto kGpcf = named("GPCF", E::GPCF);
constexpr auto kFetch = named("FetchAddr", E::FetchAddr, Show::addr);

// The four translation-stage faults share one layout; F_PERMISSION adds TTRnW (IHI 0070 7.3.13-16).
template <class... Extra>
constexpr EventDef translation_fault(EventId id, std::string_view name, Named<Extra>... extra) {
  return ev(id, name, kSid, kSsid, kSsv, kAddr, kRnW, kInD, kPnU, kS2, kClass, kNsipa, kIpa, kStall, kStag,
            extra...);
}
// An abort fetching a structure: F_STE_FETCH, F_CD_FETCH, F_VMS_FETCH (IHI 0070 7.3.4, 7.3.10, 7.3.20).
constexpr EventDef fetch_abort(EventId id, std::string_view name) {
  return ev(id, name, kSid, kSsid, kSsv, kFetch, kGpcf, kReason);
}
// A configuration error that names the stream only: C_BAD_STREAMID, C_BAD_STE, C_BAD_CD.
constexpr EventDef bad_config(EventId id, std::string_view name) { return ev(id, name, kSid, kSsid, kSsv); }

constexpr std::array kEvents{
    ev(EventId::F_UUT, "F_UUT", kSid, kSsid, kSsv, kAddr, kRnW, kInD, kPnU, kReason),
    bad_config(EventId::C_BAD_STREAMID, "C_BAD_STREAMID"),
    fetch_abort(EventId::F_STE_FETCH, "F_STE_FETCH"),
    bad_config(EventId::C_BAD_STE, "C_BAD_STE"),
    // The request's R/W/X/PRIV and Span are not modelled: vsmmu advertises no ATS (IDR0.ATS == 0).
    ev(EventId::F_BAD_ATS_TREQ, "F_BAD_ATS_TREQ", kSid, kSsid, kSsv, kAddr),
    ev(EventId::F_STREAM_DISABLED, "F_STREAM_DISABLED", kSid),
    ev(EventId::F_TRANSL_FORBIDDEN, "F_TRANSL_FORBIDDEN", kSid, kAddr, kRnW),
    // SubstreamID is always valid here: there is no SSV qualifier (IHI 0070 7.3.9).
    ev(EventId::C_BAD_SUBSTREAMID, "C_BAD_SUBSTREAMID", kSid, named("SSID", E::SSID, Show::hex)),
    fetch_abort(EventId::F_CD_FETCH, "F_CD_FETCH"),
    bad_config(EventId::C_BAD_CD, "C_BAD_CD"),
    ev(EventId::F_WALK_EABT, "F_WALK_EABT", kSid, kSsid, kSsv, kAddr, kRnW, kInD, kPnU, kS2, kClass, kFetch, kGpcf,
       kReason),
    translation_fault(EventId::F_TRANSLATION, "F_TRANSLATION"),
    translation_fault(EventId::F_ADDR_SIZE, "F_ADDR_SIZE"),
    translation_fault(EventId::F_ACCESS, "F_ACCESS"),
    translation_fault(EventId::F_PERMISSION, "F_PERMISSION", named("TTRnW", E::TTRnW, Show::rnw)),
    ev(EventId::F_TLB_CONFLICT, "F_TLB_CONFLICT", kSid, kSsid, kSsv, kAddr, kRnW, kInD, kPnU, kS2, kNsipa, kIpa,
       kReason),
    ev(EventId::F_CFG_CONFLICT, "F_CFG_CONFLICT", kSid, kSsid, kSsv, kReason),
    // The access flags and Span are not modelled: vsmmu advertises no PRI (IDR0.PRI == 0).
    ev(EventId::E_PAGE_REQUEST, "E_PAGE_REQUEST", kSid, kSsid, kSsv, kAddr),
    fetch_abort(EventId::F_VMS_FETCH, "F_VMS_FETCH"),
};
static_assert(std::ranges::is_sorted(kEvents, {}, &EventDef::id), "kEvents must be in ID order");

constexpr auto kInfos = [] {
  std::array<EventInfo, kEvents.size()> out{};
  for (std::size_t i = 0; i < kEvents.size(); ++i) {
    const auto& d = kEvents[i];
    out[i] = EventInfo{d.id, d.name, {d.dw[0], d.dw[1], d.dw[2], d.dw[3]},
                       std::span<const FieldDesc>(d.fields.data(), d.count)};
  }
  return out;
}();

const EventInfo* find(std::uint8_t value) {
  return find_code(kInfos, value, [](const EventInfo& i) { return i.id; });
}

}  // namespace

std::optional<EventInfo> event_info(std::uint8_t id) {
  if (const auto* i = find(id)) return *i;
  return std::nullopt;
}

std::span<const EventInfo> all_events() { return kInfos; }

std::string_view event_name(EventId id) {
  const auto* i = find(static_cast<std::uint8_t>(id));
  return i ? i->name : std::string_view("UNKNOWN");
}

}  // namespace vsmmu::smmu

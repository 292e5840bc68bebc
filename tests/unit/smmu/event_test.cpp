// Event records (IHI 0070 7.3): the event table, which fields each type fills, and their positions.
#include <gtest/gtest.h>

#include <set>

#include "smmu/event.hpp"

namespace vsmmu::smmu {
namespace {

bool fills(const EventInfo& info, std::uint64_t mask, unsigned word) { return (info.dw_defined[word] & mask) == mask; }
template <class F>
bool fills(EventId id, F) {
  auto info = event_info(static_cast<std::uint8_t>(id));
  return info && fills(*info, F::mask, F::word);
}

// IHI 0070 7.3.2 - 7.3.20: the architected event numbers; every other value is Reserved or IMPDEF.
TEST(EventTable, ListsEveryArchitectedEventOfIhi0070_7_3) {
  const std::pair<std::uint8_t, std::string_view> expected[] = {
      {0x01, "F_UUT"},          {0x02, "C_BAD_STREAMID"},     {0x03, "F_STE_FETCH"},
      {0x04, "C_BAD_STE"},      {0x05, "F_BAD_ATS_TREQ"},     {0x06, "F_STREAM_DISABLED"},
      {0x07, "F_TRANSL_FORBIDDEN"}, {0x08, "C_BAD_SUBSTREAMID"}, {0x09, "F_CD_FETCH"},
      {0x0A, "C_BAD_CD"},       {0x0B, "F_WALK_EABT"},        {0x10, "F_TRANSLATION"},
      {0x11, "F_ADDR_SIZE"},    {0x12, "F_ACCESS"},           {0x13, "F_PERMISSION"},
      {0x20, "F_TLB_CONFLICT"}, {0x21, "F_CFG_CONFLICT"},     {0x24, "E_PAGE_REQUEST"},
      {0x25, "F_VMS_FETCH"},
  };
  std::set<unsigned> defined;
  for (auto [value, name] : expected) {
    auto info = event_info(value);
    ASSERT_TRUE(info) << std::hex << unsigned(value);
    EXPECT_EQ(static_cast<std::uint8_t>(info->id), value);
    EXPECT_EQ(info->name, name);
    EXPECT_EQ(event_name(static_cast<EventId>(value)), name);
    defined.insert(value);
  }
  EXPECT_EQ(all_events().size(), std::size(expected));
  for (unsigned v = 0; v < 256; ++v)
    if (!defined.contains(v)) {
      EXPECT_FALSE(event_info(static_cast<std::uint8_t>(v))) << std::hex << v;
    }
  EXPECT_EQ(event_name(static_cast<EventId>(0xE0)), "UNKNOWN");
}

// Every event's fields survive the 32-byte little-endian encoding (IHI 0070 7.3), read back exactly the
// bits the event defines, and every event names its StreamID in dword 0 [63:32].
TEST(EventTable, EveryEventRoundTripsItsDefinedBits) {
  for (const auto& info : all_events()) {
    SCOPED_TRACE(info.name);
    Event evt{};
    evt.dw = {info.dw_defined[0], info.dw_defined[1], info.dw_defined[2], info.dw_defined[3]};
    evt.set(Event::ID, info.id);
    EXPECT_EQ(Event::from_bytes(evt.to_bytes()), evt);
    EXPECT_EQ(evt.get(Event::ID), info.id);
    EXPECT_TRUE(fills(info, Event::SID.mask, 0));
    std::array<std::uint64_t, 4> covered{Event::ID.mask, 0, 0, 0};
    for (const auto& f : info.fields) {
      EXPECT_EQ(f.value(evt.dw), f.mask >> f.shift) << f.name;
      covered[f.word] |= f.mask;
    }
    for (unsigned w = 0; w < 4; ++w) EXPECT_EQ(covered[w], info.dw_defined[w]) << "dw" << w;
  }
}

// IHI 0070 7.3.13 F_TRANSLATION: StreamID[63:32], SSV[11], SubstreamID[31:12]; STAG[79:64], Stall[95],
// PnU[97], InD[98], RnW[99], S2[103], CLASS[105:104]; InputAddr[191:128]; IPA[243:204] in dword 3.
TEST(EventFields, TranslationFaultEncodesAsIhi0070_7_3_13) {
  Event evt{};
  evt.set(Event::ID, EventId::F_TRANSLATION)
      .set(Event::SID, 0x10)
      .set(Event::SSV, true)
      .set(Event::SSID, 5)
      .set(Event::STAG, 0x1234)
      .set(Event::Stall, true)
      .set(Event::RnW, true)
      .set(Event::InD, true)
      .set(Event::PnU, true)
      .set(Event::S2, true)
      .set(Event::CLASS, EventClass::IN)
      .set(Event::InputAddr, 0x400000)
      .set(Event::IPA, 0x8000'0000);
  EXPECT_EQ(evt.dw[0], 0x0000'0010'0000'5810ULL);
  EXPECT_EQ(evt.dw[1], 0x0000'028E'8000'1234ULL);
  EXPECT_EQ(evt.dw[2], 0x400000ULL);
  EXPECT_EQ(evt.dw[3], 0x8000'0000ULL);
}

// Only the four translation-stage faults have a Stall parameter and STAG (IHI 0070 7.3.22 note), and only
// F_PERMISSION reports TTRnW (7.3.16).
TEST(EventFields, StallAndTtrnwBelongToTheirEvents) {
  const std::set<EventId> stall = {EventId::F_TRANSLATION, EventId::F_ADDR_SIZE, EventId::F_ACCESS,
                                   EventId::F_PERMISSION};
  for (const auto& info : all_events()) {
    EXPECT_EQ(fills(info, Event::Stall.mask, 1), stall.contains(info.id)) << info.name;
    EXPECT_EQ(fills(info, Event::TTRnW.mask, 1), info.id == EventId::F_PERMISSION) << info.name;
  }
}

// IHI 0070 3.25.3: F_STE_FETCH, F_CD_FETCH, F_VMS_FETCH and F_WALK_EABT carry GPCF at bit 80; the three
// structure-fetch aborts and F_WALK_EABT report the fetch address in dword 3 [55:3] (7.3.4, 7.3.10, 7.3.12).
TEST(EventFields, FetchAbortsCarryGpcfAndFetchAddr) {
  EXPECT_EQ(Event::GPCF.mask, 1ULL << (80 - 64));
  for (const auto& info : all_events()) {
    const bool fetch = info.id == EventId::F_STE_FETCH || info.id == EventId::F_CD_FETCH ||
                       info.id == EventId::F_VMS_FETCH || info.id == EventId::F_WALK_EABT;
    EXPECT_EQ(fills(info, Event::GPCF.mask, 1), fetch) << info.name;
    EXPECT_EQ(fills(info, Event::FetchAddr.mask, 3), fetch) << info.name;
  }
}

// IHI 0070 7.3.9: C_BAD_SUBSTREAMID's SubstreamID is always valid, there is no SSV; 7.3.7:
// F_STREAM_DISABLED names the stream only.
TEST(EventFields, SubstreamQualifiersFollowTheSpec) {
  EXPECT_TRUE(fills(EventId::C_BAD_SUBSTREAMID, Event::SSID));
  EXPECT_FALSE(fills(EventId::C_BAD_SUBSTREAMID, Event::SSV));
  EXPECT_TRUE(fills(EventId::C_BAD_STE, Event::SSV));
  auto disabled = event_info(static_cast<std::uint8_t>(EventId::F_STREAM_DISABLED));
  ASSERT_TRUE(disabled);
  EXPECT_EQ(disabled->dw_defined[0], Event::ID.mask | Event::SID.mask);
  EXPECT_EQ(disabled->dw_defined[1] | disabled->dw_defined[2] | disabled->dw_defined[3], 0U);
  // F_TRANSL_FORBIDDEN: StreamID, RnW[99] and InputAddr only (7.3.8).
  EXPECT_TRUE(fills(EventId::F_TRANSL_FORBIDDEN, Event::RnW));
  EXPECT_FALSE(fills(EventId::F_TRANSL_FORBIDDEN, Event::SSV));
  EXPECT_EQ(Event::RnW.mask, 1ULL << (99 - 64));
}

}  // namespace
}  // namespace vsmmu::smmu

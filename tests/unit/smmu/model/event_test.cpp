// Event records as the SMMU writes them to its event queue (IHI 0070 7.2, 7.3, 7.4): which event, and the
// fields the architecture says it fills; recording controls; overflow; interrupts.
#include "tests/unit/smmu/model/model_fixture.hpp"

namespace vsmmu::smmu::model::test {
namespace {

constexpr std::uint32_t kSid = 0x33;
constexpr std::uint64_t kVa = 0x5555'0000'0000ULL;
constexpr std::uint64_t kNoMemory = 0x70'0000'0000ULL;  // inside a 48-bit OAS, no RAM there

class EventTest : public ModelTest {
 protected:
  void SetUp() override {
    start(config(), driver_options());
    smmu->set_irq_handler(Irq::eventq, [this] { ++eventq_irqs; });
  }
  virtual ModelConfig config() const { return ModelConfig::reference(); }
  virtual DriverOptions driver_options() const { return {}; }

  // The one event a faulting access produced, as read back from the event queue.
  Event only_event() {
    auto all = events();
    EXPECT_EQ(all.size(), 1U);
    return all.empty() ? Event{} : all[0];
  }
  void expect_stream(const Event& e, EventId id, std::optional<std::uint32_t> ssid = std::nullopt) {
    EXPECT_EQ(e.get(Event::ID), id);
    EXPECT_EQ(e.get(Event::SID), kSid);
    EXPECT_EQ(e.get(Event::SSV), ssid.has_value());
    EXPECT_EQ(e.get(Event::SSID), ssid.value_or(0));
  }

  unsigned eventq_irqs = 0;
};

// A stage-1 translation fault: S2 = 0, CLASS = IN, the input address and the access (IHI 0070 7.3.13).
TEST_F(EventTest, StageOneTranslationFault) {
  nested_stream(kSid);
  ASSERT_TRUE(s1.init());
  auto r = DmaMaster(*smmu, kSid, std::nullopt, DmaAttributes{.privileged = true}).write64(kVa + 0x18, 1);
  ASSERT_FALSE(r);
  EXPECT_TRUE(r.error().recorded);
  const Event e = only_event();
  EXPECT_EQ(e, *r.error().event);
  expect_stream(e, EventId::F_TRANSLATION);
  EXPECT_EQ(e.get(Event::InputAddr), kVa + 0x18);
  EXPECT_FALSE(e.get(Event::RnW));  // a write
  EXPECT_TRUE(e.get(Event::PnU));
  EXPECT_FALSE(e.get(Event::InD));
  EXPECT_FALSE(e.get(Event::S2));
  EXPECT_EQ(e.get(Event::CLASS), EventClass::IN);
  EXPECT_EQ(e.get(Event::IPA), 0U);
  EXPECT_EQ(eventq_irqs, 1U);
}

// A stage-2 fault on the stage-1 output: S2 = 1, CLASS = IN, IPA the address stage 2 could not translate.
TEST_F(EventTest, StageTwoFaultOnTheOutputIpa) {
  nested_stream(kSid);
  ASSERT_TRUE(s1.map(kVa, 0x4000'0000, 4096, MapAttributes{}));  // an IPA stage 2 does not map
  std::array<std::byte, 16> buf{};
  ASSERT_FALSE(DmaMaster(*smmu, kSid).read(kVa + 0x40, buf));
  const Event e = only_event();
  expect_stream(e, EventId::F_TRANSLATION);
  EXPECT_TRUE(e.get(Event::RnW));
  EXPECT_TRUE(e.get(Event::S2));
  EXPECT_EQ(e.get(Event::CLASS), EventClass::IN);
  EXPECT_EQ(e.get(Event::IPA), 0x4000'0000U);
  EXPECT_EQ(e.get(Event::InputAddr), kVa + 0x40);
}

// A stage-2 fault while walking stage 1: CLASS = TT, IPA the stage-1 descriptor's, TTRnW = 1 for its read
// (IHI 0070 7.3.16). Here the guest's level-3 table page loses its stage-2 mapping.
TEST_F(EventTest, StageTwoFaultOnAStageOneTableIsClassTt) {
  nested_stream(kSid);
  ASSERT_TRUE(s1.map(kVa, kGuestData, 4096, MapAttributes{}));
  auto leaf = s1.leaf(kVa);
  ASSERT_TRUE(leaf);
  const std::uint64_t table_ipa = leaf->descriptor_address & ~0xfffULL;
  const Descriptor s2_leaf{{s2.leaf(table_ipa)->descriptor}};
  ASSERT_TRUE(s2.write_leaf(table_ipa, Descriptor{s2_leaf}.set(Descriptor::Valid, false).dw[0]));
  ASSERT_FALSE(DmaMaster(*smmu, kSid).write64(kVa, 1));
  const Event e = only_event();
  EXPECT_EQ(e.get(Event::ID), EventId::F_TRANSLATION);
  EXPECT_TRUE(e.get(Event::S2));
  EXPECT_EQ(e.get(Event::CLASS), EventClass::TT);
  EXPECT_EQ(e.get(Event::IPA), table_ipa);
  EXPECT_EQ(e.get(Event::InputAddr), kVa);
}

// A stage-2 fault fetching the CD: CLASS = CD, IPA the CD's (IHI 0070 7.3.13).
TEST_F(EventTest, StageTwoFaultOnTheCdFetchIsClassCd) {
  map_guest_ram();
  ASSERT_TRUE(driver->write_ste(kSid, s1_ste(0x4000'0000, true)));  // a CD table IPA stage 2 does not map
  ASSERT_FALSE(DmaMaster(*smmu, kSid).write64(kVa, 1));
  const Event e = only_event();
  EXPECT_EQ(e.get(Event::ID), EventId::F_TRANSLATION);
  EXPECT_TRUE(e.get(Event::S2));
  EXPECT_EQ(e.get(Event::CLASS), EventClass::CD);
  EXPECT_EQ(e.get(Event::IPA), 0x4000'0000U);
}

// F_PERMISSION for a write to a read-only page, F_ACCESS for AF == 0 without HTTU (IHI 0070 7.3.15, 7.3.14).
TEST_F(EventTest, PermissionAndAccessFlagFaults) {
  nested_stream(kSid);
  ASSERT_TRUE(s1.map(kVa, kGuestData, 4096, MapAttributes{.write = false}));
  ASSERT_TRUE(s1.map(kVa + 4096, kGuestData, 4096, MapAttributes{.access_flag = false}));
  DmaMaster dev(*smmu, kSid);
  EXPECT_TRUE(dev.read64(kVa));
  EXPECT_FALSE(dev.write64(kVa, 1));
  EXPECT_FALSE(dev.read64(kVa + 4096));
  auto all = events();
  ASSERT_EQ(all.size(), 2U);
  EXPECT_EQ(all[0].get(Event::ID), EventId::F_PERMISSION);
  EXPECT_FALSE(all[0].get(Event::RnW));
  EXPECT_FALSE(all[0].get(Event::S2));
  EXPECT_EQ(all[1].get(Event::ID), EventId::F_ACCESS);
  EXPECT_TRUE(all[1].get(Event::RnW));
  EXPECT_EQ(all[1].get(Event::InputAddr), kVa + 4096);
}

// F_ADDR_SIZE: a stage-1 output above the CD's IPS (IHI 0070 7.3.14, 5.4 IPS).
TEST_F(EventTest, OutputAboveIpsIsAnAddressSizeFault) {
  TableBuilder tables{mem, host_pool, Stage::s1, Granule::k4K, 48};
  ASSERT_TRUE(tables.map(kVa, kGuestPa, 4096, MapAttributes{}));  // PA above 4 GiB
  auto table = host_pool.allocate(64, 64);
  ASSERT_TRUE(table);
  ASSERT_TRUE(mem.write_record(*table, cd(tables).set(Cd::IPS, 0)));  // 32-bit output
  ASSERT_TRUE(driver->write_ste(kSid, s1_ste(*table, false)));
  ASSERT_FALSE(DmaMaster(*smmu, kSid).write64(kVa, 1));
  EXPECT_EQ(only_event().get(Event::ID), EventId::F_ADDR_SIZE);
}

// CD.R = 0 and STE.S2R = 0 suppress the translation-fault records of their stage (IHI 0070 5.4 R, 5.2 S2R);
// the transaction is still terminated.
TEST_F(EventTest, RecordControlsSuppressTranslationFaultEvents) {
  map_guest_ram();
  ASSERT_TRUE(s1.map(kVa, 0x4000'0000, 4096, MapAttributes{}));  // stage-1 OK, stage 2 faults
  auto table = guest_pool.allocate(64, 64);
  ASSERT_TRUE(table);
  ASSERT_TRUE(guest.write_record(*table, cd(s1).set(Cd::R, false)));
  ASSERT_TRUE(driver->write_ste(kSid, s1_ste(*table, true).set(Ste::S2R, false)));
  DmaMaster dev(*smmu, kSid);
  auto s2_fault = dev.write64(kVa, 1);
  auto s1_fault = dev.write64(kVa + 4096, 1);
  ASSERT_FALSE(s2_fault);
  ASSERT_FALSE(s1_fault);
  EXPECT_FALSE(s2_fault.error().recorded);
  EXPECT_FALSE(s1_fault.error().recorded);
  EXPECT_TRUE(events().empty());
  EXPECT_EQ(eventq_irqs, 0U);
}

// Configuration errors name the stream (IHI 0070 7.3.3, 7.3.5, 7.3.11) and fill nothing else.
TEST_F(EventTest, ConfigurationErrorsNameTheStreamOnly) {
  ASSERT_TRUE(driver->write_ste(kSid, Ste{}.set(Ste::V, true).set(Ste::Config, StreamConfig::reserved2)));
  ASSERT_FALSE(DmaMaster(*smmu, kSid).write64(kVa, 1));
  const Event bad_ste = only_event();
  expect_stream(bad_ste, EventId::C_BAD_STE);
  EXPECT_EQ(bad_ste.dw[1], 0U);
  EXPECT_EQ(bad_ste.dw[2], 0U);  // no input address in C_BAD_STE
  EXPECT_EQ(bad_ste.dw[3], 0U);

  map_guest_ram();
  auto table = guest_pool.allocate(Cd::bytes * 2, 128);
  ASSERT_TRUE(table);
  ASSERT_TRUE(
      guest.write_record(*table + 64, Cd{}.set(Cd::V, true).set(Cd::AA64, true).set(Cd::TG0, 3)));  // reserved TG0
  ASSERT_TRUE(driver->write_ste(kSid, s1_ste(*table, true, 1, CdTableFormat::linear, S1Dss::bypass)));
  ASSERT_TRUE(driver->issue(cmd_cfgi_ste(kSid)));
  ASSERT_FALSE(DmaMaster(*smmu, kSid, 1).write64(kVa, 1));
  const Event bad_cd = only_event();
  expect_stream(bad_cd, EventId::C_BAD_CD, 1);
  EXPECT_EQ(bad_cd.dw[2], 0U);
}

// C_BAD_STREAMID is recorded only when CR2.RECINVSID asks for it (IHI 0070 6.3.12).
TEST_F(EventTest, BadStreamIdRecordedWithRecinvsid) {
  auto r = DmaMaster(*smmu, 0x1'0000).write64(kVa, 1);  // SIDSIZE is 16
  ASSERT_FALSE(r);
  EXPECT_TRUE(r.error().recorded);
  const Event e = only_event();
  EXPECT_EQ(e.get(Event::ID), EventId::C_BAD_STREAMID);
  EXPECT_EQ(e.get(Event::SID), 0x1'0000U);
}

class EventTestWithoutRecinvsid : public EventTest {
  DriverOptions driver_options() const override { return DriverOptions{.record_invalid_sids = false}; }
};

TEST_F(EventTestWithoutRecinvsid, BadStreamIdIsNotRecorded) {
  auto r = DmaMaster(*smmu, 0x100).write64(kVa, 1);  // beyond the 8-bit stream table
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().event->get(Event::ID), EventId::C_BAD_STREAMID);
  EXPECT_FALSE(r.error().recorded);
  EXPECT_TRUE(events().empty());
}

// Fetch aborts carry the PA of the fetch that failed (IHI 0070 7.3.4, 7.3.10, 7.3.12).
TEST_F(EventTest, FetchAbortsCarryTheFetchAddress) {
  // An S1ContextPtr (a PA without stage 2) with nothing behind it: F_CD_FETCH.
  ASSERT_TRUE(driver->write_ste(kSid, s1_ste(kNoMemory, false)));
  ASSERT_FALSE(DmaMaster(*smmu, kSid).write64(kVa, 1));
  Event e = only_event();
  expect_stream(e, EventId::F_CD_FETCH);
  EXPECT_EQ(e.get(Event::FetchAddr), kNoMemory);

  // A stage-2 root with nothing behind it: F_WALK_EABT at stage 2.
  ASSERT_TRUE(s2.init());
  ASSERT_TRUE(driver->write_ste(kSid, s2_ste().set(Ste::S2TTB, kNoMemory)));
  ASSERT_TRUE(driver->issue(cmd_cfgi_ste(kSid)));
  ASSERT_FALSE(DmaMaster(*smmu, kSid).write64(0x1000, 1));
  e = only_event();
  expect_stream(e, EventId::F_WALK_EABT);
  EXPECT_TRUE(e.get(Event::S2));
  EXPECT_EQ(e.get(Event::FetchAddr) & ~0xfffULL, kNoMemory);
  EXPECT_EQ(e.get(Event::InputAddr), 0x1000U);

  // A stream table with nothing behind it: F_STE_FETCH.
  ASSERT_TRUE(
      smmu->write32(regs::CR0.offset, Cr0::of(smmu->read32(regs::CR0.offset).value()).set(Cr0::SMMUEN, false).value()));
  ASSERT_TRUE(smmu->write64(regs::STRTAB_BASE.offset, StrtabBase{}.set(StrtabBase::ADDR, kNoMemory).value()));
  ASSERT_TRUE(
      smmu->write32(regs::CR0.offset, Cr0::of(smmu->read32(regs::CR0.offset).value()).set(Cr0::SMMUEN, true).value()));
  ASSERT_TRUE(driver->issue(cmd_cfgi_all()));
  ASSERT_FALSE(DmaMaster(*smmu, kSid).write64(kVa, 1));
  e = only_event();
  expect_stream(e, EventId::F_STE_FETCH);
  EXPECT_EQ(e.get(Event::FetchAddr), kNoMemory + kSid * Ste::bytes);
}

// In a nested configuration the CD fetch's PA comes from stage 2; an abort there reports that PA.
TEST_F(EventTest, NestedCdFetchAbortReportsThePhysicalAddress) {
  map_guest_ram();
  ASSERT_TRUE(s2.map(0x4000'0000, kNoMemory, 4096, MapAttributes{}));
  ASSERT_TRUE(driver->write_ste(kSid, s1_ste(0x4000'0040, true)));
  ASSERT_FALSE(DmaMaster(*smmu, kSid).write64(kVa, 1));
  const Event e = only_event();
  EXPECT_EQ(e.get(Event::ID), EventId::F_CD_FETCH);
  EXPECT_EQ(e.get(Event::FetchAddr), kNoMemory + 0x40);
}

class SmallEventQueue : public EventTest {
  DriverOptions driver_options() const override { return DriverOptions{.eventq_log2 = 2}; }  // 4 records
};

// IHI 0070 7.4: a full queue loses records; entering overflow toggles EVENTQ_PROD.OVFLG, which software
// acknowledges through EVENTQ_CONS.OVACKFLG; a later overflow toggles it again.
TEST_F(SmallEventQueue, OverflowTogglesOvflgOncePerCondition) {
  const auto ovflg = [&] {
    return QueueProd::of(smmu->read32(regs::EVENTQ_PROD.offset).value()).get(QueueProd::OVFLG);
  };
  for (std::uint32_t i = 0; i < 6; ++i) EXPECT_FALSE(DmaMaster(*smmu, 0x100 + i).write64(kVa, 1));
  EXPECT_TRUE(ovflg());
  EXPECT_EQ(smmu->counters().events, 4U);
  EXPECT_EQ(smmu->counters().events_lost, 2U);
  auto got = events();  // reads the four and acknowledges
  ASSERT_EQ(got.size(), 4U);
  for (std::uint32_t i = 0; i < 4; ++i) EXPECT_EQ(got[i].get(Event::SID), 0x100 + i);
  EXPECT_TRUE(ovflg());  // OVFLG stays; OVACKFLG now equals it

  for (std::uint32_t i = 0; i < 4; ++i) EXPECT_FALSE(DmaMaster(*smmu, 0x200 + i).write64(kVa, 1));
  EXPECT_TRUE(ovflg());  // exactly full, nothing lost
  EXPECT_FALSE(DmaMaster(*smmu, 0x300).write64(kVa, 1));
  EXPECT_FALSE(ovflg());  // a new overflow condition
  EXPECT_EQ(events().size(), 4U);
}

// Events are not recorded while EVENTQEN == 0 (IHI 0070 6.3.9).
TEST_F(EventTest, DisabledEventQueueRecordsNothing) {
  ASSERT_TRUE(smmu->write32(regs::CR0.offset,
                            Cr0::of(smmu->read32(regs::CR0.offset).value()).set(Cr0::EVENTQEN, false).value()));
  auto r = DmaMaster(*smmu, 0x100).write64(kVa, 1);
  ASSERT_FALSE(r);
  EXPECT_FALSE(r.error().recorded);
  EXPECT_EQ(smmu->counters().events, 0U);
  EXPECT_EQ(eventq_irqs, 0U);
}

// With IDR0.MSI and an EVENTQ_IRQ_CFG0 address, the event interrupt is an MSI write (IHI 0070 3.18).
TEST_F(EventTest, EventInterruptAsMsi) {
  const std::uint64_t doorbell = kHostPool + kHostPoolSize - 4;
  ASSERT_TRUE(smmu->write64(regs::EVENTQ_IRQ_CFG0.offset, IrqCfg0{}.set(IrqCfg0::ADDR, doorbell).value()));
  ASSERT_TRUE(smmu->write32(regs::EVENTQ_IRQ_CFG1.offset, 0x2a));
  EXPECT_FALSE(DmaMaster(*smmu, 0x100).write64(kVa, 1));
  EXPECT_EQ(mem.read32(doorbell).value(), 0x2aU);
  EXPECT_EQ(eventq_irqs, 0U);
}

class TerminateModelZero : public EventTest {
  ModelConfig config() const override {
    ModelConfig c = ModelConfig::reference();
    c.idr0.set(Idr0::TERM_MODEL, false);
    return c;
  }
};

// With IDR0.TERM_MODEL == 0 and CD.A == 0, a stage-1 fault completes as RAZ/WI: reads see zeros, writes are
// dropped, and the event is still recorded (IHI 0070 3.12.2, 5.4 A).
TEST_F(TerminateModelZero, CdAZeroTerminatesAsRazWi) {
  map_guest_ram();
  ASSERT_TRUE(s1.init());
  auto table = guest_pool.allocate(64, 64);
  ASSERT_TRUE(table);
  ASSERT_TRUE(guest.write_record(*table, cd(s1).set(Cd::A, false)));
  ASSERT_TRUE(driver->write_ste(kSid, s1_ste(*table, true)));
  std::array<std::byte, 8> buf;
  buf.fill(std::byte{0x5a});
  auto r = DmaMaster(*smmu, kSid).read(kVa, buf);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().outcome, DmaOutcome::raz_wi);
  EXPECT_EQ(buf, (std::array<std::byte, 8>{}));
  EXPECT_EQ(only_event().get(Event::ID), EventId::F_TRANSLATION);
}

}  // namespace
}  // namespace vsmmu::smmu::model::test

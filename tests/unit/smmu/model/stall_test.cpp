// Stalled transactions (IHI 0070 3.12.2 "Stall model", 5.5 "Fault configuration", 4.7.1 CMD_RESUME, 4.7.2
// CMD_STALL_TERM): a stage-1 fault with CD.S = 1 holds the DMA and records Stall = 1 with a STAG; software
// retries or terminates it by StreamID + STAG.
#include <map>
#include <set>

#include "tests/unit/smmu/model/model_fixture.hpp"

namespace vsmmu::smmu::model::test {
namespace {

constexpr std::uint32_t kSid = 0x21;
constexpr std::uint32_t kOtherSid = 0x22;
constexpr std::uint64_t kVa = 0x7000'0000ULL;
constexpr std::uint16_t kStallMax = 3;

Command resume(std::uint32_t sid, std::uint16_t stag, ResumeAction action) {
  Command c;
  c.set(Command::Opcode, Opcode::RESUME).set(Command::SID, sid).set(Command::STAG, stag).set(Command::Action, action);
  return c;
}
Command stall_term(std::uint32_t sid) {
  Command c;
  c.set(Command::Opcode, Opcode::STALL_TERM).set(Command::SID, sid);
  return c;
}

class StallTest : public ModelTest {
 protected:
  void SetUp() override {
    ModelConfig c = ModelConfig::reference();
    c.idr0.set(Idr0::STALL_MODEL, StallModel::stall_and_terminate);
    c.idr5.set(Idr5::STALL_MAX, kStallMax);
    start(c);
  }
  // A nested stream whose CD has S = `stall` (and the STE S1STALLD = `stalld`).
  void stream(std::uint32_t sid, bool stall = true, bool stalld = false) {
    if (!cd_table_ipa) {
      nested_stream(sid);
    } else {
      auto t = guest_pool.allocate(Cd::bytes, Cd::bytes);
      ASSERT_TRUE(t);
      cd_tables[sid] = *t;
    }
    const std::uint64_t table = cd_tables.count(sid) ? cd_tables[sid] : cd_table_ipa;
    ASSERT_TRUE(guest.write_record(table, cd(s1).set(Cd::S, stall)));
    ASSERT_TRUE(driver->write_ste(sid, s1_ste(table, true).set(Ste::S1STALLD, stalld)));
    ASSERT_TRUE(driver->issue(cmd_cfgi_ste(sid)));
  }
  void issue(const Command& c) { ASSERT_TRUE(driver->issue(c)) << "command"; }

  std::map<std::uint32_t, std::uint64_t> cd_tables;
};

// Stall = 1 and a STAG in the record; the transaction is held, nothing moved (3.12.2, 5.5 S: always recorded).
TEST_F(StallTest, StageOneFaultWithCdSStallsAndRecordsStallAndStag) {
  stream(kSid);
  auto r = DmaMaster(*smmu, kSid).write64(kVa + 8, 0x1122);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().outcome, DmaOutcome::stalled);
  ASSERT_TRUE(r.error().stag);
  EXPECT_NE(r.error().stall_id, 0U);
  auto ev = events();
  ASSERT_EQ(ev.size(), 1U);
  EXPECT_EQ(ev[0].get(Event::ID), EventId::F_TRANSLATION);
  EXPECT_TRUE(ev[0].get(Event::Stall));
  EXPECT_EQ(ev[0].get(Event::STAG), *r.error().stag);
  EXPECT_EQ(ev[0].get(Event::InputAddr), kVa + 8);
  EXPECT_EQ(smmu->stalled_transactions(), 1U);
  auto s = smmu->take_stall(r.error().stall_id);
  ASSERT_TRUE(s);
  EXPECT_TRUE(s->held);
}

// CMD_RESUME(Retry) after software maps the page: retried as if new, the write lands (3.12.2, 4.7.1).
TEST_F(StallTest, ResumeRetryCompletesTheWriteThroughTheNewMapping) {
  stream(kSid);
  const auto data = pattern(64, 3);
  auto r = DmaMaster(*smmu, kSid).write(kVa + 0x100, data);
  ASSERT_FALSE(r);
  ASSERT_EQ(r.error().outcome, DmaOutcome::stalled);
  ASSERT_TRUE(s1.map(kVa, kGuestData, 4096, MapAttributes{}));
  issue(resume(kSid, *r.error().stag, ResumeAction::retry));
  auto s = smmu->take_stall(r.error().stall_id);
  ASSERT_TRUE(s);
  EXPECT_FALSE(s->held);
  EXPECT_FALSE(s->fault);
  EXPECT_EQ(read_pa(kGuestDataPa + 0x100, 64), data);
  EXPECT_FALSE(smmu->take_stall(r.error().stall_id)) << "a finished stall is forgotten once taken";
  EXPECT_EQ(smmu->stalled_transactions(), 0U);
}

// A read resumed after mapping returns the bytes at the new translation.
TEST_F(StallTest, ResumeRetryCompletesTheRead) {
  stream(kSid);
  const auto data = pattern(32, 9);
  ASSERT_TRUE(mem.write(kGuestDataPa + 0x40, data));
  std::vector<std::byte> out(32);
  auto r = DmaMaster(*smmu, kSid).read(kVa + 0x40, out);
  ASSERT_FALSE(r);
  ASSERT_EQ(r.error().outcome, DmaOutcome::stalled);
  ASSERT_TRUE(s1.map(kVa, kGuestData, 4096, MapAttributes{}));
  issue(resume(kSid, *r.error().stag, ResumeAction::retry));
  auto s = smmu->take_stall(r.error().stall_id);
  ASSERT_TRUE(s);
  EXPECT_FALSE(s->fault);
  EXPECT_EQ(s->read_data, data);
}

// A retry that faults again stalls again: a new record with a new STAG, the same transaction (3.12.2.1 last
// paragraph: after CMD_RESUME(Retry) it is a new transaction and may fault again).
TEST_F(StallTest, RetryThatFaultsAgainStallsAgainWithANewStag) {
  stream(kSid);
  auto r = DmaMaster(*smmu, kSid).write64(kVa, 1);
  ASSERT_FALSE(r);
  const std::uint16_t first = *r.error().stag;
  (void)events();
  issue(resume(kSid, first, ResumeAction::retry));
  auto ev = events();
  ASSERT_EQ(ev.size(), 1U);
  EXPECT_TRUE(ev[0].get(Event::Stall));
  auto s = smmu->take_stall(r.error().stall_id);
  ASSERT_TRUE(s);
  EXPECT_TRUE(s->held);
  ASSERT_TRUE(s->fault && s->fault->stag);
  EXPECT_EQ(ev[0].get(Event::STAG), *s->fault->stag);
  // The old STAG names nothing now: resuming it has no effect.
  issue(resume(kSid, first, ResumeAction::abort));
  EXPECT_TRUE(smmu->take_stall(r.error().stall_id)->held);
  EXPECT_EQ(smmu->stalled_transactions(), 1U);
}

// CMD_RESUME with Ab (Linux's RESP_ABORT) terminates with an abort; nothing is written (4.7.1).
TEST_F(StallTest, ResumeAbortFailsTheAccess) {
  stream(kSid);
  const auto before = read_pa(kGuestDataPa, 8);
  auto r = DmaMaster(*smmu, kSid).write64(kVa, 0xdead);
  ASSERT_FALSE(r);
  ASSERT_TRUE(s1.map(kVa, kGuestData, 4096, MapAttributes{}));
  issue(resume(kSid, *r.error().stag, ResumeAction::abort));
  auto s = smmu->take_stall(r.error().stall_id);
  ASSERT_TRUE(s && s->fault);
  EXPECT_EQ(s->fault->outcome, DmaOutcome::aborted);
  EXPECT_EQ(read_pa(kGuestDataPa, 8), before);
}

// CMD_STALL_TERM terminates every stalled transaction of its stream and no other (4.7.2).
TEST_F(StallTest, StallTermTerminatesEveryStallOfTheStreamOnly) {
  stream(kSid);
  stream(kOtherSid);
  auto a = DmaMaster(*smmu, kSid).write64(kVa, 1);
  auto b = DmaMaster(*smmu, kSid).write64(kVa + 0x1000, 2);
  auto c = DmaMaster(*smmu, kOtherSid).write64(kVa, 3);
  ASSERT_FALSE(a);
  ASSERT_FALSE(b);
  ASSERT_FALSE(c);
  EXPECT_EQ(smmu->stalled_transactions(), 3U);
  issue(stall_term(kSid));
  EXPECT_EQ(smmu->take_stall(a.error().stall_id)->fault->outcome, DmaOutcome::aborted);
  EXPECT_EQ(smmu->take_stall(b.error().stall_id)->fault->outcome, DmaOutcome::aborted);
  EXPECT_TRUE(smmu->take_stall(c.error().stall_id)->held);
  EXPECT_EQ(smmu->stalled_transactions(), 1U);
}

// A STAG that names no stalled transaction of that StreamID is a no-op, not CERROR_ILL (4.7.1).
TEST_F(StallTest, ResumeWithAnUnknownStagOrAnotherStreamIsIgnored) {
  stream(kSid);
  stream(kOtherSid);
  auto r = DmaMaster(*smmu, kSid).write64(kVa, 1);
  ASSERT_FALSE(r);
  const std::uint16_t stag = *r.error().stag;
  issue(resume(kSid, static_cast<std::uint16_t>(stag + 100), ResumeAction::abort));
  issue(resume(kOtherSid, stag, ResumeAction::abort));
  EXPECT_EQ(smmu->counters().command_errors, 0U);
  EXPECT_TRUE(smmu->take_stall(r.error().stall_id)->held);
}

// CD.S = 0 terminates (A = 1: abort) and records Stall = 0; S1STALLD = 1 with CD.S = 1 makes the CD ILLEGAL
// (5.5), so the access aborts with C_BAD_CD.
TEST_F(StallTest, CdSClearOrS1StalldTerminates) {
  stream(kSid, /*stall=*/false);
  auto r = DmaMaster(*smmu, kSid).write64(kVa, 1);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().outcome, DmaOutcome::aborted);
  EXPECT_FALSE(r.error().stag);
  auto ev = events();
  ASSERT_EQ(ev.size(), 1U);
  EXPECT_FALSE(ev[0].get(Event::Stall));

  stream(kOtherSid, /*stall=*/true, /*stalld=*/true);
  auto r2 = DmaMaster(*smmu, kOtherSid).write64(kVa, 1);
  ASSERT_FALSE(r2);
  EXPECT_EQ(r2.error().outcome, DmaOutcome::aborted);
  ev = events();
  ASSERT_EQ(ev.size(), 1U);
  EXPECT_EQ(ev[0].get(Event::ID), EventId::C_BAD_CD);
  EXPECT_EQ(smmu->stalled_transactions(), 0U);
}

// IDR5.STALL_MAX bounds the held transactions; the next fault is terminated, recorded with Stall = 0 (6.3.6,
// 3.12: a stalling configuration treated as terminating).
TEST_F(StallTest, StallMaxBoundsTheHeldTransactions) {
  stream(kSid);
  for (unsigned i = 0; i < kStallMax; ++i) {
    auto r = DmaMaster(*smmu, kSid).write64(kVa + i * 0x1000, i);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().outcome, DmaOutcome::stalled);
  }
  auto over = DmaMaster(*smmu, kSid).write64(kVa + 0x10000, 9);
  ASSERT_FALSE(over);
  EXPECT_EQ(over.error().outcome, DmaOutcome::aborted);
  auto ev = events();
  ASSERT_EQ(ev.size(), kStallMax + 1U);
  EXPECT_FALSE(ev.back().get(Event::Stall));
  // STAGs of held transactions are distinct (3.12.2).
  std::set<std::uint64_t> stags;
  for (unsigned i = 0; i < kStallMax; ++i) stags.insert(ev[i].get(Event::STAG));
  EXPECT_EQ(stags.size(), kStallMax);
}

// Invalidation does not touch a stalled transaction; the retry uses the configuration of its time (3.12.2).
TEST_F(StallTest, InvalidationLeavesStallsHeldAndRetryUsesTheNewConfiguration) {
  stream(kSid);
  auto r = DmaMaster(*smmu, kSid).write64(kVa, 5);
  ASSERT_FALSE(r);
  issue(cmd_cfgi_all());
  issue(cmd_tlbi_nh_all(kVmid));
  EXPECT_EQ(smmu->stalled_transactions(), 1U);
  // The stream now aborts everything (Config = abort): the retry terminates.
  Ste abort_ste;
  abort_ste.set(Ste::V, true).set(Ste::Config, StreamConfig::abort);
  ASSERT_TRUE(driver->write_ste(kSid, abort_ste));
  issue(cmd_cfgi_ste(kSid));
  issue(resume(kSid, *r.error().stag, ResumeAction::retry));
  auto s = smmu->take_stall(r.error().stall_id);
  ASSERT_TRUE(s && s->fault);
  EXPECT_EQ(s->fault->outcome, DmaOutcome::aborted);
}

// Clearing SMMUEN terminates every stalled transaction (3.12.2).
TEST_F(StallTest, DisablingTheSmmuTerminatesStalls) {
  stream(kSid);
  auto r = DmaMaster(*smmu, kSid).write64(kVa, 5);
  ASSERT_FALSE(r);
  auto cr0 = smmu->mmio_read(0x20, 4);  // SMMU_CR0
  ASSERT_TRUE(cr0);
  ASSERT_TRUE(smmu->mmio_write(0x20, *cr0 & ~1ULL, 4));
  EXPECT_EQ(smmu->stalled_transactions(), 0U);
  EXPECT_EQ(smmu->take_stall(r.error().stall_id)->fault->outcome, DmaOutcome::aborted);
}

// On a terminate-only SMMU (STALL_MODEL = 0b01) CMD_RESUME and CMD_STALL_TERM are CERROR_ILL (4.7.1, 4.7.2) and a
// CD with S = 1 is ILLEGAL (5.5).
class TerminateOnlyTest : public ModelTest {
 protected:
  void SetUp() override { start(ModelConfig::reference(), DriverOptions{.skip_command_errors = true}); }
};

TEST_F(TerminateOnlyTest, ResumeIsIllegalAndCdSIsBad) {
  nested_stream(kSid);
  ASSERT_TRUE(driver->issue(resume(kSid, 0, ResumeAction::retry)));
  ASSERT_TRUE(driver->issue(stall_term(kSid)));
  EXPECT_EQ(driver->command_errors_skipped(), 2U);
  ASSERT_TRUE(guest.write_record(cd_table_ipa, cd(s1).set(Cd::S, true)));
  auto r = DmaMaster(*smmu, kSid).write64(kVa, 1);
  ASSERT_FALSE(r);
  auto ev = events();
  ASSERT_EQ(ev.size(), 1U);
  EXPECT_EQ(ev[0].get(Event::ID), EventId::C_BAD_CD);
}

}  // namespace
}  // namespace vsmmu::smmu::model::test

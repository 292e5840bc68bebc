// The command queue, its errors and the event queue as the driver handles them (IHI 0070 3.5, 7.1, 7.4, 7.5;
// Linux's arm_smmu_cmdq_issue_cmdlist, arm_smmu_cmdq_skip_err, arm_smmu_gerror_handler, arm_smmu_evtq_thread).
#include "testing/dma.hpp"
#include "tests/unit/smmu/driver/driver_fixture.hpp"

namespace vsmmu::smmu::driver::test {
namespace {

const Command kIllegal = Command{}.set(Command::Opcode, static_cast<Opcode>(0x7f));  // undefined opcode

std::uint32_t cmdq_cons_rd(DriverTest& t) { return QueueCons::of(t.reg(regs::CMDQ_CONS)).get(QueueCons::RD); }

// IHI 0070 7.1: the queue stops on a CERROR_ILL command; issue() reports it with its index and leaves it active.
TEST_F(DriverTest, IssueReportsTheCommandErrorAndItsIndex) {
  start();
  const std::uint32_t start_at = cmdq_cons_rd(*this);
  auto r = driver->issue(std::array{cmd_tlbi_nsnh_all(), kIllegal, cmd_tlbi_nsnh_all()});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().err, EIO);
  EXPECT_NE(r.error().message.find("CERROR_ILL"), std::string::npos) << r.error();
  auto e = driver->command_error();
  ASSERT_TRUE(e && *e);
  EXPECT_EQ((*e)->cerror, Cerror::ill);
  EXPECT_EQ((*e)->index, start_at + 1);
  ASSERT_TRUE((*e)->command);
  EXPECT_EQ((*e)->command->dw[0], kIllegal.dw[0]);
  EXPECT_NE(r.error().message.find(fmt::format("index {:#x}", start_at + 1)), std::string::npos) << r.error();
}

// arm_smmu_cmdq_skip_err: the failed command becomes a CMD_SYNC, GERRORN acknowledges, the queue runs on.
TEST_F(DriverTest, AcknowledgingSkipsTheFailedCommand) {
  start();
  ASSERT_FALSE(driver->issue(std::array{kIllegal, cmd_tlbi_nsnh_all()}));
  ASSERT_TRUE(driver->acknowledge_command_error());
  EXPECT_EQ(reg(regs::GERROR), reg(regs::GERRORN));
  EXPECT_EQ(cmdq_cons_rd(*this), QueueProd::of(reg(regs::CMDQ_PROD)).get(QueueProd::WR));
  EXPECT_FALSE(driver->command_error().value());
  EXPECT_TRUE(driver->issue(cmd_tlbi_nsnh_all()));
}

// With Options::skip_command_errors the driver skips on its own while waiting, as Linux does, and counts.
TEST_F(DriverTest, SkipPolicySkipsAndCounts) {
  start(model::ModelConfig::reference(), Options{.skip_command_errors = true});
  const std::uint64_t syncs = smmu->counters().syncs;
  EXPECT_TRUE(driver->issue(std::array{kIllegal, cmd_tlbi_nsnh_all(), kIllegal}));
  EXPECT_EQ(driver->command_errors_skipped(), 2U);
  EXPECT_EQ(smmu->counters().syncs, syncs + 3);  // two replacements and the issue's own
  EXPECT_EQ(reg(regs::GERROR), reg(regs::GERRORN));
}

// A stage-1-only SMMU rejects stage-2 invalidation (IHI 0070 4.4.4: CERROR_ILL when IDR0.S2P == 0).
TEST_F(DriverTest, StageTwoTlbiOnStageOneOnlySmmuIsIllegal) {
  start(stage1_only());
  auto r = driver->issue(cmd_tlbi_s12_vmall(1));
  ASSERT_FALSE(r);
  EXPECT_EQ(driver->command_error().value()->cerror, Cerror::ill);
}

// IHI 0070 7.5: a global error stays active until GERRORN matches GERROR. An MSI write to no memory is
// MSI_CMDQ_ABT_ERR; the queue itself goes on.
TEST_F(DriverTest, GlobalErrorsAreReadAndAcknowledged) {
  start();
  ASSERT_TRUE(driver->issue(cmd_sync(SyncCs::irq).set(Command::MSIAddr, 0x7000'0000)));
  auto active = driver->active_global_errors();
  ASSERT_TRUE(active);
  EXPECT_TRUE(active->get(Gerror::MSI_CMDQ_ABT_ERR));
  EXPECT_FALSE(active->get(Gerror::CMDQ_ERR));
  ASSERT_TRUE(driver->acknowledge_global_errors(*active));
  EXPECT_EQ(driver->active_global_errors().value().value(), 0U);
}

// IHI 0070 7.4: records beyond a full queue are lost and EVENTQ_PROD.OVFLG toggles; the driver reports the
// overflow and acknowledges it by copying OVFLG into EVENTQ_CONS.OVACKFLG, as arm_smmu_evtq_thread does.
TEST_F(DriverTest, EventQueueOverflowIsReportedAndAcknowledged) {
  start(model::ModelConfig::reference(), Options{.eventq_log2 = 2});  // 4 records
  // SIDs beyond the 8-bit table: C_BAD_STREAMID, recorded with CR2.RECINVSID.
  for (std::uint32_t i = 0; i < 6; ++i) EXPECT_FALSE(testkit::DmaMaster(*smmu, 0x100 + i).write64(0x1000, 1));
  auto first = driver->drain_events();
  ASSERT_TRUE(first) << first.error();
  EXPECT_TRUE(first->overflow);
  ASSERT_EQ(first->records.size(), 4U);
  EXPECT_EQ(first->records[0].get(Event::ID), EventId::C_BAD_STREAMID);
  EXPECT_EQ(QueueCons::of(reg(regs::EVENTQ_CONS)).get(QueueCons::OVACKFLG),
            QueueProd::of(reg(regs::EVENTQ_PROD)).get(QueueProd::OVFLG));
  // Acknowledged: the next records arrive and no overflow is reported.
  EXPECT_FALSE(testkit::DmaMaster(*smmu, 0x200).write64(0x1000, 1));
  auto second = driver->drain_events();
  ASSERT_TRUE(second);
  EXPECT_FALSE(second->overflow);
  EXPECT_EQ(second->records.size(), 1U);
}

TEST_F(DriverTest, NoOverflowWithoutLostRecords) {
  start(model::ModelConfig::reference(), Options{.eventq_log2 = 2});
  for (std::uint32_t i = 0; i < 4; ++i) EXPECT_FALSE(testkit::DmaMaster(*smmu, 0x100 + i).write64(0x1000, 1));
  auto got = driver->drain_events();
  ASSERT_TRUE(got);
  EXPECT_FALSE(got->overflow);
  EXPECT_EQ(got->records.size(), 4U);
}

// Abort and bypass STEs as Linux writes them: bypass passes the address through, abort terminates.
TEST_F(DriverTest, AbortAndBypassStes) {
  start();
  ASSERT_TRUE(driver->install_bypass(3));
  ASSERT_TRUE(testkit::DmaMaster(*smmu, 3).write64(kData + 8, 0xfeed));
  EXPECT_EQ(mem.read64(kData + 8).value(), 0xfeedU);
  ASSERT_TRUE(driver->install_abort(3));
  EXPECT_FALSE(testkit::DmaMaster(*smmu, 3).write64(kData + 8, 1));
  EXPECT_EQ(mem.read64(kData + 8).value(), 0xfeedU);
}

}  // namespace
}  // namespace vsmmu::smmu::driver::test

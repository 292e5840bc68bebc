// The command queue and its error behaviour (IHI 0070 3.5, 4.1, 7.1, 7.5): an illegal command or a fetch
// abort stops consumption with CONS on the command, CMDQ_CONS.ERR set and GERROR.CMDQ_ERR toggled, until
// software acknowledges through GERRORN.
#include "tests/unit/smmu/model/model_fixture.hpp"

namespace vsmmu::smmu::model::test {
namespace {

class CommandQueueTest : public ModelTest {
 protected:
  void SetUp() override {
    start(config());
    smmu->set_irq_handler(Irq::gerror, [this] { ++gerror_irqs; });
    smmu->set_irq_handler(Irq::cmd_sync, [this] { ++sync_irqs; });
  }
  virtual ModelConfig config() const { return ModelConfig::reference(); }

  std::uint32_t reg(const RegisterInfo& r) { return smmu->read32(r.offset).value(); }
  std::uint32_t cons_index() { return QueueCons::of(reg(regs::CMDQ_CONS)).get(QueueCons::RD); }
  std::uint32_t prod_index() { return QueueProd::of(reg(regs::CMDQ_PROD)).get(QueueProd::WR); }
  // Pushes [valid, bad, sync] and checks the queue stopped on `bad` with `err`.
  void expect_stops_on(const Command& bad, Cerror err) {
    const std::uint32_t start = prod_index();
    const std::uint64_t syncs = smmu->counters().syncs;
    const std::array cmds{cmd_tlbi_nsnh_all(), bad, cmd_sync()};
    ASSERT_TRUE(driver->push(cmds));
    EXPECT_EQ(cons_index(), start + 1) << fmt::format("{:#018x} {:#018x}", bad.dw[0], bad.dw[1]);
    auto e = driver->command_error();
    ASSERT_TRUE(e && *e);
    EXPECT_EQ((*e)->cerror, err);
    EXPECT_EQ(smmu->counters().syncs, syncs);  // the CMD_SYNC after it did not run
  }

  unsigned gerror_irqs = 0;
  unsigned sync_irqs = 0;
};

TEST_F(CommandQueueTest, ConsumesEverythingUpToProd) {
  const std::uint64_t before = smmu->counters().commands;
  std::vector<Command> cmds(10, cmd_tlbi_nsnh_all());
  ASSERT_TRUE(driver->issue(cmds));
  EXPECT_EQ(smmu->counters().commands, before + 11);  // and the CMD_SYNC
  EXPECT_EQ(cons_index(), prod_index());
}

// The queue wraps: indexes run past the end with the wrap bit toggling (IHI 0070 3.5.1).
TEST_F(CommandQueueTest, WrapsAroundTheQueue) {
  const std::uint32_t start = prod_index();
  std::vector<Command> cmds(100, cmd_tlbi_nsnh_all());
  for (int i = 0; i < 7; ++i) ASSERT_TRUE(driver->issue(cmds)) << i;  // 707 commands in a 256-entry queue
  const QueueIndex q{driver->cmdq_log2()};
  EXPECT_EQ(prod_index(), q.advance(start, 707));
  EXPECT_EQ(q.wrap(prod_index()), ((start + 707) / 256) % 2 == 1);
  EXPECT_EQ(cons_index(), prod_index());
}

// IHI 0070 7.1: an undefined opcode is CERROR_ILL; GERROR.CMDQ_ERR toggles and the interrupt fires.
TEST_F(CommandQueueTest, UndefinedOpcodeStopsTheQueueUntilAcknowledged) {
  expect_stops_on(Command{}.set(Command::Opcode, static_cast<Opcode>(0x7f)), Cerror::ill);
  EXPECT_EQ(gerror_irqs, 1U);
  EXPECT_NE(reg(regs::GERROR), reg(regs::GERRORN));
  // While the error is active, new commands wait.
  const std::uint32_t stuck = cons_index();
  ASSERT_TRUE(driver->push(std::array{cmd_sync()}));
  EXPECT_EQ(cons_index(), stuck);
  // Linux replaces the failed command with CMD_SYNC and acknowledges; the queue then runs to PROD.
  ASSERT_TRUE(driver->acknowledge_command_error());
  EXPECT_EQ(reg(regs::GERROR), reg(regs::GERRORN));
  EXPECT_EQ(cons_index(), prod_index());
  EXPECT_FALSE(driver->command_error().value());
  EXPECT_EQ(smmu->counters().command_errors, 1U);
}

// After acknowledging without fixing the command, the SMMU fails on it again: CONS pointed at it.
TEST_F(CommandQueueTest, AcknowledgingWithoutFixingFailsAgain) {
  expect_stops_on(Command{}.set(Command::Opcode, static_cast<Opcode>(0x09)), Cerror::ill);
  ASSERT_TRUE(driver->acknowledge_command_error(false));
  auto e = driver->command_error();
  ASSERT_TRUE(e && *e);
  EXPECT_EQ((*e)->cerror, Cerror::ill);
  EXPECT_EQ(smmu->counters().command_errors, 2U);
  EXPECT_EQ(gerror_irqs, 2U);
}

// Commands the SMMU does not implement, or with bits set that the opcode does not define, are CERROR_ILL
// (IHI 0070 4.1.1, 4.1.2; each command's RES0 fields).
struct IllegalCase {
  const char* name;
  Command cmd;
};
class IllegalCommand : public CommandQueueTest, public ::testing::WithParamInterface<IllegalCase> {};

TEST_P(IllegalCommand, IsCerrorIll) { expect_stops_on(GetParam().cmd, Cerror::ill); }

INSTANTIATE_TEST_SUITE_P(
    Cases, IllegalCommand,
    ::testing::Values(
        IllegalCase{"Res0InDword1", cmd_cfgi_ste(1).set(Command::Range, 2)},  // Range is not CFGI_STE's
        IllegalCase{"Res0InDword0", cmd_tlbi_nsnh_all().set(Command::VMID, 1)},
        IllegalCase{"SecureStreamOnNonSecureQueue", cmd_cfgi_ste(1).set(Command::SSec, true)},
        IllegalCase{"AtcInvWithoutAts", Command{}.set(Command::Opcode, Opcode::ATC_INV)},
        IllegalCase{"PriRespWithoutPri", Command{}.set(Command::Opcode, Opcode::PRI_RESP)},
        IllegalCase{"ResumeWithoutStalls", Command{}.set(Command::Opcode, Opcode::RESUME)},
        IllegalCase{"El2TlbiWithoutHyp", Command{}.set(Command::Opcode, Opcode::TLBI_EL2_ALL)},
        IllegalCase{"El3Tlbi", Command{}.set(Command::Opcode, Opcode::TLBI_EL3_ALL)},
        IllegalCase{"SecureTlbi", Command{}.set(Command::Opcode, Opcode::TLBI_SNH_ALL)},
        IllegalCase{"VmsWithoutMpam", Command{}.set(Command::Opcode, Opcode::CFGI_VMS_PIDM)},
        IllegalCase{"DptWithoutDpt", Command{}.set(Command::Opcode, Opcode::DPTI_ALL)},
        IllegalCase{"SyncReservedCs", cmd_sync(SyncCs::reserved)},
        IllegalCase{"ImplementationDefined", Command{}.set(Command::Opcode, static_cast<Opcode>(0x80))}),
    [](const auto& p) { return std::string(p.param.name); });

class StageOneOnlySmmu : public CommandQueueTest {
  ModelConfig config() const override {
    ModelConfig c = ModelConfig::reference();
    c.idr0.set(Idr0::S2P, false);
    return c;
  }
};

// Stage-2 invalidations on an SMMU without stage 2 are CERROR_ILL (IHI 0070 4.4.3).
TEST_F(StageOneOnlySmmu, StageTwoTlbiIsIllegal) {
  expect_stops_on(cmd_tlbi_s12_vmall(1), Cerror::ill);
  ASSERT_TRUE(driver->acknowledge_command_error());
  expect_stops_on(cmd_tlbi_s2_ipa(1, 0x1000), Cerror::ill);
}

class AtsSmmu : public CommandQueueTest {
  ModelConfig config() const override {
    ModelConfig c = ModelConfig::reference();
    c.idr0.set(Idr0::ATS, true);
    return c;
  }
};

// With IDR0.ATS, ATC_INV is a command the SMMU executes (there is no ATC behind the model's devices to
// invalidate) (IHI 0070 4.5.1).
TEST_F(AtsSmmu, AtcInvIsAccepted) {
  const auto atc_inv = Command{}
                           .set(Command::Opcode, Opcode::ATC_INV)
                           .set(Command::SID, 3)
                           .set(Command::Address, 0x10000)
                           .set(Command::Size, 4);
  ASSERT_TRUE(driver->issue(atc_inv));
  EXPECT_FALSE(driver->command_error().value());
}

// A command the SMMU cannot fetch is CERROR_ABT (IHI 0070 7.1).
TEST_F(CommandQueueTest, FetchAbortIsCerrorAbt) {
  ASSERT_TRUE(smmu->write32(regs::CR0.offset, Cr0::of(reg(regs::CR0)).set(Cr0::CMDQEN, false).value()));
  ASSERT_TRUE(smmu->write64(regs::CMDQ_BASE.offset,
                            QueueBase{}.set(QueueBase::ADDR, 0x7000'0000).set(QueueBase::LOG2SIZE, 4).value()));
  ASSERT_TRUE(smmu->write32(regs::CMDQ_PROD.offset, 0));
  ASSERT_TRUE(smmu->write32(regs::CMDQ_CONS.offset, 0));
  ASSERT_TRUE(smmu->write32(regs::CR0.offset, Cr0::of(reg(regs::CR0)).set(Cr0::CMDQEN, true).value()));
  ASSERT_TRUE(smmu->write32(regs::CMDQ_PROD.offset, 1));
  auto e = driver->command_error();
  ASSERT_TRUE(e && *e);
  EXPECT_EQ((*e)->cerror, Cerror::abt);
  EXPECT_EQ(cons_index(), 0U);
  EXPECT_EQ(gerror_irqs, 1U);
}

// PROD bits above the wrap bit are outside the queue and ignored (IHI 0070 6.3.27): a hostile PROD far
// beyond the queue's size consumes exactly the commands below it, and nothing is read out of bounds.
TEST_F(CommandQueueTest, ProdBeyondTheQueueSizeIsReadModuloItsSize) {
  const std::uint32_t p = prod_index();
  const QueueIndex q{driver->cmdq_log2()};
  for (std::uint32_t i = 0; i < 3; ++i)
    ASSERT_TRUE(mem.write_record(driver->cmdq_base() + q.index(p + i) * Command::bytes, cmd_sync()));
  const std::uint64_t syncs = smmu->counters().syncs;
  ASSERT_TRUE(smmu->write32(regs::CMDQ_PROD.offset, q.advance(p, 3) | 0xf'f000));
  EXPECT_EQ(smmu->counters().syncs, syncs + 3);
  EXPECT_EQ(cons_index(), q.advance(p, 3));
  EXPECT_FALSE(driver->command_error().value());
}

// Commands wait while CMDQEN == 0 and run when it is set (IHI 0070 6.3.9).
TEST_F(CommandQueueTest, DisabledQueueConsumesNothing) {
  ASSERT_TRUE(smmu->write32(regs::CR0.offset, Cr0::of(reg(regs::CR0)).set(Cr0::CMDQEN, false).value()));
  const std::uint32_t c = cons_index();
  ASSERT_TRUE(driver->push(std::array{cmd_sync(), cmd_sync()}));
  EXPECT_EQ(cons_index(), c);
  ASSERT_TRUE(smmu->write32(regs::CR0.offset, Cr0::of(reg(regs::CR0)).set(Cr0::CMDQEN, true).value()));
  EXPECT_EQ(cons_index(), c + 2);
}

// CMD_SYNC with CS=IRQ: an MSI of MSIData to MSIAddr when given (Linux polls that word), else the wired
// interrupt (IHI 0070 4.7.3).
TEST_F(CommandQueueTest, SyncSignalsByMsiOrWiredInterrupt) {
  const std::uint64_t msis = smmu->counters().msis;  // the driver's own CMD_SYNCs (MSIPOLL) so far
  ASSERT_TRUE(driver->push(std::array{cmd_sync(SyncCs::irq)}));
  EXPECT_EQ(sync_irqs, 1U);
  const std::uint64_t word = kHostPool + kHostPoolSize - 8;
  ASSERT_TRUE(
      driver->push(std::array{cmd_sync(SyncCs::irq).set(Command::MSIAddr, word).set(Command::MSIData, 0xfeed)}));
  EXPECT_EQ(mem.read32(word).value(), 0xfeedU);
  EXPECT_EQ(sync_irqs, 1U);
  EXPECT_EQ(smmu->counters().msis, msis + 1);
  // An MSI to nowhere is a global error of its own (IHI 0070 7.5 MSI_CMDQ_ABT_ERR).
  ASSERT_TRUE(driver->push(std::array{cmd_sync(SyncCs::irq).set(Command::MSIAddr, 0x7000'0000)}));
  EXPECT_TRUE(
      Gerror::active(Gerror::of(reg(regs::GERROR)), Gerror::of(reg(regs::GERRORN))).get(Gerror::MSI_CMDQ_ABT_ERR));
  EXPECT_FALSE(driver->command_error().value());  // the queue itself goes on
  EXPECT_EQ(smmu->counters().msis_aborted, 1U);    // the software SMMU's bus has nothing but its memory
}

}  // namespace
}  // namespace vsmmu::smmu::model::test

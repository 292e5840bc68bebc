// Probe and reset as Linux's arm_smmu_device_hw_probe and arm_smmu_device_reset do them.
#include <algorithm>

#include "tests/unit/smmu/driver/driver_fixture.hpp"

namespace vsmmu::smmu::driver::test {
namespace {

StrtabBaseCfg strtab_cfg(Spy& spy) { return StrtabBaseCfg::of(spy.read32(regs::STRTAB_BASE_CFG.offset).value()); }

// IDR0.ST_LEVEL = 2-level and more StreamID bits than a level-2 table resolves: Linux's 2-level table, SPLIT 8,
// LOG2SIZE the StreamID bits (IHI 0070 6.3.25).
TEST_F(DriverTest, PicksTwoLevelStreamTableWhenStLevelSaysSo) {
  start(model::ModelConfig::reference(), Options{.sid_bits = 16});
  const auto cfg = strtab_cfg(*spy);
  EXPECT_EQ(cfg.get(StrtabBaseCfg::FMT), StreamTableFormat::two_level);
  EXPECT_EQ(cfg.get(StrtabBaseCfg::SPLIT), SmmuDriver::kStrtabSplit);
  EXPECT_EQ(cfg.get(StrtabBaseCfg::LOG2SIZE), 16U);
  // A level-2 table is allocated on the first STE it holds.
  auto at = driver->write_ste(0x1234, abort_ste());
  ASSERT_TRUE(at) << at.error();
  auto l1 = mem.read_record<StreamTableL1>(driver->strtab_base() + 0x12 * StreamTableL1::bytes);
  ASSERT_TRUE(l1);
  EXPECT_EQ(l1->get(StreamTableL1::Span), SmmuDriver::kStrtabSplit + 1);
  EXPECT_EQ(*at, l1->get(StreamTableL1::L2Ptr) + 0x34 * Ste::bytes);
}

TEST_F(DriverTest, PicksLinearStreamTableWithoutTwoLevelSupport) {
  auto config = model::ModelConfig::reference();
  config.idr0.set(Idr0::ST_LEVEL, StLevel::linear);
  start(config, Options{.sid_bits = 12});
  EXPECT_EQ(strtab_cfg(*spy).get(StrtabBaseCfg::FMT), StreamTableFormat::linear);
  EXPECT_EQ(strtab_cfg(*spy).get(StrtabBaseCfg::LOG2SIZE), 12U);
  EXPECT_EQ(driver->ste_address(0x123).value(), driver->strtab_base() + 0x123 * Ste::bytes);
}

// Linux keeps the table linear when the StreamIDs fit one level-2 table, and on request.
TEST_F(DriverTest, PicksLinearForFewStreamIdsOrWhenForced) {
  start(model::ModelConfig::reference(), Options{.sid_bits = 8});
  EXPECT_EQ(driver->strtab_format(), StreamTableFormat::linear);
  auto forced = try_start(Options{.sid_bits = 16, .force_linear = true});
  ASSERT_TRUE(forced) << forced.error();
  EXPECT_EQ(forced->strtab_format(), StreamTableFormat::linear);
  EXPECT_EQ(strtab_cfg(*spy).get(StrtabBaseCfg::FMT), StreamTableFormat::linear);
}

// IDR1.SIDSIZE, CMDQS and EVENTQS cap what the driver asks for (IHI 0070 6.3.2).
TEST_F(DriverTest, SizesAreCappedByIdr1) {
  auto config = model::ModelConfig::reference();
  config.idr1.set(Idr1::SIDSIZE, 6).set(Idr1::CMDQS, 3).set(Idr1::EVENTQS, 2);
  start(config, Options{.sid_bits = 16, .cmdq_log2 = 8, .eventq_log2 = 8});
  EXPECT_EQ(driver->sid_bits(), 6U);
  EXPECT_EQ(driver->cmdq_log2(), 3U);
  EXPECT_EQ(driver->eventq_log2(), 2U);
  EXPECT_EQ(QueueBase::of(spy->read64(regs::CMDQ_BASE.offset).value()).get(QueueBase::LOG2SIZE), 3U);
  // An 8-entry queue still takes any number of commands: the driver waits for room.
  std::vector<Command> many(20, cmd_tlbi_nsnh_all());
  EXPECT_TRUE(driver->issue(many));
}

// arm_smmu_device_reset: CFGI_ALL and TLB invalidation before SMMUEN. With stage 2, TLBI_NSNH_ALL.
TEST_F(DriverTest, ResetInvalidatesConfigurationAndTlbs) {
  start();
  EXPECT_EQ(spy->opcodes(), (std::vector{Opcode::CFGI_STE_RANGE, Opcode::TLBI_NSNH_ALL, Opcode::CMD_SYNC}));
  EXPECT_EQ(spy->commands[0].get(Command::Range), Command::kCfgiAllRange);
}

// A stage-1-only SMMU gets no command naming stage 2 or EL2 state (a vSMMU answers those with CERROR_ILL,
// IHI 0070 4.4): TLBI_NH_ALL instead of TLBI_NSNH_ALL.
TEST_F(DriverTest, StageOneOnlySmmuGetsNoStageTwoTlbiAtReset) {
  start(stage1_only());
  EXPECT_EQ(spy->opcodes(), (std::vector{Opcode::CFGI_STE_RANGE, Opcode::TLBI_NH_ALL, Opcode::CMD_SYNC}));
  EXPECT_EQ(smmu->counters().command_errors, 0U);
}

// The register programming order of arm_smmu_device_reset, and the values Linux writes (IHI 0070 6.3.9-6.3.18).
TEST_F(DriverTest, ResetProgramsRegistersAsLinux) {
  start();
  const auto w = spy->written_offsets();
  const auto first = [&](const RegisterInfo& r) { return std::find(w.begin(), w.end(), r.offset) - w.begin(); };
  EXPECT_LT(first(regs::CR0), first(regs::CR1));  // disabled before anything else
  EXPECT_LT(first(regs::CR1), first(regs::STRTAB_BASE));
  EXPECT_LT(first(regs::CMDQ_BASE), first(regs::EVENTQ_BASE));
  EXPECT_LT(first(regs::EVENTQ_BASE), first(regs::IRQ_CTRL));
  const Cr1 cr1 = Cr1::of(reg(regs::CR1));
  EXPECT_EQ(cr1.get(Cr1::TABLE_SH), Shareability::inner);
  EXPECT_EQ(cr1.get(Cr1::TABLE_OC), Cr1Cache::wb);
  EXPECT_EQ(cr1.get(Cr1::QUEUE_IC), Cr1Cache::wb);
  const Cr2 cr2 = Cr2::of(reg(regs::CR2));
  EXPECT_TRUE(cr2.get(Cr2::PTM));
  EXPECT_TRUE(cr2.get(Cr2::RECINVSID));
  const IrqCtrl irq = IrqCtrl::of(reg(regs::IRQ_CTRLACK));
  EXPECT_TRUE(irq.get(IrqCtrl::GERROR_IRQEN));
  EXPECT_TRUE(irq.get(IrqCtrl::EVENTQ_IRQEN));
  const Cr0 cr0 = Cr0::of(reg(regs::CR0ACK));
  EXPECT_TRUE(cr0.get(Cr0::SMMUEN) && cr0.get(Cr0::CMDQEN) && cr0.get(Cr0::EVENTQEN));
  // The last write enables translation.
  EXPECT_EQ(spy->writes.back(), (std::pair<std::uint64_t, std::uint64_t>{regs::CR0.offset, cr0.value()}));
}

// An SMMU found enabled is first made to abort incoming traffic (GBPA.ABORT with the Update handshake) and
// disabled, as arm_smmu_device_reset does before reprogramming it.
TEST_F(DriverTest, EnabledSmmuIsDisabledFirstWithGbpaAbort) {
  start();
  EXPECT_FALSE(Gbpa::of(reg(regs::GBPA)).get(Gbpa::ABORT));
  spy->writes.clear();
  auto again = try_start();
  ASSERT_TRUE(again) << again.error();
  EXPECT_TRUE(Gbpa::of(reg(regs::GBPA)).get(Gbpa::ABORT));
  ASSERT_GE(spy->writes.size(), 2U);
  EXPECT_EQ(spy->writes[0].first, regs::GBPA.offset);
  EXPECT_TRUE(Gbpa::of(static_cast<std::uint32_t>(spy->writes[0].second)).get(Gbpa::Update));
  EXPECT_EQ(spy->writes[1], (std::pair<std::uint64_t, std::uint64_t>{regs::CR0.offset, 0}));
}

// Linux's disable_bypass: GBPA.ABORT set before SMMUEN.
TEST_F(DriverTest, GbpaAbortOnRequest) {
  start(model::ModelConfig::reference(), Options{.gbpa_abort = true});
  EXPECT_TRUE(Gbpa::of(reg(regs::GBPA)).get(Gbpa::ABORT));
  EXPECT_FALSE(Gbpa::of(reg(regs::GBPA)).get(Gbpa::Update));
}

// What arm_smmu_device_hw_probe refuses, one reason each (ENXIO).
struct Refusal {
  const char* name;
  RegisterInfo reg;
  std::uint32_t (*value)(const model::ModelConfig&);
  const char* says;
  bool need_stage1 = false;
};
class ProbeRefuses : public DriverTest, public ::testing::WithParamInterface<Refusal> {};

TEST_P(ProbeRefuses, WithTheReason) {
  create(model::ModelConfig::reference());
  const auto& p = GetParam();
  spy->idr_overrides[p.reg.offset] = p.value(smmu->config());
  auto d = try_start(Options{.need_stage1 = p.need_stage1});
  ASSERT_FALSE(d);
  EXPECT_EQ(d.error().err, ENXIO);
  EXPECT_NE(d.error().message.find(p.says), std::string::npos) << d.error();
  const auto written = spy->written_offsets();
  EXPECT_TRUE(std::find(written.begin(), written.end(), regs::CR0.offset) == written.end());  // nothing programmed
}

INSTANTIATE_TEST_SUITE_P(
    Cases, ProbeRefuses,
    ::testing::Values(
        Refusal{"NoStage1WhenWanted", regs::IDR0, [](const model::ModelConfig& c) { return Idr0{c.idr0}.set(Idr0::S1P, false).value(); },
                "S1P", true},
        Refusal{"NoStageAtAll", regs::IDR0,
                [](const model::ModelConfig& c) { return Idr0{c.idr0}.set(Idr0::S1P, false).set(Idr0::S2P, false).value(); },
                "no translation stage"},
        Refusal{"Aarch32TablesOnly", regs::IDR0,
                [](const model::ModelConfig& c) { return Idr0{c.idr0}.set(Idr0::TTF, Ttf::aarch32).value(); }, "TTF"},
        Refusal{"BigEndianOnly", regs::IDR0,
                [](const model::ModelConfig& c) { return Idr0{c.idr0}.set(Idr0::TTENDIAN, TtEndian::big).value(); },
                "big-endian"},
        Refusal{"NoGranule", regs::IDR5,
                [](const model::ModelConfig& c) {
                  return Idr5{c.idr5}.set(Idr5::GRAN4K, false).set(Idr5::GRAN16K, false).set(Idr5::GRAN64K, false).value();
                },
                "granule"},
        Refusal{"TablesPreset", regs::IDR1,
                [](const model::ModelConfig& c) { return Idr1{c.idr1}.set(Idr1::TABLES_PRESET, true).value(); },
                "preset"}),
    [](const ::testing::TestParamInfo<Refusal>& i) { return std::string(i.param.name); });

}  // namespace
}  // namespace vsmmu::smmu::driver::test

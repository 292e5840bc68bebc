// The register file as software sees it (IHI 0070 6.2, 6.3): ID registers from the hardware profile,
// CR0/CR0ACK and IRQ_CTRL/IRQ_CTRLACK, the GBPA Update handshake, 32/64-bit access rules, registers that
// are read-only while their unit is enabled, and the profiles the model refuses to be.
#include <atomic>
#include <thread>

#include "tests/unit/smmu/model/model_fixture.hpp"

namespace vsmmu::smmu::model::test {
namespace {

class RegistersTest : public ::testing::Test {
 protected:
  RegistersTest() {
    EXPECT_TRUE(mem.add_ram(kHostPool, kHostPoolSize));
    smmu = std::move(SmmuModel::create(mem, ModelConfig::reference()).value());
  }
  std::uint32_t r32(const RegisterInfo& r) { return smmu->read32(r.offset).value(); }

  RegionMemory mem;
  std::unique_ptr<SmmuModel> smmu;
};

TEST_F(RegistersTest, IdRegistersAreTheProfilesAndReadOnly) {
  const ModelConfig c = ModelConfig::reference();
  EXPECT_EQ(r32(regs::IDR0), c.idr0.value());
  EXPECT_EQ(r32(regs::IDR1), c.idr1.value());
  EXPECT_EQ(r32(regs::IDR3), c.idr3.value());
  EXPECT_EQ(r32(regs::IDR5), c.idr5.value());
  EXPECT_EQ(r32(regs::AIDR), c.aidr.value());
  ASSERT_TRUE(smmu->write32(regs::IDR0.offset, 0));
  EXPECT_EQ(r32(regs::IDR0), c.idr0.value());
}

// IHI 0070 6.3.9/6.3.10: CR0ACK follows CR0 once the change has taken effect (here before the write
// returns); RES0 bits are not kept.
TEST_F(RegistersTest, Cr0AckFollowsCr0) {
  EXPECT_EQ(r32(regs::CR0ACK), 0U);
  const auto cr0 = Cr0{}.set(Cr0::EVENTQEN, true).set(Cr0::CMDQEN, true);
  ASSERT_TRUE(smmu->write32(regs::CR0.offset, cr0.value() | 0x8000'0000U));
  EXPECT_EQ(r32(regs::CR0), cr0.value());
  EXPECT_EQ(r32(regs::CR0ACK), cr0.value());
}

TEST_F(RegistersTest, IrqCtrlAckFollowsIrqCtrl) {
  const auto v = IrqCtrl{}.set(IrqCtrl::EVENTQ_IRQEN, true).set(IrqCtrl::GERROR_IRQEN, true).value();
  ASSERT_TRUE(smmu->write32(regs::IRQ_CTRL.offset, v));
  EXPECT_EQ(r32(regs::IRQ_CTRLACK), v);
}

// IHI 0070 6.3.14: GBPA changes only through a write with Update = 1, which reads back 0 once complete.
TEST_F(RegistersTest, GbpaUpdateHandshake) {
  const std::uint32_t reset = r32(regs::GBPA);
  EXPECT_FALSE(Gbpa::of(reset).get(Gbpa::ABORT));
  ASSERT_TRUE(smmu->write32(regs::GBPA.offset, Gbpa::of(reset).set(Gbpa::ABORT, true).value()));
  EXPECT_EQ(r32(regs::GBPA), reset);  // no Update: ignored
  ASSERT_TRUE(smmu->write32(regs::GBPA.offset, Gbpa::of(reset).set(Gbpa::ABORT, true).set(Gbpa::Update, true).value()));
  EXPECT_EQ(r32(regs::GBPA), Gbpa::of(reset).set(Gbpa::ABORT, true).value());
}

// A 64-bit register is accessible whole or as two 32-bit halves; an 8-byte access to two 32-bit registers
// acts on both (IHI 0070 6.2: 64-bit registers, 32-bit access granularity).
TEST_F(RegistersTest, SixtyFourBitRegistersAndHalves) {
  const std::uint64_t base = QueueBase{}.set(QueueBase::ADDR, 0x12'3456'7800ULL).set(QueueBase::LOG2SIZE, 5).value();
  ASSERT_TRUE(smmu->write32(regs::CMDQ_BASE.offset, static_cast<std::uint32_t>(base)));
  ASSERT_TRUE(smmu->write32(regs::CMDQ_BASE.offset + 4, static_cast<std::uint32_t>(base >> 32)));
  EXPECT_EQ(smmu->read64(regs::CMDQ_BASE.offset).value(), base);
  EXPECT_EQ(smmu->read32(regs::CMDQ_BASE.offset + 4).value(), base >> 32);
  // CMDQ_PROD and CMDQ_CONS as one 8-byte access.
  ASSERT_TRUE(smmu->write64(regs::CMDQ_PROD.offset, (std::uint64_t{3} << 32) | 5));
  EXPECT_EQ(r32(regs::CMDQ_PROD), 5U);
  EXPECT_EQ(r32(regs::CMDQ_CONS), 3U);
  EXPECT_EQ(smmu->read64(regs::CMDQ_PROD.offset).value(), (std::uint64_t{3} << 32) | 5);
}

TEST_F(RegistersTest, HolesAreRazWiAndBadAccessesAreRefused) {
  ASSERT_TRUE(smmu->write32(0x30, 0xffff'ffff));
  EXPECT_EQ(r32(RegisterInfo{"hole", 0x30, 32, RegisterPage::page0}), 0U);
  EXPECT_EQ(smmu->read32(kPage1Offset + 0x4).value(), 0U);
  EXPECT_EQ(smmu->read32(0x2).error().err, EINVAL);              // misaligned
  EXPECT_EQ(smmu->mmio_read(0x20, 2).error().err, EINVAL);       // 16-bit
  EXPECT_EQ(smmu->read64(0x84).error().err, EINVAL);             // 8-byte access not 8-aligned
  EXPECT_EQ(smmu->read32(kRegisterSpace).error().err, EINVAL);   // beyond page 1
  EXPECT_EQ(smmu->read64(~0ULL - 7).error().err, EINVAL);        // an offset that would wrap
}

// The stream table base is read-only while SMMUEN == 1, a queue base while its queue is enabled
// (IHI 0070 6.3.24, 6.3.26).
TEST_F(RegistersTest, BasesAreReadOnlyWhileEnabled) {
  ASSERT_TRUE(smmu->write64(regs::STRTAB_BASE.offset, 0x1000));
  ASSERT_TRUE(smmu->write32(regs::CR0.offset, Cr0{}.set(Cr0::SMMUEN, true).set(Cr0::CMDQEN, true).value()));
  ASSERT_TRUE(smmu->write64(regs::STRTAB_BASE.offset, 0x2000));
  ASSERT_TRUE(smmu->write64(regs::CMDQ_BASE.offset, 0x2000));
  ASSERT_TRUE(smmu->write32(regs::CMDQ_CONS.offset, 7));
  EXPECT_EQ(smmu->read64(regs::STRTAB_BASE.offset).value(), 0x1000U);
  EXPECT_EQ(smmu->read64(regs::CMDQ_BASE.offset).value(), 0U);
  EXPECT_EQ(r32(regs::CMDQ_CONS), 0U);
}

// The model refuses ID registers it cannot honour, with the reason (errors as values).
TEST(ModelConfigTest, UnsupportedProfilesAreRefused) {
  RegionMemory mem;
  const auto refused = [&](void (*mutate)(ModelConfig&)) {
    ModelConfig c = ModelConfig::reference();
    mutate(c);
    auto m = SmmuModel::create(mem, c);
    return !m && m.error().err == EINVAL;
  };
  EXPECT_FALSE(refused([](ModelConfig&) {}));
  EXPECT_TRUE(refused([](ModelConfig& c) { c.idr0.set(Idr0::S1P, false).set(Idr0::S2P, false); }));
  EXPECT_TRUE(refused([](ModelConfig& c) { c.idr0.set(Idr0::TTF, Ttf::aarch32_aarch64); }));
  EXPECT_TRUE(refused([](ModelConfig& c) { c.idr0.set(Idr0::TTENDIAN, TtEndian::mixed); }));
  EXPECT_TRUE(refused([](ModelConfig& c) { c.idr1.set(Idr1::SIDSIZE, 33); }));
  EXPECT_TRUE(refused([](ModelConfig& c) { c.idr1.set(Idr1::CMDQS, 20); }));
  EXPECT_TRUE(refused([](ModelConfig& c) { c.idr5.set(Idr5::OAS, Oas::bits56); }));
  EXPECT_TRUE(refused([](ModelConfig& c) {
    c.idr5.set(Idr5::GRAN4K, false).set(Idr5::GRAN16K, false).set(Idr5::GRAN64K, false);
  }));
}

// A device may DMA from its own thread while the host programs the SMMU: every access is serialised
// with the register file (run under the sanitizer build).
TEST_F(ModelTest, DmaFromAnotherThreadWhileTheHostInvalidates) {
  start();
  nested_stream(1);
  ASSERT_TRUE(s1.map(0x10000, kGuestData, 16 * 4096, MapAttributes{.allow_blocks = false}));
  std::atomic<bool> stop{false};
  std::atomic<unsigned> accesses{0};
  std::atomic<unsigned> faults{0};
  std::thread device([&] {
    DmaMaster dev(*smmu, 1);
    std::array<std::byte, 64> buf{};
    for (unsigned i = 0; !stop; ++i) {
      if (!dev.read(0x10000 + (i % 16) * 4096, buf)) ++faults;
      ++accesses;
    }
  });
  // Invalidate while the device runs, until both sides have done a good share of work.
  for (int i = 0; i < 200 || accesses < 1000; ++i) {
    ASSERT_TRUE(driver->issue(std::array{cmd_tlbi_nh_asid(kVmid, kAsid), cmd_cfgi_ste(1)}));
    ASSERT_TRUE(smmu->read32(regs::CMDQ_CONS.offset));
  }
  stop = true;
  device.join();
  EXPECT_EQ(faults, 0U);
  EXPECT_GE(smmu->counters().translations, 1000U);
}

}  // namespace
}  // namespace vsmmu::smmu::model::test

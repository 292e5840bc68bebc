// What a stream does by its configuration: abort and bypass vSTEs, V = 0, GBPA while SMMUEN = 0, and vSTEs this
// stage-1-only vSMMU must refuse (C_BAD_STE with the vSID). Each test states what a guest kernel would see.
#include "nesting/virtual_smmu.hpp"
#include "smmu/event.hpp"
#include "tests/sim/nesting/nesting_fixture.hpp"

namespace vsmmu::nesting::test {
namespace {

using namespace smmu;
using namespace smmu::driver;

constexpr std::uint64_t kRamGpa = 0x4000'0000;  // GuestHarnessConfig's default guest RAM
constexpr std::uint64_t kOutsideRam = 0x1'0000'0000;

class StreamConfigSim : public NestingSim {
 protected:
  void write_gbpa(SmmuMmio& mmio, bool abort) {
    must(mmio.write32(regs::GBPA.offset, Gbpa{}.set(Gbpa::ABORT, abort).set(Gbpa::Update, true).value()));
    // IHI 0070 6.3.14: Update reads 0 once the new value is in effect.
    EXPECT_FALSE(Gbpa::of(must(mmio.read32(regs::GBPA.offset))).get(Gbpa::Update));
  }
};

// IHI 0070 5.2 (Config = 0b100, bypass): stage 1 is bypassed, so a device's address is the guest's physical address;
// the host's stage 2 still applies (a bypass vSTE becomes the parent's S2-only STE: arm_smmu_make_nested_domain_ste
// in drivers/iommu/arm/arm-smmu-v3/arm-smmu-v3-iommufd.c). DMA at IOVA = GPA lands at that GPA; outside the guest's
// RAM stage 2 has nothing and the DMA is refused, with no event for the guest (stage-2 faults are the host's).
TEST_F(StreamConfigSim, BypassVsteGoesThroughStage2Only) {
  auto g = make({{"nic0", -1, kNic0}});
  ASSERT_TRUE(g);
  must(g->driver().install_bypass(kNic0));
  EXPECT_EQ(must(g->vsmmu().stream_status(kNic0)).state, StreamState::bypass);

  const std::uint64_t gpa = must(g->alloc(kPage));
  const auto data = pattern(128, 4);
  ASSERT_TRUE(dma("nic0.dma", gpa + 0x40, data));
  EXPECT_TRUE(holds(*g, gpa + 0x40, data));

  EXPECT_FALSE(dma("nic0.dma", kOutsideRam, data));
  EXPECT_TRUE(must(g->events()).records.empty());
}

// IHI 0070 5.2: Config = 0b000 (abort) terminates every transaction without recording an event, and so does an STE
// with V = 0, which gives the stream no configuration (the host treats that vSTE as abort: arm_smmu_validate_vste in
// arm-smmu-v3-iommufd.c). A device that translated before is cut off at once after CFGI_STE + CMD_SYNC, and nothing
// it sends lands anywhere.
TEST_F(StreamConfigSim, AbortAndInvalidVstesBlockDmaWithoutAnEvent) {
  for (const Ste& ste : {abort_ste(), Ste{}}) {
    SCOPED_TRACE(ste.get(Ste::V) ? "Config = abort" : "V = 0");
    auto g = make({{"nic0", -1, kNic0}});
    ASSERT_TRUE(g);
    const std::uint64_t gpa = map_page(*g, kNic0, kAsid);
    ASSERT_TRUE(lands(*g, "nic0.dma", kVa, gpa, 1));

    must(g->driver().install_ste(kNic0, ste));
    EXPECT_EQ(must(g->vsmmu().stream_status(kNic0)).state, StreamState::abort);
    EXPECT_FALSE(dma("nic0.dma", kVa, pattern(64, 2)));
    EXPECT_FALSE(dma("nic0.dma", gpa, pattern(64, 2))) << "abort is not bypass";
    EXPECT_TRUE(holds(*g, gpa, pattern(64, 1))) << "the aborted DMA moved nothing";
    EXPECT_TRUE(must(g->events()).records.empty());
  }
}

// IHI 0070 6.3.14 (GBPA) + 6.3.9 (CR0.SMMUEN): from reset until the driver sets SMMUEN, every stream follows
// GBPA: ABORT = 0 lets DMA through untranslated by stage 1 (IOVA = GPA, still through the host's stage 2),
// ABORT = 1 terminates it. A GBPA write with Update = 1 takes effect at once. The reset value of ABORT is the
// implementation's choice (VirtualSmmuConfig::gbpa_abort_at_reset).
TEST_F(StreamConfigSim, GbpaDecidesBeforeSmmuen) {
  for (const bool abort_at_reset : {false, true}) {
    SCOPED_TRACE(abort_at_reset ? "GBPA.ABORT = 1 at reset" : "GBPA.ABORT = 0 at reset");
    const GuestRamLayout ram{kRamGpa, 16ULL << 20};
    auto memory = must(GuestMemory::allocate(*host, std::span(&ram, 1)));
    ASSERT_TRUE(memory);
    VirtualSmmuConfig cfg;
    cfg.gbpa_abort_at_reset = abort_at_reset;
    auto v = must(VirtualSmmu::create(*memory, cfg, {{"nic0", -1, kNic0}}));
    ASSERT_TRUE(v);
    EXPECT_FALSE(Cr0::of(must(v->read32(regs::CR0.offset))).get(Cr0::SMMUEN));
    EXPECT_EQ(Gbpa::of(must(v->read32(regs::GBPA.offset))).get(Gbpa::ABORT), abort_at_reset);

    const std::uint64_t gpa = kRamGpa + 0x10000;
    auto* ram_bytes = memory->host_pointer(gpa, 64);
    ASSERT_NE(ram_bytes, nullptr);
    const auto data = pattern(64, 5);
    EXPECT_EQ(dma("nic0.dma", gpa, data), !abort_at_reset);
    EXPECT_EQ(std::memcmp(ram_bytes, data.data(), data.size()) == 0, !abort_at_reset);
    EXPECT_EQ(must(v->stream_status(kNic0)).state, abort_at_reset ? StreamState::abort : StreamState::bypass);

    // Flip GBPA.ABORT: the other behaviour, immediately.
    write_gbpa(*v, !abort_at_reset);
    std::memset(ram_bytes, 0, 64);
    EXPECT_EQ(dma("nic0.dma", gpa, data), abort_at_reset);
    EXPECT_EQ(std::memcmp(ram_bytes, data.data(), data.size()) == 0, abort_at_reset);
  }
}

// IHI 0070 6.3.9 + 6.3.14: clearing SMMUEN hands every stream back to GBPA, whatever its STE says; setting it
// again reinstates the STEs. The driver's Options::gbpa_abort (Linux's disable_bypass) chose ABORT = 1 before
// enabling.
TEST_F(StreamConfigSim, ClearingSmmuenFallsBackToGbpa) {
  Options driver;
  driver.gbpa_abort = true;
  auto g = make({{"nic0", -1, kNic0}}, {}, driver);
  ASSERT_TRUE(g);
  const std::uint64_t gpa = map_page(*g, kNic0, kAsid);
  const auto data = pattern(64, 1);
  ASSERT_TRUE(dma("nic0.dma", kVa, data));

  auto& mmio = g->vsmmu();
  const Cr0 cr0 = Cr0::of(must(mmio.read32(regs::CR0.offset)));
  must(mmio.write32(regs::CR0.offset, Cr0(cr0).set(Cr0::SMMUEN, false).value()));
  EXPECT_EQ(must(g->vsmmu().stream_status(kNic0)).state, StreamState::abort);
  EXPECT_FALSE(dma("nic0.dma", kVa, pattern(64, 2)));
  EXPECT_FALSE(dma("nic0.dma", gpa, pattern(64, 2)));
  EXPECT_TRUE(holds(*g, gpa, data));

  write_gbpa(mmio, false);
  const auto data3 = pattern(64, 3);
  EXPECT_FALSE(dma("nic0.dma", kVa, data3)) << "no stage 1 while SMMUEN = 0";
  EXPECT_TRUE(dma("nic0.dma", gpa, data3)) << "GBPA bypass: IOVA = GPA";
  EXPECT_TRUE(holds(*g, gpa, data3));

  must(mmio.write32(regs::CR0.offset, cr0.value()));
  EXPECT_EQ(must(g->vsmmu().stream_status(kNic0)).state, StreamState::translate);
  EXPECT_TRUE(dma("nic0.dma", kVa, data));
  EXPECT_TRUE(holds(*g, gpa, data));
}

// IHI 0070 5.2 "STE validity": an STE with V = 1 that this SMMU cannot honour is ILLEGAL; a transaction using it
// is terminated and C_BAD_STE (7.3.5) is recorded with its StreamID. The vSMMU reports it with the vSID when the
// guest invalidates the STE, blocks the device, and says why in stream_status().
struct BadVste {
  const char* name;
  StreamConfig config;
  unsigned s1cdmax;
  const char* problem;  // a phrase of StreamStatus::problem
};

class BadVsteSim : public NestingSim, public ::testing::WithParamInterface<BadVste> {};

TEST_P(BadVsteSim, GuestReadsCBadSteAndTheDeviceBlocks) {
  const BadVste& bad = GetParam();
  VirtualSmmuConfig no_substreams;
  no_substreams.wishes.ssid_bits = 0;  // auto would give smmu0's 20 bits; the S1CDMax case needs none
  auto g = make({{"nic0", -1, kNic0}}, no_substreams);
  ASSERT_TRUE(g);
  ASSERT_EQ(g->vsmmu().id_registers().idr1.get(Idr1::SSIDSIZE), 0U) << "the S1CDMax case assumes no substreams";
  const std::uint64_t gpa = map_page(*g, kNic0, kAsid);
  const auto data = pattern(64, 1);
  ASSERT_TRUE(dma("nic0.dma", kVa, data));
  ASSERT_TRUE(must(g->events()).records.empty());
  const auto bad_before = g->vsmmu().stats().bad_stes;

  Ste ste = guest_ste(*g, kNic0);
  ste.set(Ste::Config, bad.config).set(Ste::S1CDMax, bad.s1cdmax);
  must(g->driver().install_ste(kNic0, ste));

  const std::string problem = expect_c_bad_ste(*g, kNic0);
  EXPECT_NE(problem.find(bad.problem), std::string::npos) << problem;
  EXPECT_EQ(g->vsmmu().stats().bad_stes, bad_before + 1);

  EXPECT_FALSE(dma("nic0.dma", kVa, pattern(64, 2)));
  EXPECT_TRUE(holds(*g, gpa, data)) << "the refused stream moved nothing";
  EXPECT_EQ(must(host->physical_ste("nic0")).get(Ste::Config), StreamConfig::abort);
}

INSTANTIATE_TEST_SUITE_P(
    IllegalOnAStage1OnlySmmu, BadVsteSim,
    ::testing::Values(BadVste{"Stage2", StreamConfig::s2_translate, 0, "stage 2"},
                      BadVste{"Nested", StreamConfig::nested, 0, "stage 2"},
                      BadVste{"ReservedConfig", StreamConfig::reserved2, 0, "reserved"},
                      BadVste{"S1CDMaxBeyondSsidsize", StreamConfig::s1_translate, 1, "S1CDMax 1 exceeds IDR1.SSIDSIZE 0"}),
    ByName());

}  // namespace
}  // namespace vsmmu::nesting::test

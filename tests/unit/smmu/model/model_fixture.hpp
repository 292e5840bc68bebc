// The model tests' world: a Testbed (host RAM, a guest's RAM and its IPA view, both stages' builders, an
// SmmuModel started by the scripted driver the way Linux starts an SMMU) with gtest assertions around it.
#pragma once

#include <gtest/gtest.h>

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "smmu/cd.hpp"
#include "smmu/driver/smmu_driver.hpp"
#include "smmu/memory.hpp"
#include "testing/dma.hpp"
#include "smmu/model/smmu_model.hpp"
#include "testing/testbed.hpp"
#include "smmu/ste.hpp"
#include "smmu/table_builder.hpp"

namespace vsmmu::smmu::model::test {

using testkit::DmaMaster;
using testkit::DriverOptions;
using testkit::Testbed;
using testkit::TestbedLayout;
using testkit::stage1_cd;
using testkit::stage1_ste;
using testkit::stage2_ste;

using namespace ::vsmmu::smmu::driver;  // the command builders

constexpr TestbedLayout kLayout{};
constexpr std::uint64_t kKiB = 1024;
constexpr std::uint64_t kMiB = 1024 * kKiB;
constexpr std::uint64_t kHostPool = kLayout.host_pool;
constexpr std::uint64_t kHostPoolSize = kLayout.host_pool_size;
constexpr std::uint64_t kGuestPa = kLayout.guest_pa;
constexpr std::uint64_t kGuestIpa = kLayout.guest_ipa;
constexpr std::uint64_t kGuestSize = kLayout.guest_size;
constexpr std::uint64_t kGuestData = kGuestIpa + 16 * kMiB;  // IPA of the guest's DMA buffers (past its pool)
constexpr std::uint64_t kGuestDataPa = kGuestPa + 16 * kMiB;
constexpr std::uint16_t kVmid = 7;
constexpr std::uint16_t kAsid = 42;

inline std::vector<std::byte> pattern(std::size_t n, std::uint8_t seed) {
  std::vector<std::byte> v(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = std::byte(static_cast<std::uint8_t>(seed + i * 7));
  return v;
}

class ModelTest : public ::testing::Test, protected Testbed {
 protected:
  // Creates the SMMU and starts it through its registers.
  void start(const ModelConfig& config = ModelConfig::reference(), const DriverOptions& driver_options = {}) {
    auto r = Testbed::start(config, driver_options);
    ASSERT_TRUE(r) << r.error().to_string();
  }
  // Stage 2 maps all guest RAM IPA -> PA with pages (so one page's entry can be changed alone).
  void map_guest_ram() { ASSERT_TRUE(Testbed::map_guest_ram()); }

  Ste s2_ste(std::uint16_t vmid = kVmid) const { return stage2_ste(s2, vmid); }
  // Stage 1 through a CD table at `cd_table` (an IPA when nested), optionally with stage 2.
  Ste s1_ste(std::uint64_t cd_table, bool nested, unsigned cdmax = 0, CdTableFormat fmt = CdTableFormat::linear,
             S1Dss dss = S1Dss::terminate) const {
    return stage1_ste(cd_table, nested ? &s2 : nullptr, kVmid, cdmax, fmt, dss);
  }
  Cd cd(const TableBuilder& s1_tables, std::uint16_t asid = kAsid) const { return stage1_cd(s1_tables, asid); }

  // A nested stream: guest RAM mapped by stage 2, one CD (linear table of 1) in guest RAM for `s1`.
  void nested_stream(std::uint32_t sid) {
    map_guest_ram();
    auto table = Testbed::nested_stream(sid, kVmid, kAsid);
    ASSERT_TRUE(table) << table.error().to_string();
    cd_table_ipa = *table;
  }

  // Marks the stage-1 leaf of `va` non-global (nG = 1), as Linux's io-pgtable-arm writes every stage-1
  // leaf; TableBuilder writes global ones.
  static void make_non_global(TableBuilder& tables, std::uint64_t va) {
    auto leaf = tables.leaf(va);
    ASSERT_TRUE(leaf);
    ASSERT_TRUE(tables.write_leaf(va, Descriptor{{leaf->descriptor}}.set(Descriptor::nG, true).dw[0]));
  }

  std::vector<Event> events() {
    auto e = driver->drain_events();
    EXPECT_TRUE(e) << e.error().to_string();
    return e ? e->records : std::vector<Event>{};
  }
  std::vector<std::byte> read_pa(std::uint64_t pa, std::size_t n) const {
    std::vector<std::byte> out(n);
    EXPECT_TRUE(mem.read(pa, out));
    return out;
  }

  std::uint64_t cd_table_ipa = 0;  // nested_stream's linear CD table
};

}  // namespace vsmmu::smmu::model::test

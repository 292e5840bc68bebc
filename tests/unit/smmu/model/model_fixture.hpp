// The model tests' world: host RAM with the SMMU's structures and stage-2 tables, a guest's RAM that
// stage 2 maps at an offset, the guest's IPA view of it (where its CDs and stage-1 tables are built), and
// an SmmuModel started by ModelDriver the way Linux starts an SMMU.
#pragma once

#include <gtest/gtest.h>

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "smmu/cd.hpp"
#include "smmu/memory.hpp"
#include "smmu/model/dma.hpp"
#include "smmu/model/driver.hpp"
#include "smmu/model/smmu_model.hpp"
#include "smmu/ste.hpp"
#include "smmu/table_builder.hpp"

namespace vsmmu::smmu::model::test {

constexpr std::uint64_t kKiB = 1024;
constexpr std::uint64_t kMiB = 1024 * kKiB;
constexpr std::uint64_t kHostPool = 0x4000'0000;     // stream table, queues, stage-2 tables
constexpr std::uint64_t kHostPoolSize = 16 * kMiB;
constexpr std::uint64_t kGuestPa = 0x1'8000'0000;    // the guest's RAM in PA space
constexpr std::uint64_t kGuestIpa = 0x8000'0000;     // ... and where the guest sees it
constexpr std::uint64_t kGuestSize = 32 * kMiB;
constexpr std::uint64_t kGuestPoolSize = 8 * kMiB;   // the guest's CDs and stage-1 tables (first 8 MiB)
constexpr std::uint64_t kGuestData = kGuestIpa + 16 * kMiB;  // IPA of the guest's DMA buffers
constexpr std::uint64_t kGuestDataPa = kGuestPa + 16 * kMiB;
constexpr std::uint16_t kVmid = 7;
constexpr std::uint16_t kAsid = 42;

inline std::vector<std::byte> pattern(std::size_t n, std::uint8_t seed) {
  std::vector<std::byte> v(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = std::byte(static_cast<std::uint8_t>(seed + i * 7));
  return v;
}

class ModelTest : public ::testing::Test {
 protected:
  ModelTest() {
    EXPECT_TRUE(mem.add_ram(kHostPool, kHostPoolSize));
    EXPECT_TRUE(mem.add_ram(kGuestPa, kGuestSize));
    // The guest's view of its RAM aliases the same bytes at its IPA.
    EXPECT_TRUE(guest.add_borrowed(kGuestIpa, std::span(mem.host_pointer(kGuestPa, kGuestSize), kGuestSize)));
  }

  // Creates the SMMU and starts it through its registers.
  void start(const ModelConfig& config = ModelConfig::reference(), const DriverLayout& layout = {}) {
    auto m = SmmuModel::create(mem, config);
    ASSERT_TRUE(m) << m.error().to_string();
    smmu = std::move(*m);
    auto d = ModelDriver::start(*smmu, mem, host_pool, layout);
    ASSERT_TRUE(d) << d.error().to_string();
    driver.emplace(*d);
  }

  // Stage 2 maps all guest RAM IPA -> PA with pages (so one page's entry can be changed alone).
  void map_guest_ram() {
    ASSERT_TRUE(s2.map(kGuestIpa, kGuestPa, kGuestSize, MapAttributes{.allow_blocks = false}));
  }

  Ste s2_ste(std::uint16_t vmid = kVmid) const {
    Ste ste;
    ste.set(Ste::V, true)
        .set(Ste::Config, StreamConfig::s2_translate)
        .set(Ste::S2VMID, vmid)
        .set(Ste::S2AA64, true)
        .set(Ste::S2R, true)
        .set(Ste::S2T0SZ, s2.t0sz())
        .set(Ste::S2SL0, s2.s2sl0())
        .set(Ste::S2TG, tg0_from_granule(s2.granule()))
        .set(Ste::S2PS, 5)
        .set(Ste::S2TTB, s2.root());
    return ste;
  }
  // Stage 1 through a CD table at `cd_table` (an IPA when nested), optionally with stage 2.
  Ste s1_ste(std::uint64_t cd_table, bool nested, unsigned cdmax = 0, CdTableFormat fmt = CdTableFormat::linear,
             S1Dss dss = S1Dss::terminate) const {
    Ste ste = nested ? s2_ste() : Ste{};
    ste.set(Ste::V, true)
        .set(Ste::Config, nested ? StreamConfig::nested : StreamConfig::s1_translate)
        .set(Ste::S1ContextPtr, cd_table)
        .set(Ste::S1CDMax, cdmax)
        .set(Ste::S1Fmt, fmt)
        .set(Ste::S1DSS, dss);
    return ste;
  }
  Cd cd(const TableBuilder& s1_tables, std::uint16_t asid = kAsid) const {
    Cd c;
    c.set(Cd::V, true)
        .set(Cd::AA64, true)
        .set(Cd::EPD1, true)
        .set(Cd::R, true)
        .set(Cd::A, true)
        .set(Cd::T0SZ, s1_tables.t0sz())
        .set(Cd::TG0, tg0_from_granule(s1_tables.granule()))
        .set(Cd::IPS, 5)
        .set(Cd::ASID, asid)
        .set(Cd::TTB0, s1_tables.root());
    return c;
  }

  // A nested stream: guest RAM mapped by stage 2, one CD (linear table of 1) in guest RAM for `s1`.
  void nested_stream(std::uint32_t sid) {
    map_guest_ram();
    ASSERT_TRUE(s1.init());
    auto table = guest_pool.allocate(Cd::bytes, 64);
    ASSERT_TRUE(table);
    cd_table_ipa = *table;
    ASSERT_TRUE(guest.write_record(cd_table_ipa, cd(s1)));
    ASSERT_TRUE(driver->write_ste(sid, s1_ste(cd_table_ipa, true)));
    ASSERT_TRUE(driver->issue(cmd_cfgi_ste(sid)));
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
    return e.value_or(std::vector<Event>{});
  }
  std::vector<std::byte> read_pa(std::uint64_t pa, std::size_t n) const {
    std::vector<std::byte> out(n);
    EXPECT_TRUE(mem.read(pa, out));
    return out;
  }

  RegionMemory mem;    // PA space
  RegionMemory guest;  // the guest's IPA view of its RAM
  TablePageAllocator host_pool{mem, kHostPool, kHostPoolSize};
  TablePageAllocator guest_pool{guest, kGuestIpa, kGuestPoolSize};
  TableBuilder s2{mem, host_pool, Stage::s2, Granule::k4K, 48};
  TableBuilder s1{guest, guest_pool, Stage::s1, Granule::k4K, 48};
  std::unique_ptr<SmmuModel> smmu;
  std::optional<ModelDriver> driver;
  std::uint64_t cd_table_ipa = 0;  // nested_stream's linear CD table
};

}  // namespace vsmmu::smmu::model::test

// A ready-made world around the model, shared by its tests, the demo and the benchmarks: host RAM for the
// SMMU's structures and stage-2 tables, a VM's RAM that stage 2 maps at an offset, the VM's IPA view of
// that RAM (where its CDs and stage-1 tables are built), table builders for both stages, and an SmmuModel
// started by the scripted driver (smmu/driver).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>

#include "base/error.hpp"
#include "smmu/memory.hpp"
#include "smmu/driver/smmu_driver.hpp"
#include "smmu/model/smmu_model.hpp"
#include "smmu/table_builder.hpp"

namespace vsmmu::testkit {

using DriverOptions = ::vsmmu::smmu::driver::Options;

struct TestbedLayout {
  static constexpr std::uint64_t kMiB = 1ULL << 20;
  std::uint64_t host_pool = 0x4000'0000;      // stream table, queues, stage-2 tables (PA)
  std::uint64_t host_pool_size = 16 * kMiB;
  std::uint64_t guest_pa = 0x1'8000'0000;     // the VM's RAM in PA space ...
  std::uint64_t guest_ipa = 0x8000'0000;      // ... and where the VM sees it
  std::uint64_t guest_size = 32 * kMiB;
  std::uint64_t guest_pool_size = 8 * kMiB;   // the VM's CDs and stage-1 tables: the start of its RAM
  unsigned ipa_bits = 48;                     // stage 2: 4KB granule, 4 levels at 48 bits
  unsigned va_bits = 48;                      // stage 1: 4KB granule, 4 levels at 48 bits
};

class Testbed {
 public:
  explicit Testbed(const TestbedLayout& layout = {});
  Testbed(const Testbed&) = delete;
  Testbed& operator=(const Testbed&) = delete;

  // Adds the host and VM RAM (once; start() does it too).
  Result<void> add_memory();
  // Creates the SMMU and starts it through its registers.
  Result<void> start(const smmu::model::ModelConfig& config = smmu::model::ModelConfig::reference(),
                     const DriverOptions& driver_options = {});
  // Stage 2 maps all the VM's RAM IPA -> PA, with pages or with blocks where they fit.
  Result<void> map_guest_ram(bool pages = true);
  // A nested stream for `sid`: one CD (a linear table of one, in the VM's RAM) for the stage-1 tables `s1`,
  // stage 2 from `s2`, installed with CFGI_STE. Returns the CD table's IPA.
  Result<std::uint64_t> nested_stream(std::uint32_t sid, std::uint16_t vmid, std::uint16_t asid);

  const TestbedLayout layout;
  smmu::RegionMemory mem;    // PA space
  smmu::RegionMemory guest;  // the VM's IPA view of its RAM (the same bytes)
  smmu::TablePageAllocator host_pool;
  smmu::TablePageAllocator guest_pool;
  smmu::TableBuilder s2;
  smmu::TableBuilder s1;
  std::unique_ptr<smmu::model::SmmuModel> smmu;
  std::optional<::vsmmu::smmu::driver::SmmuDriver> driver;

 private:
  bool ram_added_ = false;
};

// Records as a driver writes them (IHI 0070 5.2, 5.4), from the tables a builder made.
smmu::Ste stage2_ste(const smmu::TableBuilder& s2, std::uint16_t vmid);
// Stage 1 through a CD table at `cd_table`; with `s2` the STE is nested and cd_table an IPA.
smmu::Ste stage1_ste(std::uint64_t cd_table, const smmu::TableBuilder* s2, std::uint16_t vmid, unsigned cdmax = 0,
               smmu::CdTableFormat fmt = smmu::CdTableFormat::linear, smmu::S1Dss dss = smmu::S1Dss::terminate);
smmu::Cd stage1_cd(const smmu::TableBuilder& s1, std::uint16_t asid);

}  // namespace vsmmu::testkit

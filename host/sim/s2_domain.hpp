// A paging domain of the simulated driver: a stage-2 translation table (4KB granule, the SMMU's IAS) in
// host memory with its own VMID, as arm_smmu_domain_finalise_s2 and io-pgtable-arm build one. Every paging
// HWPT is one of these (the real driver uses stage 1 for HWPTs that are not nest parents when the SMMU has
// it; the difference is invisible through the uAPI, see docs/sim-host.md). With dirty tracking, writable
// leaves carry DBM and the STE enables S2HA/S2HD, so the SMMU marks a leaf dirty by setting S2AP[1].
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>

#include "host/sim/host_memory.hpp"
#include "host/sim/arm_smmu_device.hpp"
#include "smmu/ste.hpp"
#include "smmu/table_builder.hpp"

namespace vsmmu::host::sim {

class S2Domain {
 public:
  struct Options {
    bool nest_parent = false;
    bool dirty_tracking = false;
  };
  static Result<std::unique_ptr<S2Domain>> create(ArmSmmuDevice& smmu, Options options);
  // Drops the VMID's TLB entries, frees the VMID and the tables.
  ~S2Domain();
  S2Domain(const S2Domain&) = delete;
  S2Domain& operator=(const S2Domain&) = delete;

  ArmSmmuDevice& smmu() const { return smmu_; }
  std::uint16_t vmid() const { return vmid_; }
  bool nest_parent() const { return options_.nest_parent; }
  bool dirty_tracking() const { return options_.dirty_tracking; }
  // The last IOVA the tables translate (the domain's aperture end).
  std::uint64_t aperture_last() const { return (1ULL << smmu_.features().ias_bits) - 1; }
  std::uint64_t mapped_bytes() const { return mapped_; }

  // arm_smmu_make_s2_domain_ste: an STE translating through this stage 2 alone.
  smmu::Ste ste(bool ats) const;

  // Installs [iova, iova + size) -> [pa, pa + size); with `blocks`, 2 MiB and 1 GiB blocks where alignment
  // allows (the simulated memory is physically contiguous, as hugetlbfs or THP memory is). No TLB
  // maintenance: the range held nothing.
  Result<void> map(std::uint64_t iova, std::uint64_t pa, std::uint64_t size, bool read, bool write, bool blocks);
  // Removes the range and invalidates the TLBs, so no stale translation survives.
  Result<void> unmap(std::uint64_t iova, std::uint64_t size);
  // io-pgtable-arm read_and_clear_dirty: calls `record` for every dirty leaf (DBM and S2AP[1]) overlapping
  // the range with the leaf's whole extent; unless `no_clear`, makes those leaves clean (read-only) again and
  // invalidates the TLBs so the next write marks them dirty.
  Result<void> read_and_clear_dirty(std::uint64_t iova, std::uint64_t size, bool no_clear,
                                    const std::function<void(std::uint64_t, std::uint64_t)>& record);

 private:
  S2Domain(ArmSmmuDevice& smmu, Options options) : smmu_(smmu), options_(options) {}
  // Visits the leaves overlapping [lo, hi) below the table at `table` (level `level`, covering from `base`)
  // whose descriptor has every bit of `need` set.
  template <class Fn>
  void walk(std::uint64_t table, int level, std::uint64_t base, std::uint64_t lo, std::uint64_t hi, std::uint64_t need,
            Fn&& fn);

  ArmSmmuDevice& smmu_;
  Options options_;
  std::uint16_t vmid_ = 0;
  bool has_vmid_ = false;
  MappedRegion pool_;
  std::uint64_t pool_pa_ = 0;
  std::optional<smmu::TablePageAllocator> alloc_;
  std::optional<smmu::TableBuilder> tables_;
  std::uint64_t mapped_ = 0;
};

}  // namespace vsmmu::host::sim

// Stage-2 dirty tracking for live migration: which pages of guest RAM devices (and the vSMMU itself) wrote
// since the last harvest, one bitmap per guest RAM region at 4 KiB granularity, in the layout VMMs keep for
// their own dirty logs (bit i is the page at region GPA + i * 4 KiB: bit i % 8 of byte i / 8).
//
// One DirtyTracker per VM (GuestMemory owns it): every vSMMU of the VM has one nest parent per physical SMMU on
// the VM's IOAS, and a device writes guest RAM through its SMMU's nest parent, so a harvest ORs the bitmaps of
// all of them (IOMMU_HWPT_GET_DIRTY_BITMAP, drivers/iommu/iommufd/io_pagetable.c iopt_read_and_clear_dirty_data).
// A nest parent can track only if it was allocated with NEST_PARENT|DIRTY_TRACKING (Viommu asks for it where
// GET_HW_INFO reports IOMMU_HW_CAP_DIRTY_TRACKING); upstream arm-smmu-v3 refuses that pair
// (drivers/iommu/arm/arm-smmu-v3/arm-smmu-v3-iommufd.c), and then the tracker is conservative: while tracking
// is on, every page of every region is reported dirty in every round, so a migration copies too much but
// never misses a page.
//
// Nothing is lost between harvests: a nest parent that goes away (its last device removed) is harvested
// before it is destroyed, a region that is removed is harvested before it is unmapped (and its bits are
// returned by the next harvest of its GPA), and the vSMMU's own writes into guest RAM (event records) are
// logged as they happen - they reach RAM through the VMM's mapping, which no IOMMU sees.
//
// Thread safety: every member may be called from any thread. Lock order: a vSMMU's lock, GuestMemory's region
// lock, then this one; the tracker calls only the host.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "base/error.hpp"
#include "host/host.hpp"

namespace vsmmu::nesting {

enum class DirtyMode : std::uint8_t {
  off,
  hardware,      // every nest parent tracks: exactly the pages written (a block mapping: its whole block)
  conservative,  // some nest parent cannot track: every page of every region is dirty in every round
};
const char* dirty_mode_name(DirtyMode m);

// harvest() flags
inline constexpr std::uint32_t kDirtyNoClear = host::uapi::kDirtyBitmapNoClear;  // report without clearing

struct DirtyStatus {
  DirtyMode mode = DirtyMode::off;
  std::string reason;        // conservative: which nest parent cannot track, and why
  std::size_t parents = 0;   // nest parents on the VM's IOAS
  std::size_t tracking = 0;  //   of which track dirty pages in hardware
};

struct DirtyHarvest {
  std::uint64_t pages = 0;        // bits that describe the region
  std::uint64_t dirty = 0;        // of which set
  bool conservative = false;      // every page reported dirty (no exact information for this round)
  bool removed = false;           // the region was removed since the last harvest: these are its last bits
};

class DirtyTracker {
 public:
  static constexpr std::uint64_t kPageSize = 4096;
  // The bitmap a region of `size` bytes needs: one bit per page, rounded up to whole 64-bit words.
  static std::uint64_t bitmap_bytes(std::uint64_t size) { return (size / kPageSize + 63) / 64 * 8; }

  DirtyTracker(host::Host& host, host::ObjectId ioas);
  DirtyTracker(const DirtyTracker&) = delete;
  DirtyTracker& operator=(const DirtyTracker&) = delete;

  // Starts tracking (IOMMU_HWPT_SET_DIRTY_TRACKING on every nest parent that can, which also clears their bits:
  // the first round reports what was written from now on). EALREADY when on.
  Result<DirtyStatus> start();
  // Stops tracking and forgets what was not harvested. EALREADY when off.
  Result<void> stop();
  DirtyStatus status() const;
  bool tracking() const { return tracking_.load(std::memory_order_acquire); }

  // Writes the dirty bitmap of the region that starts at `region_gpa` into `bitmap` (at least
  // bitmap_bytes(size) bytes; every bit of those is written, bits past the region's pages are 0), and clears
  // what it reported unless `flags` has kDirtyNoClear. A region removed since the last harvest is reported one
  // last time. EINVAL while tracking is off or for a short bitmap, ENOENT for an unknown GPA.
  Result<DirtyHarvest> harvest(std::uint64_t region_gpa, std::span<std::byte> bitmap, std::uint32_t flags);
  // The size of the region harvest() would report for `region_gpa` (a region removed while tracking included,
  // until its last bits are harvested), or nullopt.
  std::optional<std::uint64_t> region_size(std::uint64_t region_gpa) const;

  // ---- for Viommu: the nest parents on the VM's IOAS
  // A nest parent was allocated (`tracks`: with DIRTY_TRACKING; `why_not` says why it cannot otherwise). While
  // tracking is on it starts tracking at once (or the tracker becomes conservative, and says so).
  void parent_added(host::ObjectId hwpt, bool tracks, std::string label, std::string why_not);
  // A nest parent is about to be destroyed: what it tracked is kept for the next harvest.
  void parent_removing(host::ObjectId hwpt);

  // ---- for GuestMemory
  void region_added(std::uint64_t gpa, std::uint64_t size);
  // Before the region is unmapped from the IOAS: its bits are harvested and kept for the next harvest.
  void region_removing(std::uint64_t gpa);
  // The vSMMU wrote guest RAM itself (through the VMM's mapping): logged while tracking is on.
  void cpu_wrote(std::uint64_t gpa, std::uint64_t length) {
    if (tracking()) log_cpu_write(gpa, length);
  }

 private:
  struct Parent {
    host::ObjectId hwpt = 0;
    bool tracks = false;  // allocated with DIRTY_TRACKING and SET_DIRTY_TRACKING accepted
    std::string label;
    std::string why_not;
  };
  struct Region {
    std::uint64_t size = 0;
    std::vector<std::uint64_t> pending;  // bits kept for the next harvest (while tracking)
    bool everything = false;             // the next harvest reports every page
    bool removed = false;
  };

  void log_cpu_write(std::uint64_t gpa, std::uint64_t length);
  // ORs the parent's bits for the region into `words` (clearing them in the parent); false if the host failed.
  bool read_parent(const Parent& p, std::uint64_t gpa, const Region& r, std::byte* words, bool no_clear);
  bool any_untracked() const;
  DirtyStatus status_locked() const;
  static void set_all(std::byte* bitmap, std::uint64_t pages);

  host::Host& host_;
  const host::ObjectId ioas_;
  mutable std::mutex mu_;
  std::atomic<bool> tracking_{false};
  std::vector<Parent> parents_;
  std::map<std::uint64_t, Region> regions_;  // by GPA
};

}  // namespace vsmmu::nesting

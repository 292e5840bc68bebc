// The VM's RAM as the vSMMU needs it: a bounds-checked view by guest physical address (where it reads the
// guest's stream table, command queue and writes its event queue) and the host IOAS that maps the same
// memory IPA -> host memory, the stage 2 every nested translation ends in. One GuestMemory serves every vSMMU
// of a VM. RAII: the mappings and the IOAS go away with it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <mutex>
#include <shared_mutex>
#include <span>
#include <vector>

#include "host/handles.hpp"
#include "host/reserved_regions.hpp"
#include "nesting/dirty_tracking.hpp"
#include "smmu/memory.hpp"

namespace vsmmu::nesting {

// One region of guest RAM the VMM already has: a memfd (mapped into the IOAS with MAP_FILE) or, with fd < 0,
// plain user memory (IOAS_MAP). `host` is the VMM's mapping of it, size bytes.
struct GuestRamRegion {
  std::uint64_t gpa = 0;
  std::uint64_t size = 0;
  int fd = -1;                 // borrowed; must stay open while mapped
  std::uint64_t fd_offset = 0;
  std::byte* host = nullptr;   // borrowed; must outlive the GuestMemory
};

struct GuestRamLayout {
  std::uint64_t gpa = 0;
  std::uint64_t size = 0;
};

class GuestMemory;

// A device's software MSI window (IOMMU_RESV_SW_MSI) held against guest RAM: while it lives, no RAM region
// may overlap the window (GuestMemory::reserve_msi_window). Released when destroyed.
class MsiWindowReservation {
 public:
  MsiWindowReservation() = default;
  MsiWindowReservation(MsiWindowReservation&& o) noexcept;
  MsiWindowReservation& operator=(MsiWindowReservation&& o) noexcept;
  ~MsiWindowReservation();
  explicit operator bool() const { return memory_ != nullptr; }

 private:
  friend class GuestMemory;
  MsiWindowReservation(GuestMemory& memory, std::uint64_t id) : memory_(&memory), id_(id) {}
  GuestMemory* memory_ = nullptr;
  std::uint64_t id_ = 0;
};

// A window held by reserve_msi_window, and whose it is.
struct ReservedMsiWindow {
  host::IovaRange window;
  std::string owner;  // "vsmmu0 device nic0 (vSID 0x10)"
};

class GuestMemory {
 public:
  // Maps the VMM's regions into a new IOAS at IOVA = GPA. Regions must be page aligned and not overlap.
  static Result<std::unique_ptr<GuestMemory>> map(host::Host& host, std::span<const GuestRamRegion> regions);
  // Adds a region to the IOAS and the view (a VMM's hot-added RAM), or removes one by its GPA: unmapped from
  // the IOAS first, so no device reaches it once this returns. Safe while vSMMUs use the memory from other
  // threads: a vSMMU access to a removed region is a bus fault the guest sees as one (an abort).
  // A region overlapping a reserved MSI window (reserve_msi_window) is refused: EADDRINUSE.
  Result<void> add_region(const GuestRamRegion& region);
  Result<void> remove_region(std::uint64_t gpa);
  // Allocates the RAM itself (one memfd per region, zero-filled, mapped shared) and maps it: for the demo,
  // the benchmarks and tests, and a VMM that lets vsmmu own guest RAM.
  static Result<std::unique_ptr<GuestMemory>> allocate(host::Host& host, std::span<const GuestRamLayout> layout);

  GuestMemory(const GuestMemory&) = delete;
  GuestMemory& operator=(const GuestMemory&) = delete;
  ~GuestMemory();

  // Under nesting a device's MSI write goes through the guest's stage 1 and then the IOAS, where the host
  // reserves the device's software MSI window (IOMMU_RESV_SW_MSI) for the ITS doorbell: guest RAM there could
  // be mapped neither in the IOAS nor 1:1 in the guest's stage 1. Holds `window` for `owner` (a device) while
  // the reservation lives; refused with EADDRINUSE, naming both ranges, when guest RAM overlaps it (the kernel
  // says EADDRINUSE too when it reserves over a mapping: iopt_table_enforce_dev_resv_regions).
  Result<MsiWindowReservation> reserve_msi_window(const host::IovaRange& window, std::string owner);
  std::vector<ReservedMsiWindow> msi_windows() const;

  smmu::PhysicalMemory& view() { return view_; }
  const smmu::PhysicalMemory& view() const { return view_; }
  // Host pointer for [gpa, gpa+len) when it lies in one region (tests and data checks).
  std::byte* host_pointer(std::uint64_t gpa, std::uint64_t len) { return view_.host_pointer(gpa, len); }
  host::ObjectId ioas() const { return ioas_.id(); }
  // The VM's dirty log for live migration (nesting/dirty_tracking.hpp): the nest parents on ioas() register
  // with it, and the vSMMU's own writes through view() are logged in it.
  DirtyTracker& dirty() { return *dirty_; }
  host::Host& host() const { return *host_; }
  const std::vector<GuestRamRegion>& regions() const { return regions_; }

 private:
  friend class MsiWindowReservation;
  struct Owned;  // memfds and mappings made by allocate()
  void release_msi_window(std::uint64_t id);
  explicit GuestMemory(host::Host& host);
  Result<void> add(const GuestRamRegion& r);

  host::Host* host_;
  std::unique_ptr<Owned> owned_;             // destroyed last: the IOAS must be gone before the memory
  // The regions, readable from many threads while one adds or removes a region.
  class LockedView final : public smmu::PhysicalMemory {
   public:
    DirtyTracker* dirty = nullptr;  // writes are logged in it
    std::expected<void, smmu::BusFault> read(std::uint64_t pa, std::span<std::byte> out) const override;
    std::expected<void, smmu::BusFault> write(std::uint64_t pa, std::span<const std::byte> in) override;
    std::expected<bool, smmu::BusFault> compare_exchange64(std::uint64_t pa, std::uint64_t expected,
                                                           std::uint64_t desired) override;
    std::byte* host_pointer(std::uint64_t pa, std::uint64_t len);
    Result<void> add_borrowed(std::uint64_t base, std::span<std::byte> backing);
    Result<void> remove(std::uint64_t base);

   private:
    mutable std::shared_mutex mu_;
    smmu::RegionMemory regions_;
  };
  LockedView view_;
  host::HostObject ioas_;
  std::unique_ptr<DirtyTracker> dirty_;      // after ioas_: made with it
  mutable std::mutex regions_mu_;            // add_region / remove_region
  std::vector<GuestRamRegion> regions_;      // mapped into ioas_
  std::map<std::uint64_t, ReservedMsiWindow> msi_windows_;  // by reservation id; under regions_mu_
  std::uint64_t next_window_id_ = 1;
};

}  // namespace vsmmu::nesting

// The simulated host's physical memory: one RegionMemory that every simulated SMMU fetches from and every
// simulated device DMAs into. Regions in it are host mappings the simulated host owns (anonymous memory for
// the driver's stream tables, queues and page tables) or borrows (the VMM's memory an IOAS maps: a memfd
// range it maps itself, or user memory), placed at host-physical addresses from a small allocator. Below that
// RAM sits the GICv3 ITS's translation frame (its_doorbell.hpp): the bus the SMMUs use sends a device's write
// there to the doorbell, with the device's StreamID as its DeviceID.
#pragma once

#include <cstddef>
#include <cstdint>
#include <expected>
#include <map>
#include <span>

#include "base/error.hpp"
#include "host/sim/its_doorbell.hpp"
#include "smmu/memory.hpp"

namespace vsmmu::host::sim {

// An mmap owned by this object: anonymous (zero-filled on first touch, reserving no swap) or a file range.
class MappedRegion {
 public:
  MappedRegion() = default;
  static Result<MappedRegion> anonymous(std::uint64_t bytes, std::string_view what);
  // Maps [offset, offset + bytes) of fd shared, readable and, if `writable`, writable; offset page-aligned.
  static Result<MappedRegion> file(int fd, std::uint64_t offset, std::uint64_t bytes, bool writable);
  MappedRegion(MappedRegion&& o) noexcept;
  MappedRegion& operator=(MappedRegion&& o) noexcept;
  MappedRegion(const MappedRegion&) = delete;
  MappedRegion& operator=(const MappedRegion&) = delete;
  ~MappedRegion();

  std::span<std::byte> bytes() const { return {data_, size_}; }
  explicit operator bool() const { return data_ != nullptr; }

 private:
  MappedRegion(std::byte* data, std::size_t size) : data_(data), size_(size) {}
  void reset();
  std::byte* data_ = nullptr;
  std::size_t size_ = 0;
};

class HostMemory {
 public:
  // Host-physical addresses handed out lie in [base, limit); the ITS at its_base lies below base.
  HostMemory(std::uint64_t base, std::uint64_t limit, std::uint64_t its_base);
  HostMemory(const HostMemory&) = delete;
  HostMemory& operator=(const HostMemory&) = delete;

  // RAM only: what the simulated drivers write their tables and queues into.
  smmu::RegionMemory& memory() { return mem_; }
  // What the SMMUs reach (table walks, queues, a device's DMA): RAM, and the ITS's translation frame, which
  // reads as zero and takes writes as the doorbell does; any other access to the frame (a compare-and-swap,
  // an access straddling its edge) is an external abort.
  smmu::PhysicalMemory& bus() { return bus_; }
  ItsDoorbell& its() { return its_; }
  const ItsDoorbell& its() const { return its_; }

  // Places `backing` at a free host-physical address whose offset modulo `congruence` (a power of two) is
  // `offset % congruence`, so stage-2 blocks can map it when the IOVA has the same offset; returns the address.
  Result<std::uint64_t> place(std::span<std::byte> backing, std::uint64_t congruence, std::uint64_t offset);
  // Removes the region placed at `pa` and frees its addresses.
  void remove(std::uint64_t pa);

  std::size_t regions() const { return placed_.size(); }
  std::uint64_t placed_bytes() const;

 private:
  class Bus final : public smmu::PhysicalMemory {
   public:
    Bus(smmu::RegionMemory& ram, ItsDoorbell& its) : ram_(ram), its_(its) {}
    std::expected<void, smmu::BusFault> read(std::uint64_t pa, std::span<std::byte> out) const override;
    std::expected<void, smmu::BusFault> write(std::uint64_t pa, std::span<const std::byte> in) override;
    std::expected<bool, smmu::BusFault> compare_exchange64(std::uint64_t pa, std::uint64_t expected,
                                                           std::uint64_t desired) override;
    std::expected<void, smmu::BusFault> write_from_stream(std::uint32_t sid, std::uint64_t pa,
                                                          std::span<const std::byte> in) override;

   private:
    smmu::RegionMemory& ram_;
    ItsDoorbell& its_;
  };

  smmu::RegionMemory mem_;
  ItsDoorbell its_;
  Bus bus_{mem_, its_};
  std::map<std::uint64_t, std::uint64_t> free_;    // start -> size
  std::map<std::uint64_t, std::uint64_t> placed_;  // address -> size
};

}  // namespace vsmmu::host::sim

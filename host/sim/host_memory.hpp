// The simulated host's physical memory: one RegionMemory that every simulated SMMU fetches from and every
// simulated device DMAs into. Regions in it are host mappings the simulated host owns (anonymous memory for
// the driver's stream tables, queues and page tables) or borrows (the VMM's memory an IOAS maps: a memfd
// range it maps itself, or user memory), placed at host-physical addresses from a small allocator.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <span>

#include "base/error.hpp"
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
  // Host-physical addresses handed out lie in [base, limit).
  HostMemory(std::uint64_t base, std::uint64_t limit);

  smmu::RegionMemory& memory() { return mem_; }

  // Places `backing` at a free host-physical address whose offset modulo `congruence` (a power of two) is
  // `offset % congruence`, so stage-2 blocks can map it when the IOVA has the same offset; returns the address.
  Result<std::uint64_t> place(std::span<std::byte> backing, std::uint64_t congruence, std::uint64_t offset);
  // Removes the region placed at `pa` and frees its addresses.
  void remove(std::uint64_t pa);

  std::size_t regions() const { return placed_.size(); }
  std::uint64_t placed_bytes() const;

 private:
  smmu::RegionMemory mem_;
  std::map<std::uint64_t, std::uint64_t> free_;    // start -> size
  std::map<std::uint64_t, std::uint64_t> placed_;  // address -> size
};

}  // namespace vsmmu::host::sim

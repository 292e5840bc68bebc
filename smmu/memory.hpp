// Simulated physical memory: the address space the software SMMU fetches its tables and queues from and
// a DMA master writes into. Regions are either owned by the memory or borrowed (a VMM's memfd mapping),
// so a simulated device's DMA lands where the VMM sees it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <expected>
#include <map>
#include <memory>
#include <span>
#include <string>

#include "base/error.hpp"
#include "base/try.hpp"

namespace vsmmu::smmu {

// An access that touched an address with no memory behind it (an external abort on a real bus).
struct BusFault {
  std::uint64_t address = 0;  // first address of the access that had nothing behind it
};

class PhysicalMemory {
 public:
  virtual ~PhysicalMemory() = default;

  // Whole-range accesses: either every byte is transferred or nothing is (no partial DMA).
  virtual std::expected<void, BusFault> read(std::uint64_t pa, std::span<std::byte> out) const = 0;
  virtual std::expected<void, BusFault> write(std::uint64_t pa, std::span<const std::byte> in) = 0;
  // Atomic 64-bit compare-and-swap at an 8-byte aligned address, as HTTU descriptor updates need.
  // Returns whether the swap happened (false: the word no longer held `expected`).
  virtual std::expected<bool, BusFault> compare_exchange64(std::uint64_t pa, std::uint64_t expected,
                                                           std::uint64_t desired) = 0;
  // A device's DMA write as it leaves the SMMU: the interconnect carries the transaction's StreamID with it,
  // from which a GICv3 ITS takes the DeviceID of an MSI written to GITS_TRANSLATER (IORT: the SMMU node's
  // ID mappings to the ITS group). Memory ignores it.
  virtual std::expected<void, BusFault> write_from_stream(std::uint32_t sid, std::uint64_t pa,
                                                          std::span<const std::byte> in) {
    (void)sid;
    return write(pa, in);
  }

  std::expected<std::uint64_t, BusFault> read64(std::uint64_t pa) const;
  std::expected<std::uint32_t, BusFault> read32(std::uint64_t pa) const;
  std::expected<void, BusFault> write64(std::uint64_t pa, std::uint64_t value);
  std::expected<void, BusFault> write32(std::uint64_t pa, std::uint32_t value);

  // Reads or writes a Record-shaped structure (Ste, Cd, Command, Event).
  template <class R>
  std::expected<R, BusFault> read_record(std::uint64_t pa) const {
    std::array<std::byte, R::bytes> buf{};
    VSMMU_TRY(read(pa, buf));
    return R::from_bytes(std::span<const std::byte, R::bytes>(buf));
  }
  template <class R>
  std::expected<void, BusFault> write_record(std::uint64_t pa, const R& rec) {
    auto buf = rec.to_bytes();
    return write(pa, buf);
  }
};

// Physical memory made of non-overlapping regions. Accesses may span adjacent regions.
class RegionMemory final : public PhysicalMemory {
 public:
  // Adds zero-filled memory owned by this object.
  Result<void> add_ram(std::uint64_t base, std::uint64_t size);
  // Adds memory owned by the caller (e.g. an mmap of a memfd); it must outlive this object or be removed.
  Result<void> add_borrowed(std::uint64_t base, std::span<std::byte> backing);
  Result<void> remove(std::uint64_t base);
  // Host pointer for [pa, pa+len) when it lies inside one region (tests and the DMA engine's fast path).
  std::byte* host_pointer(std::uint64_t pa, std::uint64_t len);
  bool contains(std::uint64_t pa, std::uint64_t len) const;

  std::expected<void, BusFault> read(std::uint64_t pa, std::span<std::byte> out) const override;
  std::expected<void, BusFault> write(std::uint64_t pa, std::span<const std::byte> in) override;
  std::expected<bool, BusFault> compare_exchange64(std::uint64_t pa, std::uint64_t expected,
                                                   std::uint64_t desired) override;

 private:
  struct Region {
    std::uint64_t size = 0;
    std::byte* data = nullptr;
    std::unique_ptr<std::byte[]> owned;
  };
  Result<void> insert(std::uint64_t base, Region r);
  // Finds the region holding pa; nullptr if none.
  const Region* find(std::uint64_t pa, std::uint64_t& base) const;
  std::map<std::uint64_t, Region> regions_;  // keyed by base
};

}  // namespace vsmmu::smmu

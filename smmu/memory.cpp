#include "smmu/memory.hpp"

#include "base/try.hpp"

#include <atomic>
#include <bit>
#include <cstring>

static_assert(std::endian::native == std::endian::little, "compare_exchange64 works on host words");

namespace vsmmu::smmu {

std::expected<std::uint64_t, BusFault> PhysicalMemory::read64(std::uint64_t pa) const {
  std::array<std::byte, 8> b{};
  VSMMU_TRY(read(pa, b));
  std::uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | std::to_integer<std::uint64_t>(b[i]);
  return v;
}

std::expected<std::uint32_t, BusFault> PhysicalMemory::read32(std::uint64_t pa) const {
  std::array<std::byte, 4> b{};
  VSMMU_TRY(read(pa, b));
  std::uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = (v << 8) | std::to_integer<std::uint32_t>(b[i]);
  return v;
}

std::expected<void, BusFault> PhysicalMemory::write64(std::uint64_t pa, std::uint64_t value) {
  std::array<std::byte, 8> b{};
  for (std::size_t i = 0; i < 8; ++i) b[i] = std::byte(static_cast<std::uint8_t>(value >> (8 * i)));
  return write(pa, b);
}

std::expected<void, BusFault> PhysicalMemory::write32(std::uint64_t pa, std::uint32_t value) {
  std::array<std::byte, 4> b{};
  for (std::size_t i = 0; i < 4; ++i) b[i] = std::byte(static_cast<std::uint8_t>(value >> (8 * i)));
  return write(pa, b);
}

Result<void> RegionMemory::insert(std::uint64_t base, Region r) {
  if (r.size == 0) return fail(EINVAL, "smmu.memory", "region at {:#x} has size 0", base);
  if (base + r.size < base) return fail(EINVAL, "smmu.memory", "region at {:#x} size {:#x} wraps the address space", base, r.size);
  auto next = regions_.lower_bound(base);
  if (next != regions_.end() && next->first < base + r.size)
    return fail(EEXIST, "smmu.memory", "region [{:#x}, {:#x}) overlaps the region at {:#x}", base, base + r.size, next->first);
  if (next != regions_.begin()) {
    auto prev = std::prev(next);
    if (prev->first + prev->second.size > base)
      return fail(EEXIST, "smmu.memory", "region [{:#x}, {:#x}) overlaps the region at {:#x}", base, base + r.size, prev->first);
  }
  regions_.emplace(base, std::move(r));
  return {};
}

Result<void> RegionMemory::add_ram(std::uint64_t base, std::uint64_t size) {
  Region r;
  r.size = size;
  r.owned = std::make_unique<std::byte[]>(size);  // value-initialised: zero
  r.data = r.owned.get();
  return insert(base, std::move(r));
}

Result<void> RegionMemory::add_borrowed(std::uint64_t base, std::span<std::byte> backing) {
  Region r;
  r.size = backing.size();
  r.data = backing.data();
  return insert(base, std::move(r));
}

Result<void> RegionMemory::remove(std::uint64_t base) {
  if (regions_.erase(base) == 0) return fail(ENOENT, "smmu.memory", "no region starts at {:#x}", base);
  return {};
}

const RegionMemory::Region* RegionMemory::find(std::uint64_t pa, std::uint64_t& base) const {
  auto it = regions_.upper_bound(pa);
  if (it == regions_.begin()) return nullptr;
  --it;
  if (pa - it->first >= it->second.size) return nullptr;
  base = it->first;
  return &it->second;
}

bool RegionMemory::contains(std::uint64_t pa, std::uint64_t len) const {
  while (len > 0) {
    std::uint64_t base = 0;
    const Region* r = find(pa, base);
    if (!r) return false;
    std::uint64_t chunk = std::min(len, r->size - (pa - base));
    pa += chunk;
    len -= chunk;
    if (len > 0 && pa == 0) return false;  // wrapped
  }
  return true;
}

std::byte* RegionMemory::host_pointer(std::uint64_t pa, std::uint64_t len) {
  std::uint64_t base = 0;
  const Region* r = find(pa, base);
  if (!r || len > r->size - (pa - base)) return nullptr;
  return r->data + (pa - base);
}

std::expected<void, BusFault> RegionMemory::read(std::uint64_t pa, std::span<std::byte> out) const {
  if (!contains(pa, out.size())) return std::unexpected(BusFault{pa});
  std::size_t done = 0;
  while (done < out.size()) {
    std::uint64_t base = 0;
    const Region* r = find(pa + done, base);
    std::size_t off = pa + done - base;
    std::size_t chunk = std::min<std::size_t>(out.size() - done, r->size - off);
    std::memcpy(out.data() + done, r->data + off, chunk);
    done += chunk;
  }
  return {};
}

std::expected<void, BusFault> RegionMemory::write(std::uint64_t pa, std::span<const std::byte> in) {
  if (!contains(pa, in.size())) return std::unexpected(BusFault{pa});
  std::size_t done = 0;
  while (done < in.size()) {
    std::uint64_t base = 0;
    const Region* r = find(pa + done, base);
    std::size_t off = pa + done - base;
    std::size_t chunk = std::min<std::size_t>(in.size() - done, r->size - off);
    std::memcpy(r->data + off, in.data() + done, chunk);
    done += chunk;
  }
  return {};
}

std::expected<bool, BusFault> RegionMemory::compare_exchange64(std::uint64_t pa, std::uint64_t expected,
                                                               std::uint64_t desired) {
  if (pa % 8 != 0) return std::unexpected(BusFault{pa});  // the architecture's HTTU updates are aligned
  std::byte* p = host_pointer(pa, 8);
  if (!p) return std::unexpected(BusFault{pa});
  // Borrowed memory may be shared with another process (the VMM), so the update is a real atomic.
  std::atomic_ref<std::uint64_t> word(*reinterpret_cast<std::uint64_t*>(p));
  return word.compare_exchange_strong(expected, desired);
}

}  // namespace vsmmu::smmu

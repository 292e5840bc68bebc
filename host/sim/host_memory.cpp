#include "host/sim/host_memory.hpp"

#include "base/try.hpp"

#include <sys/mman.h>

#include <cerrno>
#include <cstring>
#include <utility>

namespace vsmmu::host::sim {

namespace {
constexpr const char* kWhere = "sim.memory";
}  // namespace

Result<MappedRegion> MappedRegion::anonymous(std::uint64_t bytes, std::string_view what) {
  void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) {
    const int err = errno;
    return fail(err == ENOMEM ? ENOMEM : err, kWhere, "cannot reserve {:#x} bytes of address space for {}: {}",
                bytes, what, std::strerror(err));
  }
  return MappedRegion(static_cast<std::byte*>(p), bytes);
}

Result<MappedRegion> MappedRegion::file(int fd, std::uint64_t offset, std::uint64_t bytes, bool writable) {
  void* p = ::mmap(nullptr, bytes, PROT_READ | (writable ? PROT_WRITE : 0), MAP_SHARED, fd, static_cast<off_t>(offset));
  if (p == MAP_FAILED) {
    const int err = errno;
    return fail(err, kWhere, "cannot map {:#x} bytes at offset {:#x} of fd {}: {}", bytes, offset, fd,
                std::strerror(err));
  }
  return MappedRegion(static_cast<std::byte*>(p), bytes);
}

MappedRegion::MappedRegion(MappedRegion&& o) noexcept
    : data_(std::exchange(o.data_, nullptr)), size_(std::exchange(o.size_, 0)) {}

MappedRegion& MappedRegion::operator=(MappedRegion&& o) noexcept {
  if (this != &o) {
    reset();
    data_ = std::exchange(o.data_, nullptr);
    size_ = std::exchange(o.size_, 0);
  }
  return *this;
}

MappedRegion::~MappedRegion() { reset(); }

void MappedRegion::reset() {
  if (data_) ::munmap(data_, size_);
  data_ = nullptr;
  size_ = 0;
}

HostMemory::HostMemory(std::uint64_t base, std::uint64_t limit, std::uint64_t its_base) : its_(its_base) {
  free_.emplace(base, limit - base);
}

std::expected<void, smmu::BusFault> HostMemory::Bus::read(std::uint64_t pa, std::span<std::byte> out) const {
  if (!its_.overlaps(pa, out.size())) return ram_.read(pa, out);
  if (!its_.inside(pa, out.size())) return std::unexpected(smmu::BusFault{pa});
  std::memset(out.data(), 0, out.size());  // GITS_TRANSLATER is write-only; the rest of the frame is reserved
  return {};
}

std::expected<void, smmu::BusFault> HostMemory::Bus::write(std::uint64_t pa, std::span<const std::byte> in) {
  if (!its_.overlaps(pa, in.size())) return ram_.write(pa, in);
  if (!its_.inside(pa, in.size())) return std::unexpected(smmu::BusFault{pa});
  // A write that is no device's (the SMMU's own): nothing here gives it a DeviceID (the simulated driver
  // uses wired interrupts), so the frame ignores it.
  its_.write_without_device(pa, in.size());
  return {};
}

std::expected<void, smmu::BusFault> HostMemory::Bus::write_from_stream(std::uint32_t sid, std::uint64_t pa,
                                                                       std::span<const std::byte> in) {
  if (!its_.overlaps(pa, in.size())) return ram_.write(pa, in);
  if (!its_.inside(pa, in.size())) return std::unexpected(smmu::BusFault{pa});
  its_.write(sid, pa, in);
  return {};
}

std::expected<bool, smmu::BusFault> HostMemory::Bus::compare_exchange64(std::uint64_t pa, std::uint64_t expected,
                                                                        std::uint64_t desired) {
  if (its_.overlaps(pa, 8)) return std::unexpected(smmu::BusFault{pa});
  return ram_.compare_exchange64(pa, expected, desired);
}

Result<std::uint64_t> HostMemory::place(std::span<std::byte> backing, std::uint64_t congruence,
                                        std::uint64_t offset) {
  const std::uint64_t size = backing.size();
  const std::uint64_t want = offset & (congruence - 1);
  for (auto it = free_.begin(); it != free_.end(); ++it) {
    const auto [start, len] = *it;
    // The first address >= start with the wanted offset modulo the congruence.
    std::uint64_t pa = (start & ~(congruence - 1)) + want;
    if (pa < start) pa += congruence;
    if (pa - start > len || len - (pa - start) < size) continue;
    VSMMU_TRY(mem_.add_borrowed(pa, backing));
    free_.erase(it);
    if (pa > start) free_.emplace(start, pa - start);
    if (pa + size < start + len) free_.emplace(pa + size, start + len - (pa + size));
    placed_.emplace(pa, size);
    return pa;
  }
  return fail(ENOMEM, kWhere, "no {:#x} bytes of host-physical address space left (aligned to {:#x}); unmap "
              "something first", size, congruence);
}

void HostMemory::remove(std::uint64_t pa) {
  auto it = placed_.find(pa);
  if (it == placed_.end()) return;
  std::uint64_t start = pa;
  std::uint64_t size = it->second;
  placed_.erase(it);
  (void)mem_.remove(pa);
  // Merge with the free neighbours.
  auto next = free_.lower_bound(start);
  if (next != free_.end() && next->first == start + size) {
    size += next->second;
    next = free_.erase(next);
  }
  if (next != free_.begin()) {
    auto prev = std::prev(next);
    if (prev->first + prev->second == start) {
      start = prev->first;
      size += prev->second;
      free_.erase(prev);
    }
  }
  free_.emplace(start, size);
}

std::uint64_t HostMemory::placed_bytes() const {
  std::uint64_t n = 0;
  for (const auto& [pa, size] : placed_) n += size;
  return n;
}

}  // namespace vsmmu::host::sim

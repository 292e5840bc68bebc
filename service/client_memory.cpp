#include "service/client_memory.hpp"

#include <sys/mman.h>
#include <sys/stat.h>

#include <cstring>

#include "base/try.hpp"

namespace vsmmu::service {

namespace {
constexpr const char* kWhere = "vsmmud.memory";
}

std::atomic<std::size_t> ClientMemory::live_{0};

std::size_t ClientMemory::live() { return live_.load(std::memory_order_relaxed); }

Result<std::shared_ptr<ClientMemory>> ClientMemory::create(host::Host& host, std::shared_ptr<host::Host> owned_host) {
  std::shared_ptr<ClientMemory> m(new ClientMemory());
  m->owned_host_ = std::move(owned_host);
  m->host_ = &host;
  VSMMU_TRY_ASSIGN(auto g, nesting::GuestMemory::map(host, {}));
  m->memory_ = std::move(g);
  live_.fetch_add(1, std::memory_order_relaxed);
  return m;
}

ClientMemory::~ClientMemory() {
  if (memory_) live_.fetch_sub(1, std::memory_order_relaxed);
  memory_.reset();  // the IOAS and its mappings first, then the daemon's mappings of the memory
  for (auto& [gpa, m] : mappings_)
    if (m.addr) ::munmap(m.addr, m.length);
}

Result<void> ClientMemory::add(std::uint64_t gpa, std::uint64_t length, host::UniqueFd fd, std::uint64_t fd_offset) {
  std::lock_guard lock(mu_);
  struct stat st{};
  if (::fstat(fd.get(), &st) != 0) return fail(errno, kWhere, "fstat of the region's fd: {}", std::strerror(errno));
  if (!S_ISREG(st.st_mode))
    return fail(EINVAL, kWhere, "the region's fd is not a memfd or file (mode {:#o}); send the memfd that backs guest RAM",
                st.st_mode & S_IFMT);
  if (fd_offset > static_cast<std::uint64_t>(st.st_size) || length > static_cast<std::uint64_t>(st.st_size) - fd_offset)
    return fail(EINVAL, kWhere, "[{:#x}, +{:#x}) of the memfd goes past its size {:#x}; ftruncate it first", fd_offset,
                length, st.st_size);
  void* addr = ::mmap(nullptr, length, PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), static_cast<off_t>(fd_offset));
  if (addr == MAP_FAILED)
    return fail(errno, kWhere, "mapping {:#x} bytes of the memfd at offset {:#x}: {}", length, fd_offset, std::strerror(errno));
  nesting::GuestRamRegion r{gpa, length, fd.get(), fd_offset, static_cast<std::byte*>(addr)};
  if (auto a = memory_->add_region(r); !a) {
    ::munmap(addr, length);
    return std::unexpected(a.error());
  }
  mappings_.emplace(gpa, Mapping{std::move(fd), addr, length});
  return {};
}

Result<void> ClientMemory::remove(std::uint64_t gpa) {
  std::lock_guard lock(mu_);
  auto it = mappings_.find(gpa);
  if (it == mappings_.end()) return fail(ENOENT, kWhere, "no guest RAM region of this client starts at GPA {:#x}", gpa);
  VSMMU_TRY(memory_->remove_region(gpa));
  ::munmap(it->second.addr, it->second.length);
  mappings_.erase(it);
  return {};
}

std::size_t ClientMemory::regions() const {
  std::lock_guard lock(mu_);
  return mappings_.size();
}

Result<nesting::DirtyStatus> ClientMemory::dirty_start() { return memory_->dirty().start(); }

Result<void> ClientMemory::dirty_stop() { return memory_->dirty().stop(); }

namespace {
// The VMM's bitmap file, mapped shared for one harvest.
class BitmapMapping {
 public:
  BitmapMapping(void* addr, std::size_t length) : addr_(addr), length_(length) {}
  BitmapMapping(const BitmapMapping&) = delete;
  BitmapMapping& operator=(const BitmapMapping&) = delete;
  ~BitmapMapping() { ::munmap(addr_, length_); }
  std::span<std::byte> bytes() const { return {static_cast<std::byte*>(addr_), length_}; }

 private:
  void* addr_;
  std::size_t length_;
};
}  // namespace

Result<nesting::DirtyHarvest> ClientMemory::dirty_get(std::uint64_t region_gpa, int bitmap_fd,
                                                      std::uint64_t bitmap_offset, std::uint32_t flags) {
  std::lock_guard lock(mu_);
  // The tracker knows the client's regions, and those removed while tracking until their last bits are taken.
  const auto size = memory_->dirty().region_size(region_gpa);
  if (!size)
    return fail(ENOENT, kWhere, "no guest RAM region of this client starts at GPA {:#x} (nor was one removed there "
                "while dirty tracking was on)", region_gpa);
  const std::uint64_t bytes = nesting::DirtyTracker::bitmap_bytes(*size);
  struct stat st{};
  if (::fstat(bitmap_fd, &st) != 0) return fail(errno, kWhere, "fstat of the bitmap file: {}", std::strerror(errno));
  if (!S_ISREG(st.st_mode))
    return fail(EINVAL, kWhere, "the bitmap fd is not a memfd or file (mode {:#o})", st.st_mode & S_IFMT);
  const auto file_size = static_cast<std::uint64_t>(st.st_size);
  if (bitmap_offset > file_size || bytes > file_size - bitmap_offset)
    return fail(EINVAL, kWhere, "the bitmap file has {} bytes; region [{:#x}, +{:#x}) needs {} bytes at offset {} "
                "(one bit per 4 KiB page, in whole 64-bit words): ftruncate it to at least {}", file_size, region_gpa,
                *size, bytes, bitmap_offset, bitmap_offset + bytes);
  void* addr = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, bitmap_fd, static_cast<off_t>(bitmap_offset));
  if (addr == MAP_FAILED)
    return fail(errno, kWhere, "mapping {} bytes of the bitmap file at offset {}: {}", bytes, bitmap_offset,
                std::strerror(errno));
  const BitmapMapping bitmap(addr, bytes);
  return memory_->dirty().harvest(region_gpa, bitmap.bytes(), flags);
}

}  // namespace vsmmu::service

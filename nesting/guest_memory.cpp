#include "nesting/guest_memory.hpp"

#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <algorithm>
#include <cstring>
#include <utility>

#include "base/log.hpp"
#include "base/try.hpp"

namespace vsmmu::nesting {
namespace {
constexpr const char* kWhere = "vsmmu.memory";
constexpr std::uint64_t kPage = 4096;
}  // namespace

struct GuestMemory::Owned {
  struct Mapping {
    host::UniqueFd fd;
    void* addr = nullptr;
    std::uint64_t size = 0;
  };
  std::vector<Mapping> mappings;
  ~Owned() {
    for (auto& m : mappings)
      if (m.addr) ::munmap(m.addr, m.size);
  }
};

GuestMemory::GuestMemory(host::Host& host) : host_(&host) {}

GuestMemory::~GuestMemory() {
  // Unmap from the IOAS before the IOAS (member) and the memory (owned_) go.
  for (const auto& r : regions_)
    if (auto u = host_->ioas_unmap(ioas_.id(), r.gpa, r.size); !u)
      log::error(kWhere, "unmapping guest RAM [{:#x}, +{:#x}) from IOAS {} failed: {}", r.gpa, r.size, ioas_.id(),
                 u.error());
}

std::expected<void, smmu::BusFault> GuestMemory::LockedView::read(std::uint64_t pa, std::span<std::byte> out) const {
  std::shared_lock lock(mu_);
  return regions_.read(pa, out);
}
std::expected<void, smmu::BusFault> GuestMemory::LockedView::write(std::uint64_t pa, std::span<const std::byte> in) {
  std::shared_lock lock(mu_);
  auto r = regions_.write(pa, in);
  if (r && dirty) dirty->cpu_wrote(pa, in.size());
  return r;
}
std::expected<bool, smmu::BusFault> GuestMemory::LockedView::compare_exchange64(std::uint64_t pa, std::uint64_t expected,
                                                                                std::uint64_t desired) {
  std::shared_lock lock(mu_);
  auto r = regions_.compare_exchange64(pa, expected, desired);
  if (r && *r && dirty) dirty->cpu_wrote(pa, 8);
  return r;
}
std::byte* GuestMemory::LockedView::host_pointer(std::uint64_t pa, std::uint64_t len) {
  std::shared_lock lock(mu_);
  return regions_.host_pointer(pa, len);
}
Result<void> GuestMemory::LockedView::add_borrowed(std::uint64_t base, std::span<std::byte> backing) {
  std::unique_lock lock(mu_);
  return regions_.add_borrowed(base, backing);
}
Result<void> GuestMemory::LockedView::remove(std::uint64_t base) {
  std::unique_lock lock(mu_);
  return regions_.remove(base);
}

namespace {
// One wording for both orders (RAM added over a window, a window over RAM): both ranges, whose window, why,
// and what to do.
std::string overlap_message(const GuestRamRegion& ram, const ReservedMsiWindow& w) {
  return fmt::format("guest RAM {:#x}-{:#x} overlaps the host's MSI window {} of {} (IOMMU_RESV_SW_MSI): the host "
                     "maps the device's interrupt doorbell there in stage 2, and the guest must keep the window "
                     "identity-mapped in its stage 1 (docs/interrupts.md); move the RAM out of the window (for "
                     "example above {:#x}) or put the device behind another VM",
                     ram.gpa, ram.gpa + ram.size - 1, host::to_string(w.window), w.owner, w.window.last + 1);
}
}  // namespace

MsiWindowReservation::MsiWindowReservation(MsiWindowReservation&& o) noexcept
    : memory_(std::exchange(o.memory_, nullptr)), id_(std::exchange(o.id_, 0)) {}
MsiWindowReservation& MsiWindowReservation::operator=(MsiWindowReservation&& o) noexcept {
  if (this != &o) {
    if (memory_) memory_->release_msi_window(id_);
    memory_ = std::exchange(o.memory_, nullptr);
    id_ = std::exchange(o.id_, 0);
  }
  return *this;
}
MsiWindowReservation::~MsiWindowReservation() {
  if (memory_) memory_->release_msi_window(id_);
}

Result<MsiWindowReservation> GuestMemory::reserve_msi_window(const host::IovaRange& window, std::string owner) {
  std::lock_guard lock(regions_mu_);
  ReservedMsiWindow w{window, std::move(owner)};
  for (const auto& r : regions_)
    if (window.overlaps(r.gpa, r.size)) return fail(EADDRINUSE, kWhere, "{}", overlap_message(r, w));
  const std::uint64_t id = next_window_id_++;
  msi_windows_.emplace(id, std::move(w));
  return MsiWindowReservation(*this, id);
}

void GuestMemory::release_msi_window(std::uint64_t id) {
  std::lock_guard lock(regions_mu_);
  msi_windows_.erase(id);
}

std::vector<ReservedMsiWindow> GuestMemory::msi_windows() const {
  std::lock_guard lock(regions_mu_);
  std::vector<ReservedMsiWindow> out;
  for (const auto& [id, w] : msi_windows_) out.push_back(w);
  return out;
}

Result<void> GuestMemory::add_region(const GuestRamRegion& region) {
  std::lock_guard lock(regions_mu_);
  for (const auto& [id, w] : msi_windows_)
    if (w.window.overlaps(region.gpa, region.size)) return fail(EADDRINUSE, kWhere, "{}", overlap_message(region, w));
  return add(region);
}

Result<void> GuestMemory::remove_region(std::uint64_t gpa) {
  std::lock_guard lock(regions_mu_);
  const auto it = std::find_if(regions_.begin(), regions_.end(), [gpa](const GuestRamRegion& r) { return r.gpa == gpa; });
  if (it == regions_.end()) return fail(ENOENT, kWhere, "no guest RAM region starts at GPA {:#x}", gpa);
  // Dirty bits first (while tracking: what devices wrote there is kept for the next harvest), then the IOAS:
  // once it is unmapped no device DMA reaches the memory; then the vSMMU's view.
  dirty_->region_removing(it->gpa);
  if (auto u = host_->ioas_unmap(ioas_.id(), it->gpa, it->size); !u) {
    dirty_->region_added(it->gpa, it->size);  // still mapped: (while tracking) reported all dirty next round
    return fail(u.error(), kWhere, "unmapping guest RAM [{:#x}, +{:#x}) from IOAS {}", it->gpa, it->size, ioas_.id());
  }
  (void)view_.remove(it->gpa);
  regions_.erase(it);
  return {};
}

Result<void> GuestMemory::add(const GuestRamRegion& r) {
  if (r.size == 0 || r.gpa % kPage != 0 || r.size % kPage != 0 || r.host == nullptr)
    return fail(EINVAL, kWhere, "guest RAM region [{:#x}, +{:#x}) must be page aligned, non-empty, with a host mapping",
                r.gpa, r.size);
  if (auto v = view_.add_borrowed(r.gpa, std::span(r.host, r.size)); !v)
    return fail(v.error(), kWhere, "guest RAM region [{:#x}, +{:#x})", r.gpa, r.size);
  constexpr std::uint32_t flags =
      host::uapi::kIoasMapFixedIova | host::uapi::kIoasMapReadable | host::uapi::kIoasMapWriteable;
  auto m = r.fd >= 0 ? host_->ioas_map_file(ioas_.id(), r.fd, r.fd_offset, r.size, r.gpa, flags)
                     : host_->ioas_map(ioas_.id(), r.host, r.size, r.gpa, flags);
  if (!m) {
    (void)view_.remove(r.gpa);
    return fail(m.error(), kWhere, "mapping guest RAM [{:#x}, +{:#x}) into IOAS {} as stage 2", r.gpa, r.size,
                ioas_.id());
  }
  regions_.push_back(r);
  dirty_->region_added(r.gpa, r.size);
  return {};
}

Result<std::unique_ptr<GuestMemory>> GuestMemory::map(host::Host& host, std::span<const GuestRamRegion> regions) {
  std::unique_ptr<GuestMemory> g(new GuestMemory(host));
  auto ioas = host.ioas_alloc();
  if (!ioas) return fail(ioas.error(), kWhere, "allocating the IOAS for guest RAM");
  g->ioas_ = host::HostObject(host, *ioas);
  g->dirty_ = std::make_unique<DirtyTracker>(host, *ioas);
  g->view_.dirty = g->dirty_.get();
  for (const auto& r : regions)
    VSMMU_TRY(g->add(r));
  return g;
}

Result<std::unique_ptr<GuestMemory>> GuestMemory::allocate(host::Host& host, std::span<const GuestRamLayout> layout) {
  auto owned = std::make_unique<Owned>();
  std::vector<GuestRamRegion> regions;
  for (const auto& l : layout) {
    host::UniqueFd fd(::memfd_create("vsmmu-guest-ram", MFD_CLOEXEC));
    if (!fd) return fail(errno, kWhere, "memfd_create for guest RAM: {}", std::strerror(errno));
    if (::ftruncate(fd.get(), static_cast<off_t>(l.size)) != 0)
      return fail(errno, kWhere, "sizing guest RAM memfd to {:#x} bytes: {}", l.size, std::strerror(errno));
    void* addr = ::mmap(nullptr, l.size, PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), 0);
    if (addr == MAP_FAILED) return fail(errno, kWhere, "mapping {:#x} bytes of guest RAM: {}", l.size, std::strerror(errno));
    regions.push_back({l.gpa, l.size, fd.get(), 0, static_cast<std::byte*>(addr)});
    owned->mappings.push_back({std::move(fd), addr, l.size});
  }
  VSMMU_TRY_ASSIGN(auto g, map(host, regions));
  (g)->owned_ = std::move(owned);
  return g;
}

}  // namespace vsmmu::nesting

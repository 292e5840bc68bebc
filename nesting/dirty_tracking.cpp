#include "nesting/dirty_tracking.hpp"

#include <algorithm>
#include <bit>
#include <cstring>

#include "base/log.hpp"

namespace vsmmu::nesting {

namespace {
constexpr const char* kWhere = "vsmmu.dirty";
}  // namespace

const char* dirty_mode_name(DirtyMode m) {
  switch (m) {
    case DirtyMode::off: return "off";
    case DirtyMode::hardware: return "hardware";
    case DirtyMode::conservative: return "conservative";
  }
  return "?";
}

DirtyTracker::DirtyTracker(host::Host& host, host::ObjectId ioas) : host_(host), ioas_(ioas) {}

void DirtyTracker::set_all(std::byte* bitmap, std::uint64_t pages) {
  std::memset(bitmap, 0xff, pages / 8);
  if (pages % 8) bitmap[pages / 8] |= std::byte(static_cast<std::uint8_t>((1U << (pages % 8)) - 1));
}

std::optional<std::uint64_t> DirtyTracker::region_size(std::uint64_t region_gpa) const {
  std::lock_guard lock(mu_);
  const auto it = regions_.find(region_gpa);
  if (it == regions_.end()) return std::nullopt;
  return it->second.size;
}

bool DirtyTracker::any_untracked() const {
  return std::ranges::any_of(parents_, [](const Parent& p) { return !p.tracks; });
}

DirtyStatus DirtyTracker::status_locked() const {
  DirtyStatus s;
  s.parents = parents_.size();
  s.tracking = static_cast<std::size_t>(std::ranges::count_if(parents_, [](const Parent& p) { return p.tracks; }));
  if (!tracking()) return s;
  const auto it = std::ranges::find_if(parents_, [](const Parent& p) { return !p.tracks; });
  if (it == parents_.end()) {
    s.mode = DirtyMode::hardware;
    return s;
  }
  s.mode = DirtyMode::conservative;
  s.reason = fmt::format("{} cannot track dirty pages ({}): every page of guest RAM is reported dirty in every round, "
                         "so pre-copy rounds do not shrink (copy RAM once the devices stop, or use a kernel that "
                         "accepts NEST_PARENT|DIRTY_TRACKING)", it->label, it->why_not);
  return s;
}

DirtyStatus DirtyTracker::status() const {
  std::lock_guard lock(mu_);
  return status_locked();
}

Result<DirtyStatus> DirtyTracker::start() {
  std::lock_guard lock(mu_);
  if (tracking()) return fail(EALREADY, kWhere, "dirty tracking is already on");
  for (auto& p : parents_) {
    if (!p.tracks) continue;
    // SET_DIRTY_TRACKING(enable) also clears the parent's dirty bits (iopt_set_dirty_tracking).
    if (auto r = host_.set_dirty_tracking(p.hwpt, true); !r) {
      p.tracks = false;
      p.why_not = fmt::format("IOMMU_HWPT_SET_DIRTY_TRACKING failed: {}", r.error().message);
    }
  }
  const bool conservative = any_untracked();
  for (auto& [gpa, r] : regions_) {
    r.pending.assign(bitmap_bytes(r.size) / 8, 0);
    r.everything = conservative;
  }
  tracking_.store(true, std::memory_order_release);
  DirtyStatus s = status_locked();
  // The caller (vsmmud: naming its client) says so at warning level; in process, the reply carries it.
  if (s.mode == DirtyMode::conservative) log::info(kWhere, "dirty tracking on, conservative: {}", s.reason);
  else log::info(kWhere, "dirty tracking on: {} nest parent(s) track dirty pages in hardware", s.tracking);
  return s;
}

Result<void> DirtyTracker::stop() {
  std::lock_guard lock(mu_);
  if (!tracking()) return fail(EALREADY, kWhere, "dirty tracking is already off");
  tracking_.store(false, std::memory_order_release);
  for (auto& p : parents_)
    if (p.tracks)
      if (auto r = host_.set_dirty_tracking(p.hwpt, false); !r)
        log::error(kWhere, "turning dirty tracking off on {}: {}", p.label, r.error());
  std::erase_if(regions_, [](const auto& e) { return e.second.removed; });
  for (auto& [gpa, r] : regions_) {
    r.pending = {};
    r.everything = false;
  }
  log::info(kWhere, "dirty tracking off");
  return {};
}

bool DirtyTracker::read_parent(const Parent& p, std::uint64_t gpa, const Region& r, std::byte* words, bool no_clear) {
  auto got = host_.get_dirty_bitmap(p.hwpt, gpa, r.size, kPageSize, words, no_clear ? kDirtyNoClear : 0);
  if (got) return true;
  log::error(kWhere, "harvesting [{:#x}, +{:#x}) of IOAS {} from {}: {}; the region is reported all dirty", gpa, r.size,
             ioas_, p.label, got.error());
  return false;
}

Result<DirtyHarvest> DirtyTracker::harvest(std::uint64_t region_gpa, std::span<std::byte> bitmap, std::uint32_t flags) {
  std::lock_guard lock(mu_);
  if (flags & ~kDirtyNoClear)
    return fail(EINVAL, kWhere, "harvest flags {:#x}: only NO_CLEAR ({:#x}) is defined", flags, kDirtyNoClear);
  if (!tracking()) return fail(EINVAL, kWhere, "dirty tracking is off: start it before harvesting");
  const auto it = regions_.find(region_gpa);
  if (it == regions_.end()) return fail(ENOENT, kWhere, "no guest RAM region starts at GPA {:#x}", region_gpa);
  Region& r = it->second;
  const std::uint64_t bytes = bitmap_bytes(r.size);
  if (bitmap.size() < bytes)
    return fail(EINVAL, kWhere, "the bitmap for region [{:#x}, +{:#x}) needs {} bytes, not {}", region_gpa, r.size, bytes,
                bitmap.size());
  const bool no_clear = flags & kDirtyNoClear;
  DirtyHarvest h;
  h.pages = r.size / kPageSize;
  h.removed = r.removed;
  std::memcpy(bitmap.data(), r.pending.data(), bytes);
  bool everything = r.everything;
  if (!r.removed)
    for (const auto& p : parents_)
      if (p.tracks && !read_parent(p, region_gpa, r, bitmap.data(), no_clear)) everything = true;
  if (everything) set_all(bitmap.data(), h.pages);  // bits past the pages stay 0 (pending has none there)
  h.conservative = everything;
  for (std::uint64_t i = 0; i < bytes; i += 8) {
    std::uint64_t w = 0;
    std::memcpy(&w, bitmap.data() + i, 8);
    h.dirty += static_cast<std::uint64_t>(std::popcount(w));
  }
  if (!no_clear) {
    if (r.removed) {
      regions_.erase(it);
    } else {
      std::ranges::fill(r.pending, 0);
      r.everything = any_untracked();
    }
  }
  return h;
}

void DirtyTracker::parent_added(host::ObjectId hwpt, bool tracks, std::string label, std::string why_not) {
  std::lock_guard lock(mu_);
  Parent p{hwpt, tracks, std::move(label), std::move(why_not)};
  if (tracking()) {
    if (p.tracks)
      if (auto r = host_.set_dirty_tracking(p.hwpt, true); !r) {
        p.tracks = false;
        p.why_not = fmt::format("IOMMU_HWPT_SET_DIRTY_TRACKING failed: {}", r.error().message);
      }
    if (!p.tracks) {
      // Its devices write guest RAM untracked from now on: conservative until it goes.
      for (auto& [gpa, r] : regions_) r.everything = true;
      log::warn(kWhere, "{} joined while dirty tracking is on but cannot track ({}): every page is reported dirty "
                "from now on", p.label, p.why_not);
    }
  }
  parents_.push_back(std::move(p));
}

void DirtyTracker::parent_removing(host::ObjectId hwpt) {
  std::lock_guard lock(mu_);
  const auto it = std::ranges::find_if(parents_, [hwpt](const Parent& p) { return p.hwpt == hwpt; });
  if (it == parents_.end()) return;
  if (tracking() && it->tracks)
    for (auto& [gpa, r] : regions_)
      if (!r.removed && !read_parent(*it, gpa, r, reinterpret_cast<std::byte*>(r.pending.data()), false))
        r.everything = true;
  parents_.erase(it);
}

void DirtyTracker::region_added(std::uint64_t gpa, std::uint64_t size) {
  std::lock_guard lock(mu_);
  Region r;
  r.size = size;
  if (tracking()) {
    // New RAM while migrating: all of it is new to the destination.
    r.pending.assign(bitmap_bytes(size) / 8, 0);
    r.everything = true;
  }
  regions_[gpa] = std::move(r);
}

void DirtyTracker::region_removing(std::uint64_t gpa) {
  std::lock_guard lock(mu_);
  const auto it = regions_.find(gpa);
  if (it == regions_.end()) return;
  if (!tracking()) {
    regions_.erase(it);
    return;
  }
  Region& r = it->second;
  for (const auto& p : parents_)
    if (p.tracks && !read_parent(p, gpa, r, reinterpret_cast<std::byte*>(r.pending.data()), false)) r.everything = true;
  r.removed = true;
}

void DirtyTracker::log_cpu_write(std::uint64_t gpa, std::uint64_t length) {
  if (length == 0) return;
  std::lock_guard lock(mu_);
  if (!tracking()) return;
  auto it = regions_.upper_bound(gpa);
  if (it == regions_.begin()) return;
  --it;
  Region& r = it->second;
  if (r.removed || gpa - it->first >= r.size) return;
  const std::uint64_t first = (gpa - it->first) / kPageSize;
  const std::uint64_t last = std::min(gpa - it->first + length - 1, r.size - 1) / kPageSize;
  for (std::uint64_t page = first; page <= last; ++page) r.pending[page / 64] |= 1ULL << (page % 64);
}

}  // namespace vsmmu::nesting

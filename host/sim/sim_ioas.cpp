// The simulated kernel, IOAS: alloc, map, map_file, unmap, IOVA ranges, huge pages (drivers/iommu/iommufd/ioas.c,
// io_pagetable.c).
#include "host/sim/sim_host.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cstdio>
#include <cstring>

#include <fmt/ranges.h>

#include "base/try.hpp"
#include "host/sim/sim_state.hpp"
#include "base/log.hpp"

namespace vsmmu::host::sim {

namespace {
constexpr const char* kLog = "sim.host";

std::uint64_t round_up(std::uint64_t v, std::uint64_t a) { return (v + a - 1) & ~(a - 1); }

// roundup_pow_of_two for the IOVA allocator's alignment guess.
std::uint64_t pow2_ceil(std::uint64_t v) { return v <= 1 ? 1 : std::bit_ceil(v); }

}  // namespace

// Whether every page of [p, p + len) is mapped readable in this process, as the kernel's pin of user pages
// needs (it fails with EFAULT on a hole or a PROT_NONE page): the VMAs of /proc/self/maps must cover it.
bool user_range_mapped(const void* p, std::uint64_t len) {
  std::uint64_t want = reinterpret_cast<std::uintptr_t>(p) & ~(kPageSize - 1);
  const std::uint64_t end = round_up(reinterpret_cast<std::uintptr_t>(p) + len, kPageSize);
  std::FILE* maps = std::fopen("/proc/self/maps", "re");
  if (!maps) return false;
  char line[512];
  while (want < end && std::fgets(line, sizeof line, maps)) {
    unsigned long long lo = 0, hi = 0;
    char perms[5] = {};
    if (std::sscanf(line, "%llx-%llx %4s", &lo, &hi, perms) != 3) continue;
    if (hi <= want) continue;
    if (lo > want || perms[0] != 'r') break;  // a hole, or a page the kernel could not pin
    want = hi;
  }
  std::fclose(maps);
  return want >= end;
}

// ---------------------------------------------------------------------------------------------------------
// IOAS (ioas.c, io_pagetable.c)

Result<ObjectId> SimHost::ioas_alloc() {
  std::lock_guard lock(s_->mu);
  if (auto e = s_->inject("IOMMU_IOAS_ALLOC")) return std::unexpected(*e);
  return s_->insert(IoasObj{});
}

namespace {
// __alloc_iova_check_range: the first address from `start` with the alignment and page offset where
// `length` bytes fit below `last`.
std::optional<std::uint64_t> fit(std::uint64_t start, std::uint64_t last, std::uint64_t length, std::uint64_t align,
                                 std::uint64_t page_offset) {
  if (start > kUlongMax - (align - 1)) return std::nullopt;
  std::uint64_t a = ((start + align - 1) & ~(align - 1)) | page_offset;
  if (a >= last || last - a < length - 1) return std::nullopt;
  return a;
}

}  // namespace

Result<std::uint64_t> SimHost::State::map_area(ObjectId ioas_id, Area area, std::span<std::byte> backing,
                                               std::uint64_t iova, bool fixed, std::uint64_t addr_hint,
                                               const char* call) {
  auto& ioas = *get<IoasObj>(ioas_id);
  const std::uint64_t length = area.length;
  const std::uint64_t align = ioas.alignment();
  if ((length & (align - 1)) != 0 || length == 0)
    return fail(EINVAL, call, "length {:#x} is not a multiple of IOAS {}'s alignment {:#x}", length, ioas_id, align);
  const std::uint64_t page_offset = addr_hint % kPageSize;
  if (!fixed) {
    // iopt_alloc_iova: keep the alignment of the address (THP-friendly), at most 2 MiB; never IOVA 0.
    if (length >= kUlongMax / 2) return fail(EOVERFLOW, call, "length {:#x} is too large to place", length);
    std::uint64_t want = addr_hint ? std::min<std::uint64_t>(pow2_ceil(length), 1ULL << std::countr_zero(addr_hint)) : pow2_ceil(length);
    want = std::min<std::uint64_t>(want, 2ULL << 20);
    if (want < align) return fail(EINVAL, call, "the address's alignment {:#x} is below IOAS {}'s {:#x}", want, ioas_id, align);
    // Walk the holes between reserved ranges and areas inside [PAGE_SIZE, ULONG_MAX - PAGE_SIZE].
    std::vector<std::pair<std::uint64_t, std::uint64_t>> used;
    for (const auto& r : ioas.reserved) used.emplace_back(r.start, r.last);
    for (const auto& [a, ar] : ioas.areas) used.emplace_back(ar.iova, ar.last());
    std::sort(used.begin(), used.end());
    std::uint64_t cursor = kPageSize;
    const std::uint64_t end = kUlongMax - kPageSize;
    std::optional<std::uint64_t> found;
    for (const auto& [s, l] : used) {
      if (l < cursor) continue;
      if (s > cursor) found = fit(cursor, std::min(s - 1, end), length, want, page_offset);
      if (found) break;
      if (l >= end) break;
      cursor = l + 1;
    }
    if (!found && cursor < end) found = fit(cursor, end, length, want, page_offset);
    if (!found) return fail(ENOSPC, call, "IOAS {} has no free IOVA range of {:#x} bytes", ioas_id, length);
    iova = *found;
  } else {
    // iopt_check_iova
    if ((iova & (align - 1)) != 0)
      return fail(EINVAL, call, "IOVA {:#x} is not aligned to IOAS {}'s {:#x}", iova, ioas_id, align);
    if (iova > kUlongMax - (length - 1)) return fail(EOVERFLOW, call, "[{:#x}, +{:#x}) wraps", iova, length);
    const std::uint64_t last = iova + length - 1;
    for (const auto& r : ioas.reserved)
      if (r.start <= last && r.last >= iova)
        return fail(EINVAL, call, "[{:#x}, {:#x}] overlaps IOAS {}'s reserved range [{:#x}, {:#x}] ({}); see "
                    "IOMMU_IOAS_IOVA_RANGES", iova, last, ioas_id, r.start, r.last,
                    r.kind == Reservation::Kind::sw_msi ? "the SMMU's MSI window" : "outside the domain's aperture");
    for (const auto& [a, ar] : ioas.areas)
      if (ar.iova <= last && ar.last() >= iova)
        return fail(EEXIST, call, "[{:#x}, {:#x}] overlaps the mapping [{:#x}, {:#x}] of IOAS {}; unmap it first", iova,
                    last, ar.iova, ar.last(), ioas_id);
  }
  // iopt_insert_area
  if ((page_offset & (align - 1)) != 0)
    return fail(EINVAL, call, "the memory starts at page offset {:#x}, not aligned to IOAS {}'s {:#x}", page_offset,
                ioas_id, align);
  area.iova = iova;
  area.page_offset = page_offset;
  // A domain keeps the ITS doorbell's page (iommufd_sw_msi_install) after its devices detached and the SW MSI
  // reservation went with them: mapping over it fails in iommu_map, as the page table holds a leaf there.
  for (ObjectId h : ioas.domains) {
    const auto* p = get<HwptPagingObj>(h);
    const std::uint64_t at = hw.smmus[p->smmu].msi_window.start;
    if (p->present_sw_msi && iova < at + kPageSize && iova + (length - 1) >= at)
      return fail(EEXIST, call, "[{:#x}, +{:#x}) overlaps IOVA {:#x}, where HWPT {} maps the ITS doorbell page for "
                  "MSIs; map elsewhere or destroy that HWPT first", iova, length, at, h);
  }

  // Place the memory in host-physical memory with the IOVA's offset modulo 1 GiB, so blocks can map it.
  VSMMU_TRY_ASSIGN(auto pa, mem.place(backing, 1ULL << 30, iova));
  area.pa = pa;

  // iopt_fill_domains_pages: every domain of the IOAS maps it; undo on failure.
  std::vector<S2Domain*> filled;
  for (ObjectId h : ioas.domains) {
    auto& dom = *get<HwptPagingObj>(h)->domain;
    if (auto r = dom.map(iova, area.pa, length, area.read, area.write, ioas.huge_pages); !r) {
      for (auto* f : filled) (void)f->unmap(iova, length);
      mem.remove(area.pa);
      return fail(r.error().err, call, "filling HWPT {}'s page table failed: {}", h, r.error().message);
    }
    filled.push_back(&dom);
  }
  ioas.areas.emplace(iova, std::move(area));
  return iova;
}

void SimHost::State::unmap_area(IoasObj& ioas, std::map<std::uint64_t, Area>::iterator it) {
  Area& a = it->second;
  for (ObjectId h : ioas.domains) {
    if (auto r = get<HwptPagingObj>(h)->domain->unmap(a.iova, a.length); !r)
      log::error(kLog, "unmapping [{:#x}, {:#x}] from HWPT {}: {}", a.iova, a.last(), h, r.error());
  }
  mem.remove(a.pa);
  ioas.areas.erase(it);
}

namespace {
Result<void> check_map_flags(std::uint32_t flags, std::uint64_t iova, std::uint64_t length, const char* call) {
  constexpr std::uint32_t kKnown = uapi::kIoasMapFixedIova | uapi::kIoasMapWriteable | uapi::kIoasMapReadable;
  if (flags & ~kKnown)
    return fail(EOPNOTSUPP, call, "flags {:#x} has bits the kernel does not know (FIXED_IOVA, WRITEABLE, READABLE)", flags);
  if (iova >= kUlongMax || length >= kUlongMax) return fail(EOVERFLOW, call, "iova or length is ULONG_MAX");
  if (!(flags & (uapi::kIoasMapWriteable | uapi::kIoasMapReadable)))
    return fail(EINVAL, call, "a mapping must be READABLE, WRITEABLE or both");
  return {};
}

}  // namespace

Result<std::uint64_t> SimHost::ioas_map(ObjectId ioas, void* user_va, std::uint64_t length, std::uint64_t iova,
                                        std::uint32_t flags) {
  constexpr const char* kCall = "IOMMU_IOAS_MAP";
  std::lock_guard lock(s_->mu);
  if (auto e = s_->inject(kCall)) return std::unexpected(*e);
  VSMMU_TRY(check_map_flags(flags, iova, length, kCall));
  auto* io = s_->get<IoasObj>(ioas);
  if (!io) return fail(ENOENT, kCall, "ioas_id {} is not an IOAS", ioas);
  // iopt_alloc_user_pages
  const auto va = reinterpret_cast<std::uintptr_t>(user_va);
  if (length == 0 || length > kUlongMax - kPageSize) return fail(EINVAL, kCall, "length {:#x} is not mappable", length);
  if (va > kUlongMax - length) return fail(EOVERFLOW, kCall, "user_va {:#x} + length {:#x} wraps", va, length);
  // Pinning happens when a domain is filled; the simulated kernel checks the pages are there at that point.
  if (!io->domains.empty() && !user_range_mapped(user_va, length))
    return fail(EFAULT, kCall, "user memory [{:#x}, +{:#x}) is not all mapped in this process", va, length);
  Area a;
  a.length = length;
  a.read = flags & uapi::kIoasMapReadable;
  a.write = flags & uapi::kIoasMapWriteable;
  a.user_va = user_va;
  return s_->map_area(ioas, std::move(a), {static_cast<std::byte*>(user_va), length}, iova,
                      flags & uapi::kIoasMapFixedIova, va, kCall);
}

Result<std::uint64_t> SimHost::ioas_map_file(ObjectId ioas, int fd, std::uint64_t start, std::uint64_t length,
                                             std::uint64_t iova, std::uint32_t flags) {
  constexpr const char* kCall = "IOMMU_IOAS_MAP_FILE";
  std::lock_guard lock(s_->mu);
  if (auto e = s_->inject(kCall)) return std::unexpected(*e);
  VSMMU_TRY(check_map_flags(flags, iova, length, kCall));
  if (!s_->get<IoasObj>(ioas)) return fail(ENOENT, kCall, "ioas_id {} is not an IOAS", ioas);
  struct stat st {};
  if (fd < 0 || ::fstat(fd, &st) != 0) return fail(EBADF, kCall, "fd {} is not an open file", fd);
  // Pinned through memfd_pin_folios: shmem (memfd) or hugetlbfs only; seals are the mark of those here.
  if (::fcntl(fd, F_GET_SEALS) < 0)
    return fail(EINVAL, kCall, "fd {} is not a memfd (MAP_FILE maps memfd/shmem memory)", fd);
  const bool writable = flags & uapi::kIoasMapWriteable;
  if (writable && (::fcntl(fd, F_GETFL) & O_ACCMODE) == O_RDONLY)
    return fail(EPERM, kCall, "fd {} is open read-only but the mapping is WRITEABLE", fd);
  if (length == 0 || length > kUlongMax - kPageSize) return fail(EINVAL, kCall, "length {:#x} is not mappable", length);
  if (start > kUlongMax - length) return fail(EOVERFLOW, kCall, "start {:#x} + length {:#x} wraps", start, length);
  if (start + length > static_cast<std::uint64_t>(st.st_size))
    return fail(EINVAL, kCall, "[{:#x}, +{:#x}) goes past the end of the memfd ({:#x} bytes)", start, length,
                st.st_size);
  const std::uint64_t first = start & ~(kPageSize - 1);
  auto region = MappedRegion::file(fd, first, round_up(start + length, kPageSize) - first, writable);
  if (!region) return fail(region.error().err, kCall, "{}", region.error().message);
  auto backing = region->bytes().subspan(start - first, length);
  Area a;
  a.length = length;
  a.read = flags & uapi::kIoasMapReadable;
  a.write = writable;
  a.file_map = std::move(*region);
  return s_->map_area(ioas, std::move(a), backing, iova, flags & uapi::kIoasMapFixedIova, start, kCall);
}

Result<std::uint64_t> SimHost::ioas_unmap(ObjectId ioas, std::uint64_t iova, std::uint64_t length) {
  constexpr const char* kCall = "IOMMU_IOAS_UNMAP";
  std::lock_guard lock(s_->mu);
  auto* io = s_->get<IoasObj>(ioas);
  if (!io) return fail(ENOENT, kCall, "ioas_id {} is not an IOAS", ioas);
  std::uint64_t first = 0, last = kUlongMax;
  if (!(iova == 0 && length == kUlongMax)) {
    if (iova >= kUlongMax || length >= kUlongMax) return fail(EOVERFLOW, kCall, "iova or length is ULONG_MAX");
    if (length == 0) return fail(EINVAL, kCall, "length is 0");
    if (iova > kUlongMax - (length - 1)) return fail(EOVERFLOW, kCall, "[{:#x}, +{:#x}) wraps", iova, length);
    first = iova;
    last = iova + length - 1;
  }
  // iopt_unmap_iova_range: whole areas only; an area reaching outside the range stops it with ENOENT (what
  // was unmapped before stays unmapped). No area at all is success with 0 bytes.
  std::uint64_t unmapped = 0;
  for (;;) {
    auto it = io->areas.lower_bound(first);
    if (it != io->areas.begin() && std::prev(it)->second.last() >= first) it = std::prev(it);
    if (it == io->areas.end() || it->second.iova > last) break;
    if (it->second.iova < first || it->second.last() > last)
      return fail(ENOENT, kCall, "[{:#x}, {:#x}] cuts the mapping [{:#x}, {:#x}]; IOAS mappings are unmapped whole "
                  "({:#x} bytes were unmapped before it)", first, last, it->second.iova, it->second.last(), unmapped);
    unmapped += it->second.length;
    s_->unmap_area(*io, it);
  }
  return unmapped;
}

Result<bool> SimHost::ioas_huge_pages(ObjectId ioas, std::optional<bool> set) {
  constexpr const char* kCall = "IOMMU_OPTION";
  std::lock_guard lock(s_->mu);
  auto* io = s_->get<IoasObj>(ioas);
  if (!io) return fail(ENOENT, kCall, "object_id {} is not an IOAS", ioas);
  if (set && !*set && io->huge_pages && !io->domains.empty() && !io->areas.empty())
    return fail(EINVAL, kCall, "IOAS {} already has mappings in paging HWPTs; turn large pages off before mapping", ioas);
  if (set && !*set && io->huge_pages) {
    // iopt_calculate_iova_alignment: PAGE_SIZE from now; what is mapped must already be page-aligned.
    for (const auto& [iova, a] : io->areas)
      if (((a.iova | a.length | a.page_offset) & (kPageSize - 1)) != 0)
        return fail(EADDRINUSE, kCall, "IOAS {} maps [{:#x}, +{:#x}), not in whole pages", ioas, a.iova, a.length);
  }
  if (set) io->huge_pages = *set;
  return io->huge_pages;
}

Result<std::vector<IovaRange>> SimHost::ioas_iova_ranges(ObjectId ioas) {
  std::lock_guard lock(s_->mu);
  auto* io = s_->get<IoasObj>(ioas);
  if (!io) return fail(ENOENT, "IOMMU_IOAS_IOVA_RANGES", "ioas_id {} is not an IOAS", ioas);
  // The holes between reserved ranges.
  std::vector<std::pair<std::uint64_t, std::uint64_t>> res;
  for (const auto& r : io->reserved) res.emplace_back(r.start, r.last);
  std::sort(res.begin(), res.end());
  std::vector<IovaRange> out;
  std::uint64_t cursor = 0;
  bool done = false;
  for (const auto& [s, l] : res) {
    if (l < cursor) continue;
    if (s > cursor) out.push_back({cursor, s - 1});
    if (l == kUlongMax) {
      done = true;
      break;
    }
    cursor = std::max(cursor, l + 1);
  }
  if (!done) out.push_back({cursor, kUlongMax});
  return out;
}

}  // namespace vsmmu::host::sim

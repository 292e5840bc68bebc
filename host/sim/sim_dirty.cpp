// The simulated kernel, dirty tracking: IOMMU_HWPT_SET_DIRTY_TRACKING and IOMMU_HWPT_GET_DIRTY_BITMAP
// (drivers/iommu/iommufd/hw_pagetable.c, io_pagetable.c iopt_read_and_clear_dirty_data, iova_bitmap.c).
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

// ---------------------------------------------------------------------------------------------------------
// Dirty tracking (iommufd_hwpt_set_dirty_tracking, iommufd_hwpt_get_dirty_bitmap, iova_bitmap)

Result<void> SimHost::set_dirty_tracking(ObjectId hwpt, bool enable) {
  constexpr const char* kCall = "IOMMU_HWPT_SET_DIRTY_TRACKING";
  std::lock_guard lock(s_->mu);
  auto* p = s_->get<HwptPagingObj>(hwpt);
  if (!p) return fail(ENOENT, kCall, "hwpt_id {} is not a paging HWPT", hwpt);
  if (!p->domain->dirty_tracking())
    return fail(EOPNOTSUPP, kCall, "paging HWPT {} was not allocated with DIRTY_TRACKING", hwpt);
  if (!enable) return {};  // arm-smmu-v3 tracks whenever the domain can: turning it off changes nothing
  // iopt_set_dirty_tracking: clear every dirty bit for a clean snapshot.
  auto& io = *s_->get<IoasObj>(p->ioas);
  for (const auto& [iova, a] : io.areas)
    VSMMU_TRY(p->domain->read_and_clear_dirty(a.iova, a.length, false, [](std::uint64_t, std::uint64_t) {}));
  return {};
}

Result<void> SimHost::get_dirty_bitmap(ObjectId hwpt, std::uint64_t iova, std::uint64_t length, std::uint64_t page_size,
                                       std::byte* bitmap, std::uint32_t flags) {
  constexpr const char* kCall = "IOMMU_HWPT_GET_DIRTY_BITMAP";
  std::lock_guard lock(s_->mu);
  if (auto e = s_->inject(kCall)) return std::unexpected(*e);
  if (flags & ~uapi::kDirtyBitmapNoClear) return fail(EOPNOTSUPP, kCall, "flags {:#x}: only NO_CLEAR is known", flags);
  auto* p = s_->get<HwptPagingObj>(hwpt);
  if (!p) return fail(ENOENT, kCall, "hwpt_id {} is not a paging HWPT", hwpt);
  auto& io = *s_->get<IoasObj>(p->ioas);
  // iommufd_check_iova_range
  // check_add_overflow(iova, length - 1): length 0 overflows unless iova is 0, and [0, U64_MAX] is never
  // wholly mapped.
  if (length == 0 && iova == 0) return fail(EINVAL, kCall, "length 0 at IOVA 0 asks for the whole address space");
  if (length == 0 || iova > kUlongMax - (length - 1))
    return fail(EOVERFLOW, kCall, "[{:#x}, +{:#x}) wraps the address space", iova, length);
  const std::uint64_t last = iova + length - 1;
  const std::uint64_t align = io.alignment();
  if ((iova & (align - 1)) || ((last + 1) & (align - 1)))
    return fail(EINVAL, kCall, "[{:#x}, {:#x}] is not aligned to the IOMMU page {:#x}", iova, last, align);
  if (page_size == 0 || !std::has_single_bit(page_size))
    return fail(EINVAL, kCall, "page_size {:#x} is not a power of two", page_size);
  if ((iova & (page_size - 1)) || ((last + 1) & (page_size - 1)))
    return fail(EINVAL, kCall, "[{:#x}, {:#x}] is not aligned to page_size {:#x}", iova, last, page_size);
  if (!p->domain->dirty_tracking())
    return fail(EOPNOTSUPP, kCall, "paging HWPT {} was not allocated with DIRTY_TRACKING", hwpt);
  if (!bitmap) return fail(EFAULT, kCall, "the bitmap pointer is NULL");
  // iopt_for_each_contig_area: the range must be mapped without holes.
  std::vector<const Area*> areas;
  std::uint64_t cursor = iova;
  auto it = io.areas.upper_bound(iova);
  if (it != io.areas.begin()) --it;
  for (; it != io.areas.end() && cursor <= last; ++it) {
    if (it->second.last() < cursor) continue;
    if (it->second.iova > cursor) break;
    areas.push_back(&it->second);
    if (it->second.last() >= last) {
      cursor = last;
      break;
    }
    cursor = it->second.last() + 1;
  }
  if (areas.empty() || cursor != last || areas.back()->last() < last)
    return fail(EINVAL, kCall, "[{:#x}, {:#x}] is not entirely mapped in IOAS {} (gap at {:#x})", iova, last, p->ioas,
                cursor);
  // One bit per page_size page from iova (bit i: bit i % 8 of byte i / 8 from the pointer, whatever its
  // alignment); the kernel only sets bits, the caller clears the bitmap.
  auto record = [&](std::uint64_t ia, std::uint64_t bytes) {
    const std::uint64_t lo = std::max(ia, iova);
    const std::uint64_t hi = std::min(ia + bytes - 1, last);
    if (lo > hi) return;
    std::uint64_t bit = (lo - iova) / page_size;
    const std::uint64_t end = (hi - iova) / page_size + 1;
    for (; bit < end && bit % 8 != 0; ++bit) bitmap[bit / 8] |= std::byte(static_cast<std::uint8_t>(1U << (bit % 8)));
    if (end - bit >= 8) {  // a block's whole bytes at once
      std::memset(bitmap + bit / 8, 0xff, (end - bit) / 8);
      bit += (end - bit) / 8 * 8;
    }
    for (; bit < end; ++bit) bitmap[bit / 8] |= std::byte(static_cast<std::uint8_t>(1U << (bit % 8)));
  };
  const bool no_clear = flags & uapi::kDirtyBitmapNoClear;
  for (const Area* a : areas) {
    const std::uint64_t lo = std::max(a->iova, iova);
    const std::uint64_t hi = std::min(a->last(), last);
    VSMMU_TRY(p->domain->read_and_clear_dirty(lo, hi - lo + 1, no_clear, record));
  }
  return {};
}

}  // namespace vsmmu::host::sim

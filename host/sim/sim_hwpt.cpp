// The simulated kernel, HWPTs: paging (and nest parent) and nested allocation (drivers/iommu/iommufd/hw_pagetable.c,
// arm-smmu-v3.c arm_smmu_domain_alloc_paging_flags, arm-smmu-v3-iommufd.c arm_vsmmu_alloc_domain_nested).
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
// Paging HWPTs (iommufd_hwpt_paging_alloc, arm_smmu_domain_alloc_paging_flags, iopt_table_add_domain)

Result<std::unique_ptr<S2Domain>> SimHost::State::new_domain(std::size_t smmu, IoasObj& ioas, ObjectId ioas_id,
                                                             ObjectId hwpt_id, S2Domain::Options options,
                                                             const char* call) {
  auto dom = S2Domain::create(*smmus[smmu], options);
  if (!dom) return fail(dom.error().err, call, "{}", dom.error().message);
  // iopt_table_add_domain: existing mappings must suit the IOMMU page size and the aperture.
  for (const auto& [iova, a] : ioas.areas) {
    if (((a.iova | a.length | a.page_offset) & (kPageSize - 1)) != 0)
      return fail(EADDRINUSE, call, "IOAS {} holds the mapping [{:#x}, +{:#x}), not aligned to the 4KB IOMMU page",
                  ioas_id, a.iova, a.length);
    if (a.last() > (*dom)->aperture_last())
      return fail(EADDRINUSE, call, "IOAS {} maps [{:#x}, {:#x}], beyond SMMU \"{}\"'s {}-bit input range", ioas_id,
                  a.iova, a.last(), hw.smmus[smmu].name, smmus[smmu]->features().ias_bits);
  }
  // iopt_fill_domain: pins user memory now (EFAULT if it is gone).
  for (const auto& [iova, a] : ioas.areas) {
    if (a.user_va && !user_range_mapped(a.user_va, a.length))
      return fail(EFAULT, call, "IOAS {} maps user memory [{:#x}, +{:#x}) that is no longer mapped in this process",
                  ioas_id, reinterpret_cast<std::uintptr_t>(a.user_va), a.length);
    if (auto r = (*dom)->map(a.iova, a.pa, a.length, a.read, a.write, ioas.huge_pages); !r)
      return fail(r.error().err, call, "filling the new page table failed: {}", r.error().message);
  }
  ioas.reserved.push_back({(*dom)->aperture_last() + 1, kUlongMax, Reservation::Kind::aperture, hwpt_id});
  return dom;
}

Result<ObjectId> SimHost::State::alloc_paging(ObjectId ioas_id, std::size_t smmu, std::uint32_t flags, bool auto_domain,
                                              const char* call) {
  S2Domain::Options o;
  o.nest_parent = flags & uapi::kHwptAllocNestParent;
  o.dirty_tracking = flags & uapi::kHwptAllocDirtyTracking;
  const ObjectId id = alloc_id();
  auto& ioas = *get<IoasObj>(ioas_id);
  VSMMU_TRY_ASSIGN(auto dom, new_domain(smmu, ioas, ioas_id, id, o, call));
  HwptPagingObj p;
  p.ioas = ioas_id;
  p.smmu = smmu;
  p.auto_domain = auto_domain;
  p.domain = std::move(dom);
  objects.emplace(id, std::move(p));
  get<IoasObj>(ioas_id)->domains.push_back(id);
  return id;
}

void SimHost::State::destroy_paging(ObjectId id) {
  auto* p = get<HwptPagingObj>(id);
  if (auto* io = get<IoasObj>(p->ioas)) {
    std::erase(io->domains, id);
    release_reservations(*io, Reservation::Kind::aperture, id);
  }
  objects.erase(id);  // the domain's destructor drops its TLB entries and frees its VMID and tables
}

Result<ObjectId> SimHost::hwpt_alloc(const HwptAllocRequest& req) {
  constexpr const char* kCall = "IOMMU_HWPT_ALLOC";
  std::lock_guard lock(s_->mu);
  if (auto e = s_->inject(kCall)) return std::unexpected(*e);
  const std::size_t len = req.data.size();
  if ((req.data_type == uapi::kHwptDataNone && len) || (req.data_type != uapi::kHwptDataNone && !len))
    return fail(EINVAL, kCall, "data_type {} with data_len {}: data_type NONE takes no data, any other type needs it",
                req.data_type, len);
  auto* d = s_->get<DeviceObj>(req.dev_id);
  if (!d) return fail(ENOENT, kCall, "dev_id {} is not a bound device", req.dev_id);
  auto it = s_->objects.find(req.pt_id);
  if (it == s_->objects.end()) return fail(EINVAL, kCall, "pt_id {} names no object", req.pt_id);
  const ObjType t = s_->type_of(it->second);
  const std::uint32_t flags = req.flags | (req.fault_id ? uapi::kHwptAllocFaultIdValid : 0);
  const std::size_t dev_smmu = s_->smmu_of_spec(d->spec);
  auto& drv = *s_->smmus[dev_smmu];
  const auto& f = drv.features();
  const std::string dev_desc = s_->describe_device(*d, req.dev_id);

  // The fault queue, if named, is looked up after the HWPT exists (iommufd_get_fault: ENOENT).
  auto check_fault = [&]() -> Result<void> {
    if (req.fault_id && !s_->get<FaultObj>(*req.fault_id))
      return fail(ENOENT, kCall, "fault_id {} is not a fault queue", *req.fault_id);
    return {};
  };

  if (t == ObjType::ioas) {
    constexpr std::uint32_t kValid = uapi::kHwptAllocNestParent | uapi::kHwptAllocDirtyTracking |
                                     uapi::kHwptAllocFaultIdValid | uapi::kHwptAllocPasid;
    if (flags & ~kValid) return fail(EOPNOTSUPP, kCall, "flags {:#x} has bits the kernel does not know", flags);
    if ((flags & uapi::kHwptAllocDirtyTracking) && !f.dbm_capable())
      return fail(EOPNOTSUPP, kCall, "DIRTY_TRACKING: SMMU \"{}\" of {} cannot track dirty pages ({}); "
                  "GET_HW_INFO's capabilities say so", s_->hw.smmus[dev_smmu].name, dev_desc,
                  !f.hd ? "no HTTU dirty state (IDR0.HTTU < 2)" : "its table walks are not coherent (IDR0.COHACC = 0)");
    // arm_smmu_domain_alloc_paging_flags
    if (len) return fail(EOPNOTSUPP, kCall, "a paging HWPT on arm-smmu-v3 takes no driver data (data_type {})", req.data_type);
    const std::uint32_t paging = flags & ~uapi::kHwptAllocFaultIdValid;
    switch (paging) {
      case 0: break;
      case uapi::kHwptAllocDirtyTracking:
      case uapi::kHwptAllocDirtyTracking | uapi::kHwptAllocPasid:
      case uapi::kHwptAllocPasid:
        if (!f.trans_s1)
          return fail(EOPNOTSUPP, kCall, "flags {:#x} need a stage-1 domain and SMMU \"{}\" has no stage 1", paging,
                      s_->hw.smmus[dev_smmu].name);
        break;
      case uapi::kHwptAllocNestParent:
        if (!f.nesting)
          return fail(EOPNOTSUPP, kCall, "NEST_PARENT: SMMU \"{}\" of {} cannot nest: {}", s_->hw.smmus[dev_smmu].name,
                      dev_desc, f.nesting_off);
        break;
      case uapi::kHwptAllocNestParent | uapi::kHwptAllocDirtyTracking:
        if (!s_->kernel.nest_parent_dirty_tracking)
          return fail(EOPNOTSUPP, kCall, "NEST_PARENT|DIRTY_TRACKING: kernel profile \"{}\" has no stage-2 dirty "
                      "tracking for nesting (upstream refuses it); use kernel profile \"nested-dirty\" to build "
                      "against it", s_->kernel.name);
        if (!f.nesting)
          return fail(EOPNOTSUPP, kCall, "NEST_PARENT: SMMU \"{}\" of {} cannot nest: {}", s_->hw.smmus[dev_smmu].name,
                      dev_desc, f.nesting_off);
        break;
      default:
        return fail(EOPNOTSUPP, kCall, "flags {:#x}: arm-smmu-v3 accepts 0, NEST_PARENT, DIRTY_TRACKING, PASID and "
                    "DIRTY_TRACKING|PASID{}", paging, s_->kernel.nest_parent_dirty_tracking ? ", NEST_PARENT|DIRTY_TRACKING" : "");
    }
    VSMMU_TRY(check_fault());
    auto id = s_->alloc_paging(req.pt_id, dev_smmu, flags, false, kCall);
    if (!id) return id;
    if (req.fault_id) s_->get<HwptPagingObj>(*id)->fault = req.fault_id;
    return id;
  }
  if (t == ObjType::hwpt_paging) {
    // iommufd_hwpt_nested_alloc on a parent HWPT: arm-smmu-v3 allocates nested domains on a vIOMMU only.
    return fail(EOPNOTSUPP, kCall, "pt_id {} is a paging HWPT: arm-smmu-v3 builds nested HWPTs on a vIOMMU (allocate "
                "one on this parent with IOMMU_VIOMMU_ALLOC and pass its id)", req.pt_id);
  }
  if (t != ObjType::viommu)
    return fail(EINVAL, kCall, "pt_id {} is a {}; a HWPT is allocated on an IOAS, a paging HWPT or a vIOMMU", req.pt_id,
                type_name(t));

  // iommufd_viommu_alloc_hwpt_nested + arm_vsmmu_alloc_domain_nested
  auto& vi = std::get<ViommuObj>(it->second);
  if (vi.smmu != dev_smmu)
    return fail(EINVAL, kCall, "{} is behind SMMU \"{}\" but vIOMMU {} is on SMMU \"{}\"", dev_desc,
                s_->hw.smmus[dev_smmu].name, req.pt_id, s_->hw.smmus[vi.smmu].name);
  if (flags & ~uapi::kHwptAllocFaultIdValid)
    return fail(EOPNOTSUPP, kCall, "flags {:#x}: a nested HWPT takes no allocation flags", flags);
  if (!len) return fail(EOPNOTSUPP, kCall, "a nested HWPT needs driver data (the vSTE); data_len is 0");
  if (req.data_type != uapi::kHwptDataArmSmmuv3)
    return fail(EINVAL, kCall, "data_type {}: a nested HWPT on an ARM SMMUv3 vIOMMU takes IOMMU_HWPT_DATA_ARM_SMMUV3 ({})",
                req.data_type, uapi::kHwptDataArmSmmuv3);
  if (len != 16) return fail(EINVAL, kCall, "data_len {}: struct iommu_hwpt_arm_smmuv3 is 16 bytes (the vSTE's first two words)", len);
  if (!req.data.data()) return fail(EFAULT, kCall, "data_uptr is NULL");
  smmu::Ste v;
  for (unsigned w = 0; w < 2; ++w)
    for (unsigned b = 0; b < 8; ++b)
      v.dw[w] |= std::uint64_t(std::to_integer<std::uint8_t>(req.data[w * 8 + b])) << (8 * b);
  // arm_smmu_validate_vste
  HwptNestedObj n;
  n.viommu = req.pt_id;
  if (!v.get(smmu::Ste::V)) {
    n.vste = smmu::Ste{};  // V=0: treated as abort, both words zeroed
  } else {
    const std::uint64_t bad0 = v.dw[0] & ~smmu::kNestingAllowedWord0;
    const std::uint64_t bad1 = v.dw[1] & ~smmu::kNestingAllowedWord1;
    if (bad0 || bad1)
      return fail(EIO, kCall, "vSTE sets bits outside what a guest may own (word 0 {:#x}, word 1 {:#x}): allowed are V, "
                  "Config, S1Fmt, S1ContextPtr, S1CDMax, S1DSS, S1CIR, S1COR, S1CSH, S1STALLD, EATS", bad0, bad1);
    const auto cfg = v.get(smmu::Ste::Config);
    if (cfg != smmu::StreamConfig::abort && cfg != smmu::StreamConfig::bypass && cfg != smmu::StreamConfig::s1_translate)
      return fail(EIO, kCall, "vSTE Config {:#b}: a guest STE is abort (0b000), bypass (0b100) or stage 1 (0b101)",
                  static_cast<unsigned>(cfg));
    const auto eats = v.get(smmu::Ste::EATS);
    if (eats != smmu::Eats::abort && eats != smmu::Eats::translate)
      return fail(EIO, kCall, "vSTE EATS {}: only full ATS (1) or none (0) is supported", static_cast<unsigned>(eats));
    n.enable_ats = cfg == smmu::StreamConfig::s1_translate && eats == smmu::Eats::translate;
    v.set(smmu::Ste::EATS, smmu::Eats::abort);  // the host sets EATS in the physical STE
    n.vste = v;
  }
  VSMMU_TRY(check_fault());
  n.fault = req.fault_id;
  return s_->insert(std::move(n));
}

}  // namespace vsmmu::host::sim

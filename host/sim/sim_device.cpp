// The simulated kernel, devices: VFIO cdev bind/unbind and GET_HW_INFO, the STEs the driver installs for them, and
// attach/replace/detach (drivers/vfio/device_cdev.c, drivers/iommu/iommufd/device.c, arm-smmu-v3.c).
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
// Devices (VFIO cdev: vfio_df_ioctl_bind_iommufd, vfio_iommufd_physical_unbind)

Result<DeviceId> SimHost::bind_device(const std::string& path_or_name) {
  constexpr const char* kCall = "VFIO_DEVICE_BIND_IOMMUFD";
  std::lock_guard lock(s_->mu);
  if (auto e = s_->inject(kCall)) return std::unexpected(*e);
  std::string_view key = path_or_name;
  if (key.starts_with("/dev/vfio/devices/")) key.remove_prefix(18);
  auto spec = s_->hw.find_device(key);
  if (!spec) {
    std::vector<std::string> names;
    for (const auto& d : s_->hw.devices) names.push_back(fmt::format("{} ({})", d.name, d.bdf.to_string()));
    return fail(ENOENT, kCall, "no device \"{}\" on the simulated host (hardware profile \"{}\"); it has: {}",
                path_or_name, s_->hw.name, fmt::join(names, ", "));
  }
  if (s_->bound[*spec])
    return fail(EINVAL, kCall, "device {} is already bound as dev_id {}: the VFIO cdev allows one open at a time; "
                "unbind it first", s_->hw.devices[*spec].name, *s_->bound[*spec]);
  DeviceObj d;
  d.spec = *spec;
  const ObjectId id = s_->insert(std::move(d));
  s_->bound[*spec] = id;
  return id;
}

Result<DeviceId> SimHost::bind_device_fd(int fd) {
  if (fd >= 0) ::close(fd);
  return fail(ENOTTY, "VFIO_DEVICE_BIND_IOMMUFD", "fd {} is not a VFIO device: the simulated host has no VFIO cdevs; "
              "bind a device of the hardware profile by name or BDF", fd);
}

Result<void> SimHost::unbind_device(DeviceId dev) {
  std::lock_guard lock(s_->mu);
  auto* d = s_->get<DeviceObj>(dev);
  if (!d) return fail(ENOENT, "VFIO_DEVICE_UNBIND", "dev_id {} is not a bound device", dev);
  // Closing the cdev detaches the device (it blocks DMA) and, from 6.17, destroys its vDEVICE.
  if (d->attached) VSMMU_TRY(s_->do_detach(dev));
  d = s_->get<DeviceObj>(dev);
  if (d->vdevice) {
    const ObjectId vd = *d->vdevice;
    if (auto* v = s_->get<VdeviceObj>(vd)) {
      if (auto* vi = s_->get<ViommuObj>(v->viommu)) vi->vdevs.erase(v->virt_id);
      s_->objects.erase(vd);
    }
  }
  d = s_->get<DeviceObj>(dev);
  s_->bound[d->spec].reset();
  s_->objects.erase(dev);
  return {};
}

Result<HwInfo> SimHost::get_hw_info(DeviceId dev) {
  std::array<std::byte, 40> buf{};
  VSMMU_TRY_ASSIGN(auto r, get_hw_info_ioctl(dev, buf));
  HwInfo info;
  info.type = r.type;
  auto u32 = [&](std::size_t off) {
    std::uint32_t v = 0;
    std::memcpy(&v, buf.data() + off, 4);
    return v;
  };
  info.flags = u32(0);
  for (std::size_t i = 0; i < 6; ++i) info.idr[i] = u32(8 + 4 * i);
  info.iidr = u32(32);
  info.aidr = u32(36);
  info.max_pasid_log2 = r.max_pasid_log2;
  info.capabilities = r.capabilities;
  return info;
}

DeviceLocation SimHost::device_location(DeviceId dev) const {
  std::lock_guard lock(s_->mu);
  const auto* d = s_->get<DeviceObj>(dev);
  if (!d) return {};
  const auto& spec = s_->spec_of(*d);
  const auto& rc = s_->hw.root_complexes[spec.root_complex];
  return DeviceLocation{spec.bdf.to_string(), rc.name, s_->hw.smmus[rc.smmu].name, spec.sid};
}

// arm_smmu_get_resv_regions: the SMMU's software MSI window (and, on a real host, the IORT's RMRs, which the
// profiles do not describe).
Result<std::vector<ReservedRegion>> SimHost::reserved_regions(DeviceId dev) const {
  std::lock_guard lock(s_->mu);
  const auto* d = s_->get<DeviceObj>(dev);
  if (!d) return fail(ENOENT, "reserved_regions", "device {} is not bound through this host (bind_device first)", dev);
  return std::vector<ReservedRegion>{{s_->hw.smmus[s_->smmu_of_spec(d->spec)].msi_window, ReservedRegionType::msi}};
}

Result<HwInfoIoctl> SimHost::get_hw_info_ioctl(DeviceId dev, std::span<std::byte> buffer) {
  constexpr const char* kCall = "IOMMU_GET_HW_INFO";
  std::lock_guard lock(s_->mu);
  if (auto e = s_->inject(kCall)) return std::unexpected(*e);
  auto* d = s_->get<DeviceObj>(dev);
  if (!d) return fail(ENOENT, kCall, "dev_id {} is not a bound device", dev);
  const auto& spec = s_->spec_of(*d);
  const auto& drv = s_->smmu_of(*d);
  const auto& sm = drv.spec();
  // struct iommu_hw_info_arm_smmuv3 { u32 flags; u32 __reserved; u32 idr[6]; u32 iidr; u32 aidr; }: the raw
  // register reads (arm_smmu_hw_info).
  std::array<std::byte, 40> info{};
  auto put = [&](std::size_t off, std::uint32_t v) { std::memcpy(info.data() + off, &v, 4); };
  // flags: the errata a VMM must work around for its guest (arm_smmu_hw_info).
  put(0, drv.features().repeat_tlbi_cfgi ? uapi::kHwInfoArmSmmuv3ErrataRepeatTlbiCfgi : 0U);
  put(8, sm.config.idr0.value());
  put(12, sm.config.idr1.value());
  put(16, sm.config.idr2.value());
  put(20, sm.config.idr3.value());
  put(24, sm.config.idr4.value());
  put(28, sm.config.idr5.value());
  put(32, sm.config.iidr.value());
  put(36, sm.config.aidr.value());
  // Copies what fits; a larger buffer is zero-filled past the kernel's structure.
  const std::size_t n = std::min(buffer.size(), info.size());
  std::memcpy(buffer.data(), info.data(), n);
  if (buffer.size() > n) std::memset(buffer.data() + n, 0, buffer.size() - n);
  HwInfoIoctl out;
  out.data_len = static_cast<std::uint32_t>(info.size());
  out.type = uapi::kHwInfoTypeArmSmmuv3;
  const unsigned pasid = std::min(spec.pasid_bits, drv.features().ssid_bits);
  out.max_pasid_log2 = static_cast<std::uint8_t>(pasid);
  if (drv.features().dbm_capable()) out.capabilities |= uapi::kCapDirtyTracking;
  if (pasid && spec.pasid_exec) out.capabilities |= uapi::kCapPciPasidExec;
  if (pasid && spec.pasid_priv) out.capabilities |= uapi::kCapPciPasidPriv;
  if (s_->kernel.ats_not_supported_capability && !s_->ats_capable(*d)) out.capabilities |= uapi::kCapPciAtsNotSupported;
  return out;
}

// ---------------------------------------------------------------------------------------------------------
// STEs

smmu::Ste SimHost::State::abort_ste() const {
  // arm_smmu_make_abort_ste: valid, Config = abort: every transaction is terminated without an event.
  smmu::Ste s;
  s.set(smmu::Ste::V, true).set(smmu::Ste::Config, smmu::StreamConfig::abort);
  return s;
}

Result<void> SimHost::State::install(std::size_t spec, const smmu::Ste& ste) {
  auto& drv = *smmus[smmu_of_spec(spec)];
  VSMMU_TRY(drv.install_ste(hw.devices[spec].sid, ste));
  installed[spec] = ste;
  return {};
}

smmu::Ste SimHost::State::nested_ste(const HwptNestedObj& n, const DeviceObj& d) {
  using smmu::Ste;
  auto& vi = *get<ViommuObj>(n.viommu);
  auto& parent = *get<HwptPagingObj>(vi.parent);
  // arm_smmu_make_nested_domain_ste: V=0 is abort (C_BAD_STE for the guest comes from its own vSMMU).
  const auto cfg = n.vste.get(Ste::V) ? n.vste.get(Ste::Config) : smmu::StreamConfig::abort;
  const bool ats = n.enable_ats && ats_capable(d);
  switch (cfg) {
    case smmu::StreamConfig::s1_translate: {
      // The parent's stage 2 with the guest's stage-1 fields, Config = nested, events merged (MEV: a guest
      // cannot flood the host's event queue with identical faults).
      Ste s = parent.domain->ste(ats);
      s.set(Ste::Config, smmu::StreamConfig::nested)
          .set(Ste::S1Fmt, n.vste.get(Ste::S1Fmt))
          .set(Ste::S1ContextPtr, n.vste.get(Ste::S1ContextPtr))
          .set(Ste::S1CDMax, n.vste.get(Ste::S1CDMax))
          .set(Ste::S1DSS, n.vste.get(Ste::S1DSS))
          .set(Ste::S1CIR, n.vste.get(Ste::S1CIR))
          .set(Ste::S1COR, n.vste.get(Ste::S1COR))
          .set(Ste::S1CSH, n.vste.get(Ste::S1CSH))
          .set(Ste::S1STALLD, n.vste.get(Ste::S1STALLD))
          .set(Ste::MEV, true);
      return s;
    }
    case smmu::StreamConfig::bypass: return parent.domain->ste(ats);  // the guest's bypass is the host's S2
    default: return abort_ste();
  }
}

// ---------------------------------------------------------------------------------------------------------
// Attach (iommufd_device_attach / replace, arm_smmu_attach_dev, arm_smmu_attach_dev_nested)

std::size_t SimHost::State::attached_count(ObjectId hwpt_id) const {
  std::size_t n = 0;
  for (const auto& [id, body] : objects)
    if (const auto* d = std::get_if<DeviceObj>(&body); d && d->attached == hwpt_id) ++n;
  return n;
}

ObjectId SimHost::State::ioas_of_hwpt(ObjectId hwpt_id) {
  if (auto* p = get<HwptPagingObj>(hwpt_id)) return p->ioas;
  auto* n = get<HwptNestedObj>(hwpt_id);
  return get<HwptPagingObj>(get<ViommuObj>(n->viommu)->parent)->ioas;
}

Result<void> SimHost::State::reserve_sw_msi(IoasObj& ioas, ObjectId ioas_id, ObjectId dev_id, const char* call) {
  // iopt_table_enforce_dev_resv_regions: the device's reserved regions may not hold a mapping.
  const IovaRange w = hw.smmus[smmu_of_spec(get<DeviceObj>(dev_id)->spec)].msi_window;
  for (const auto& [iova, a] : ioas.areas)
    if (w.overlaps(a.iova, a.length))
      return fail(EADDRINUSE, call, "IOAS {} maps [{:#x}, {:#x}], which overlaps the SMMU's software MSI window "
                  "[{:#x}, {:#x}] that dev_id {} needs reserved; unmap it or map elsewhere", ioas_id, a.iova, a.last(),
                  w.start, w.last, dev_id);
  ioas.reserved.push_back({w.start, w.last, Reservation::Kind::sw_msi, dev_id});
  return {};
}

void SimHost::State::release_reservations(IoasObj& ioas, Reservation::Kind kind, ObjectId owner) {
  std::erase_if(ioas.reserved, [&](const Reservation& r) { return r.kind == kind && r.owner == owner; });
}

Result<void> SimHost::State::do_attach(ObjectId dev_id, ObjectId hwpt_id, const char* call) {
  auto* d = get<DeviceObj>(dev_id);
  if (d->attached == hwpt_id) return {};  // replacing a domain by itself changes nothing
  const std::size_t dev_smmu = smmu_of_spec(d->spec);
  smmu::Ste ste;
  if (auto* p = get<HwptPagingObj>(hwpt_id)) {
    if (p->smmu != dev_smmu)
      return fail(EINVAL, call, "{} is behind SMMU \"{}\" but paging HWPT {} belongs to SMMU \"{}\"",
                  describe_device(*d, dev_id), hw.smmus[dev_smmu].name, hwpt_id, hw.smmus[p->smmu].name);
    ste = p->domain->ste(ats_capable(*d));
  } else {
    auto& n = *get<HwptNestedObj>(hwpt_id);
    auto& vi = *get<ViommuObj>(n.viommu);
    if (vi.smmu != dev_smmu)
      return fail(EINVAL, call, "{} is behind SMMU \"{}\" but nested HWPT {} belongs to vIOMMU {} on SMMU \"{}\"",
                  describe_device(*d, dev_id), hw.smmus[dev_smmu].name, hwpt_id, n.viommu, hw.smmus[vi.smmu].name);
    // arm_smmu_attach_prepare_vmaster: a translating vSTE needs the device's vSID (CD and ATC invalidations
    // and events name it); abort and bypass do not (the GBPA case, from ~6.19).
    const auto cfg = n.vste.get(smmu::Ste::V) ? n.vste.get(smmu::Ste::Config) : smmu::StreamConfig::abort;
    const bool has_vdev = d->vdevice && get<VdeviceObj>(*d->vdevice)->viommu == n.viommu;
    const bool translate = cfg == smmu::StreamConfig::s1_translate;
    if (!has_vdev && (translate || !kernel.nested_attach_without_vdevice))
      return fail(ENOENT, call, "{} has no vDEVICE on vIOMMU {}: attaching nested HWPT {} {} needs one (allocate "
                  "the vDEVICE with the device's vSID first)", describe_device(*d, dev_id), n.viommu, hwpt_id,
                  translate ? "(a stage-1 vSTE)" : "on this kernel");
    ste = nested_ste(n, *d);
  }

  // A domain with a fault queue needs I/O page faults from the device: kernels whose iommufd_fault_iopf_enable
  // asks iommu_dev_enable_feature(IOPF) get EINVAL from arm-smmu-v3 for a master that cannot stall (kernel
  // profile iopf_attach_needs_stall); upstream attaches it, and its faults never come.
  if (kernel.iopf_attach_needs_stall && fault_of(hwpt_id) && !stall_enabled(*d))
    return fail(EINVAL, call, "{} cannot stall its DMA (no dma-can-stall, or the SMMU's STALL_MODEL does not allow "
                "stalls), so HWPT {} with fault queue {} cannot get its I/O page faults; allocate the HWPT without "
                "fault_id", describe_device(*d, dev_id), hwpt_id, *fault_of(hwpt_id));

  // Reserved regions go into the IOAS behind the new domain before the STE changes.
  const ObjectId new_ioas = ioas_of_hwpt(hwpt_id);
  const std::optional<ObjectId> old_ioas = d->resv_ioas;
  if (old_ioas != new_ioas) VSMMU_TRY(reserve_sw_msi(*get<IoasObj>(new_ioas), new_ioas, dev_id, call));
  // iommufd_group_setup_msi: the doorbell page the device's MSIs use goes into the new domain first.
  if (d->required_sw_msi) {
    if (auto r = install_sw_msi(paging_of(hwpt_id), call); !r) {
      if (old_ioas != new_ioas) release_reservations(*get<IoasObj>(new_ioas), Reservation::Kind::sw_msi, dev_id);
      return r;
    }
    d = get<DeviceObj>(dev_id);
  }
  if (auto r = install(d->spec, ste); !r) {
    if (old_ioas != new_ioas) release_reservations(*get<IoasObj>(new_ioas), Reservation::Kind::sw_msi, dev_id);
    return r;
  }
  if (old_ioas && old_ioas != new_ioas)
    release_reservations(*get<IoasObj>(*old_ioas), Reservation::Kind::sw_msi, dev_id);
  d->resv_ioas = new_ioas;
  const std::optional<ObjectId> old = d->attached;
  d->attached = hwpt_id;
  // iommufd_hwpt_replace_device: the old domain's undelivered and unanswered faults of this device are
  // answered INVALID once the new domain is in (iommufd_auto_response_faults).
  if (old) auto_respond(dev_id, *old);
  if (old) put_auto_domain(*old);
  return {};
}

Result<void> SimHost::State::do_detach(ObjectId dev_id) {
  auto* d = get<DeviceObj>(dev_id);
  if (!d->attached) return {};
  // The device blocks DMA from here on (VFIO_DEVICE_DETACH_IOMMUFD_PT: the blocking domain).
  auto r = install(d->spec, abort_ste());
  if (d->resv_ioas) release_reservations(*get<IoasObj>(*d->resv_ioas), Reservation::Kind::sw_msi, dev_id);
  d->resv_ioas.reset();
  const ObjectId old = *d->attached;
  d->attached.reset();
  // iommufd_hwpt_detach_device: after the detach, the device's pending faults are answered INVALID
  // (iommufd_auto_response_faults), so its stalled transactions abort.
  auto_respond(dev_id, old);
  put_auto_domain(old);
  return r;
}

void SimHost::State::put_auto_domain(ObjectId hwpt_id) {
  auto* p = get<HwptPagingObj>(hwpt_id);
  if (p && p->auto_domain && attached_count(hwpt_id) == 0) destroy_paging(hwpt_id);
}

Result<void> SimHost::attach(DeviceId dev, ObjectId pt_id) {
  constexpr const char* kCall = "VFIO_DEVICE_ATTACH_IOMMUFD_PT";
  std::lock_guard lock(s_->mu);
  if (auto e = s_->inject(kCall)) return std::unexpected(*e);
  auto* d = s_->get<DeviceObj>(dev);
  if (!d) return fail(ENOENT, kCall, "dev_id {} is not a bound device", dev);
  auto it = s_->objects.find(pt_id);
  if (it == s_->objects.end()) return fail(ENOENT, kCall, "pt_id {} names no object", pt_id);
  const ObjType t = s_->type_of(it->second);
  if (t == ObjType::hwpt_paging || t == ObjType::hwpt_nested) return s_->do_attach(dev, pt_id, kCall);
  if (t != ObjType::ioas)
    return fail(EINVAL, kCall, "pt_id {} is a {}; a device attaches to an IOAS or a HWPT", pt_id, type_name(t));

  // iommufd_device_auto_get_domain: an auto domain of the IOAS that this device can use, else a new one.
  const std::size_t dev_smmu = s_->smmu_of_spec(d->spec);
  if (d->attached) {
    auto* cur = s_->get<HwptPagingObj>(*d->attached);
    if (cur && cur->auto_domain && cur->ioas == pt_id) return {};
  }
  for (ObjectId h : std::get<IoasObj>(it->second).domains) {
    auto* p = s_->get<HwptPagingObj>(h);
    if (p->auto_domain && p->smmu == dev_smmu) return s_->do_attach(dev, h, kCall);
  }
  VSMMU_TRY_ASSIGN(auto h, s_->alloc_paging(pt_id, dev_smmu, 0, true, kCall));
  if (auto r = s_->do_attach(dev, h, kCall); !r) {
    s_->destroy_paging(h);
    return r;
  }
  return {};
}

Result<void> SimHost::detach(DeviceId dev) {
  std::lock_guard lock(s_->mu);
  if (!s_->get<DeviceObj>(dev)) return fail(ENOENT, "VFIO_DEVICE_DETACH_IOMMUFD_PT", "dev_id {} is not a bound device", dev);
  return s_->do_detach(dev);
}

}  // namespace vsmmu::host::sim

// The simulated kernel: iommufd's objects, IOAS, HWPTs and attach, with the errnos of
// drivers/iommu/iommufd/{main,ioas,io_pagetable,hw_pagetable,device}.c and the arm-smmu-v3 driver.
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

}  // namespace

std::string_view type_name(ObjType t) {
  switch (t) {
    case ObjType::device: return "device";
    case ObjType::ioas: return "IOAS";
    case ObjType::hwpt_paging: return "paging HWPT";
    case ObjType::hwpt_nested: return "nested HWPT";
    case ObjType::viommu: return "vIOMMU";
    case ObjType::vdevice: return "vDEVICE";
    case ObjType::veventq: return "vEVENTQ";
    case ObjType::fault: return "fault queue";
  }
  return "object";
}

// ---------------------------------------------------------------------------------------------------------
// Objects

ObjectId SimHost::State::alloc_id() const {
  // xa_alloc(&ictx->objects, ..., xa_limit_31b): the lowest free index from 1.
  ObjectId id = 1;
  for (const auto& [used, body] : objects) {
    if (used != id) break;
    ++id;
  }
  return id;
}

ObjectId SimHost::State::insert(Body body) {
  const ObjectId id = alloc_id();
  objects.emplace(id, std::move(body));
  return id;
}

std::optional<Error> SimHost::State::inject(const char* call) {
  if (fail_nth == 0 || fired) return std::nullopt;
  if (++calls != fail_nth) return std::nullopt;
  fired = true;
  return Error{ENOMEM, std::string(call),
               fmt::format("injected failure (fail_nth = {}): the simulated kernel's allocation failed before the "
                           "call changed anything", fail_nth)};
}

std::string SimHost::State::describe_device(const DeviceObj& d, ObjectId id) const {
  const auto& s = spec_of(d);
  return fmt::format("device {} (dev_id {}, {})", s.name, id, s.bdf.to_string());
}

bool SimHost::State::ats_capable(const DeviceObj& d) const {
  const auto& s = spec_of(d);
  return s.ats && hw.root_complexes[s.root_complex].ats && smmus[smmu_of_spec(d.spec)]->features().ats;
}

// ---------------------------------------------------------------------------------------------------------
// Creation

SimHost::SimHost(std::unique_ptr<State> state) : s_(std::move(state)) {}

Result<std::unique_ptr<SimHost>> SimHost::create(KernelProfile kernel, HardwareProfile hardware) {
  // The simulated physical address space: from 256 MiB to the smallest OAS of the SMMUs (TableBuilder writes
  // output addresses below 2^48 with the 4KB granule).
  unsigned oas = 48;
  for (const auto& s : hardware.smmus) oas = std::min(oas, s.features().oas_bits());
  auto state = std::make_unique<State>(std::move(kernel), std::move(hardware), 256ULL << 20, 1ULL << oas);
  State& st = *state;
  for (const auto& spec : st.hw.smmus) {
    VSMMU_TRY_ASSIGN(auto d, ArmSmmuDevice::probe(spec, st.mem));
    st.smmus.push_back(std::move(d));
  }
  st.bound.assign(st.hw.devices.size(), std::nullopt);
  st.installed.assign(st.hw.devices.size(), smmu::Ste{});
  // Every device starts blocked: an abort STE (the driver's blocking domain before VFIO binds it).
  for (std::size_t i = 0; i < st.hw.devices.size(); ++i) VSMMU_TRY(st.install(i, st.abort_ste()));
  return std::unique_ptr<SimHost>(new SimHost(std::move(state)));
}

Result<std::unique_ptr<SimHost>> SimHost::create_default() {
  VSMMU_TRY_ASSIGN(auto k, embedded_kernel_profile("upstream"));
  VSMMU_TRY_ASSIGN(auto h, embedded_hardware_profile("default"));
  return create(std::move(k), std::move(h));
}

SimHost::~SimHost() {
  std::lock_guard lock(s_->mu);
  // What the user left behind goes as closing /dev/iommu would take it: attachments, then children before
  // parents, each IOAS's mappings last.
  for (auto& [id, body] : s_->objects)
    if (auto* d = std::get_if<DeviceObj>(&body); d && d->attached) (void)s_->do_detach(id);
  for (ObjType t : {ObjType::hwpt_nested, ObjType::vdevice, ObjType::veventq, ObjType::viommu, ObjType::hwpt_paging,
                    ObjType::ioas, ObjType::fault, ObjType::device}) {
    std::vector<ObjectId> ids;
    for (const auto& [id, body] : s_->objects)
      if (s_->type_of(body) == t) ids.push_back(id);
    for (ObjectId id : ids) {
      if (t == ObjType::hwpt_paging) {
        s_->destroy_paging(id);
        continue;
      }
      if (t == ObjType::ioas) {
        auto& io = *s_->get<IoasObj>(id);
        while (!io.areas.empty()) s_->unmap_area(io, io.areas.begin());
      }
      s_->objects.erase(id);
    }
  }
}

std::string SimHost::name() const { return fmt::format("sim {}/{}", s_->kernel.name, s_->hw.name); }

const KernelProfile& SimHost::kernel_profile() const { return s_->kernel; }
const HardwareProfile& SimHost::hardware_profile() const { return s_->hw; }

void SimHost::set_fail_nth(unsigned n) {
  std::lock_guard lock(s_->mu);
  s_->fail_nth = n;
  s_->calls = 0;
  s_->fired = false;
}

bool SimHost::fail_nth_fired() const {
  std::lock_guard lock(s_->mu);
  return s_->fired;
}

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
  const std::uint64_t last = kSwMsiBase + kSwMsiLength - 1;
  for (const auto& [iova, a] : ioas.areas)
    if (a.iova <= last && a.last() >= kSwMsiBase)
      return fail(EADDRINUSE, call, "IOAS {} maps [{:#x}, {:#x}], which overlaps the SMMU's software MSI window "
                  "[{:#x}, {:#x}] that dev_id {} needs reserved; unmap it or map elsewhere", ioas_id, a.iova, a.last(),
                  kSwMsiBase, last, dev_id);
  ioas.reserved.push_back({kSwMsiBase, last, Reservation::Kind::sw_msi, dev_id});
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

  // Reserved regions go into the IOAS behind the new domain before the STE changes.
  const ObjectId new_ioas = ioas_of_hwpt(hwpt_id);
  const std::optional<ObjectId> old_ioas = d->resv_ioas;
  if (old_ioas != new_ioas) VSMMU_TRY(reserve_sw_msi(*get<IoasObj>(new_ioas), new_ioas, dev_id, call));
  if (auto r = install(d->spec, ste); !r) {
    if (old_ioas != new_ioas) release_reservations(*get<IoasObj>(new_ioas), Reservation::Kind::sw_msi, dev_id);
    return r;
  }
  if (old_ioas && old_ioas != new_ioas)
    release_reservations(*get<IoasObj>(*old_ioas), Reservation::Kind::sw_msi, dev_id);
  d->resv_ioas = new_ioas;
  const std::optional<ObjectId> old = d->attached;
  d->attached = hwpt_id;
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
    const std::uint64_t bad0 = v.dw[0] & ~vste_allowed_mask(0);
    const std::uint64_t bad1 = v.dw[1] & ~vste_allowed_mask(1);
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

// ---------------------------------------------------------------------------------------------------------
// IOMMU_DESTROY (iommufd_destroy: EBUSY while other objects or an open fd hold it)

Result<void> SimHost::destroy(ObjectId id) {
  constexpr const char* kCall = "IOMMU_DESTROY";
  std::lock_guard lock(s_->mu);
  auto it = s_->objects.find(id);
  if (it == s_->objects.end()) return fail(ENOENT, kCall, "id {} names no object", id);
  auto busy = [&](std::string_view why) {
    return fail(EBUSY, kCall, "{} {} is in use: {}; destroy or detach that first", type_name(s_->type_of(it->second)), id, why);
  };
  std::vector<ObjectId> users;
  auto users_of = [&](auto pred) {
    users.clear();
    for (const auto& [oid, body] : s_->objects)
      if (pred(body)) users.push_back(oid);
    return !users.empty();
  };
  switch (s_->type_of(it->second)) {
    case ObjType::device:
      return busy("a bound device belongs to its VFIO cdev; unbind it (close the cdev) instead");
    case ObjType::ioas: {
      if (users_of([&](const Body& b) { auto* p = std::get_if<HwptPagingObj>(&b); return p && p->ioas == id; }))
        return busy(fmt::format("paging HWPT(s) {} are built on it", fmt::join(users, ", ")));
      auto& io = std::get<IoasObj>(it->second);
      while (!io.areas.empty()) s_->unmap_area(io, io.areas.begin());
      s_->objects.erase(it);
      return {};
    }
    case ObjType::hwpt_paging: {
      if (users_of([&](const Body& b) { auto* d = std::get_if<DeviceObj>(&b); return d && d->attached == id; }))
        return busy(fmt::format("device(s) {} are attached to it", fmt::join(users, ", ")));
      if (users_of([&](const Body& b) { auto* v = std::get_if<ViommuObj>(&b); return v && v->parent == id; }))
        return busy(fmt::format("vIOMMU(s) {} use it as their nest parent", fmt::join(users, ", ")));
      s_->destroy_paging(id);
      return {};
    }
    case ObjType::hwpt_nested:
      if (users_of([&](const Body& b) { auto* d = std::get_if<DeviceObj>(&b); return d && d->attached == id; }))
        return busy(fmt::format("device(s) {} are attached to it", fmt::join(users, ", ")));
      s_->objects.erase(it);
      return {};
    case ObjType::viommu: {
      if (users_of([&](const Body& b) { auto* n = std::get_if<HwptNestedObj>(&b); return n && n->viommu == id; }))
        return busy(fmt::format("nested HWPT(s) {} are built on it", fmt::join(users, ", ")));
      if (users_of([&](const Body& b) { auto* v = std::get_if<VdeviceObj>(&b); return v && v->viommu == id; }))
        return busy(fmt::format("vDEVICE(s) {} belong to it", fmt::join(users, ", ")));
      if (users_of([&](const Body& b) { auto* q = std::get_if<VeventqObj>(&b); return q && q->viommu == id; }))
        return busy(fmt::format("vEVENTQ(s) {} belong to it", fmt::join(users, ", ")));
      s_->objects.erase(it);
      return {};
    }
    case ObjType::vdevice: {
      auto& v = std::get<VdeviceObj>(it->second);
      if (auto* vi = s_->get<ViommuObj>(v.viommu)) vi->vdevs.erase(v.virt_id);
      if (auto* d = s_->get<DeviceObj>(v.dev)) d->vdevice.reset();
      s_->objects.erase(it);
      return {};
    }
    case ObjType::veventq:
      if (std::get<VeventqObj>(it->second).queue->user_open()) return busy("its fd is still open; close it first");
      s_->objects.erase(it);
      return {};
    case ObjType::fault:
      if (std::get<FaultObj>(it->second).channel.user_open()) return busy("its fd is still open; close it first");
      if (users_of([&](const Body& b) {
            if (auto* p = std::get_if<HwptPagingObj>(&b)) return p->fault == id;
            if (auto* n = std::get_if<HwptNestedObj>(&b)) return n->fault == id;
            return false;
          }))
        return busy(fmt::format("HWPT(s) {} report faults to it", fmt::join(users, ", ")));
      s_->objects.erase(it);
      return {};
  }
  return {};
}

// ---------------------------------------------------------------------------------------------------------
// Introspection

SimStats SimHost::stats() const {
  std::lock_guard lock(s_->mu);
  SimStats st;
  st.objects = s_->objects.size();
  for (const auto& [id, body] : s_->objects) {
    if (std::holds_alternative<DeviceObj>(body)) ++st.devices_bound;
    if (auto* io = std::get_if<IoasObj>(&body)) {
      st.ioas_areas += io->areas.size();
      for (const auto& [iova, a] : io->areas) st.pinned_bytes += a.length;
    }
    if (auto* p = std::get_if<HwptPagingObj>(&body)) {
      ++st.domains;
      st.domain_mapped_bytes += p->domain->mapped_bytes();
    }
    if (std::holds_alternative<VeventqObj>(body) || std::holds_alternative<FaultObj>(body)) ++st.veventq_fds;
  }
  for (const auto& ste : s_->installed)
    if (ste.get(smmu::Ste::Config) != smmu::StreamConfig::abort) ++st.translating_stes;
  st.events_forwarded = s_->events_forwarded;
  st.events_unhandled = s_->events_unhandled;
  st.host_regions = s_->mem.regions();
  return st;
}

Result<SmmuCounters> SimHost::smmu_counters(std::string_view smmu_name) const {
  std::lock_guard lock(s_->mu);
  auto i = s_->hw.find_smmu(smmu_name);
  if (!i) return fail(ENOENT, "sim.host", "no SMMU \"{}\" in hardware profile \"{}\"", smmu_name, s_->hw.name);
  auto& d = *s_->smmus[*i];
  SmmuCounters c;
  c.commands = d.commands_issued();
  c.syncs = d.syncs_issued();
  c.command_errors = d.command_errors();
  c.model = d.model().counters();
  return c;
}

Result<smmu::Ste> SimHost::physical_ste(std::string_view device) const {
  std::lock_guard lock(s_->mu);
  auto i = s_->hw.find_device(device);
  if (!i) return fail(ENOENT, "sim.host", "no device \"{}\" in hardware profile \"{}\"", device, s_->hw.name);
  return s_->installed[*i];
}

}  // namespace vsmmu::host::sim

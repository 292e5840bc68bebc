#include "nesting/nesting_probe.hpp"

#include <algorithm>
#include <array>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "base/try.hpp"
#include "host/handles.hpp"
#include "smmu/ste.hpp"

namespace vsmmu::nesting {

using namespace smmu;
using host::HostObject;

namespace {

constexpr const char* kWhere = "vsmmu.probe";
constexpr std::uint64_t kVsid = 0;  // each device gets its own vIOMMU here, so any vSID is free

// IIDR of the Arm implementations whose errata the kernel's driver knows (arm_smmu_device_iidr_probe).
constexpr std::uint32_t kImplementerArm = 0x43b;
constexpr std::uint32_t kProductMmu600 = 0x483;
constexpr std::uint32_t kProductMmu700 = 0x487;

// Failures that say nothing about the host's ability: the same call may work the next time.
bool transient(int err) { return err == ENOMEM || err == EAGAIN || err == EINTR; }

// Records a step; true when it succeeded.
template <class T>
bool record(DeviceReport& r, const char* name, const Result<T>& res) {
  r.steps.push_back(ProbeStep{name, res ? std::nullopt : std::optional<Error>(res.error())});
  return res.has_value();
}

// The vSTE of an abort nested HWPT: V=1, Config=abort (IHI 0070 5.2). Accepted by every kernel with nesting
// and attachable even without a vDEVICE from ~6.19; the probe has a vDEVICE anyway.
std::array<std::byte, 16> abort_vste() {
  Ste ste;
  ste.set(Ste::V, true).set(Ste::Config, StreamConfig::abort);
  const auto all = ste.to_bytes();
  std::array<std::byte, 16> v{};
  std::copy_n(all.begin(), v.size(), v.begin());
  return v;
}

bool arm_product(const SmmuFeatures& f, std::uint32_t product) {
  return f.id.implementer == kImplementerArm && f.id.product_id == product;
}

// Why the kernel refused a step, from what the ID registers and the location tell
// (drivers/iommu/arm/arm-smmu-v3/arm-smmu-v3-iommufd.c; docs/kernel-rules.md); fills reason and advice.
void explain(DeviceReport& r, const std::string& step, const Error& e) {
  const auto& f = r.features;
  const std::string smmu = r.location.smmu.empty() ? "the SMMU" : fmt::format("SMMU {}", r.location.smmu);
  const std::string rc =
      r.location.root_complex.empty() ? "its root complex" : fmt::format("root complex {}", r.location.root_complex);
  if (step == "NEST_PARENT HWPT" && e.err == EOPNOTSUPP && f) {
    if (!f->id.s1p || !f->id.s2p) {
      r.reason = fmt::format("{} is behind {}, which has no stage {} translation (IDR0.S{}P = 0); nesting needs "
                             "both stages", r.device, smmu, f->id.s1p ? 2 : 1, f->id.s1p ? 2 : 1);
    } else {
      const char* erratum = arm_product(*f, kProductMmu600)   ? "MMU-600 before r2p0: erratum 1209401"
                            : arm_product(*f, kProductMmu700) ? "MMU-700 before r1p1: erratum 2268618"
                                                              : "an erratum the driver applies";
      r.reason = fmt::format("{} is behind {}, which has both stages but the kernel turned nesting off for it ({}; "
                             "IIDR product {:#x} r{}p{})",
                             r.device, smmu, erratum, f->id.product_id, f->id.variant, f->id.revision);
    }
    r.advice = "use a device behind another SMMU";
    return;
  }
  if (step == "vIOMMU" && e.err == EOPNOTSUPP && f) {
    if (!f->id.fwb) {
      r.reason = fmt::format("{} is behind {} without S2FWB (IDR3.FWB = 0) and {} without CANWBS (IORT memory "
                             "access flags): the kernel needs one of them so that a guest's stage 1 cannot make DMA "
                             "non-coherent",
                             r.device, smmu, rc);
      r.advice = fmt::format("firmware whose IORT sets CANWBS in the memory access flags of {}'s node; to test, "
                             "override the table: `vsmmu iort patch --canwbs` (see `vsmmu iort check`)",
                             rc);
    } else if (arm_product(*f, kProductMmu700)) {
      r.reason = fmt::format("{} is behind {}, an MMU-700: the driver forces a CMD_SYNC after every command "
                             "(erratum 2812531), which vIOMMU invalidation does not support",
                             r.device, smmu);
      r.advice = "use a device behind another SMMU";
    } else {
      r.reason = fmt::format("{} is behind {}, which has S2FWB, yet the kernel refused the vIOMMU: it was probably "
                             "built without CONFIG_ARM_SMMU_V3_IOMMUFD, or the driver applies an erratum that forbids "
                             "nesting",
                             r.device, smmu);
      r.advice = "a kernel with CONFIG_ARM_SMMU_V3_IOMMUFD=y (docs/host-kernel.md)";
    }
    return;
  }
  r.reason = e.where == kWhere ? e.message : fmt::format("{} ({}) failed: {}", step, e.where, e.message);
}

// Concludes from the last step.
void conclude(DeviceReport& r) {
  const auto failed = std::find_if(r.steps.begin(), r.steps.end(), [](const ProbeStep& s) { return s.error.has_value(); });
  if (failed == r.steps.end()) {
    r.verdict = NestingVerdict::possible;
    return;
  }
  r.verdict = transient(failed->error->err) ? NestingVerdict::unknown : NestingVerdict::not_possible;
  explain(r, failed->name, *failed->error);
  if (r.verdict == NestingVerdict::unknown) r.advice = "a transient failure, not a property of the host: run the probe again";
}

// IOMMU_HWPT_ALLOC with `flags` on the IOAS, destroyed at once: whether this kernel and SMMU accept it.
Result<void> try_paging(host::Host& host, host::DeviceId dev, host::ObjectId ioas, std::uint32_t flags) {
  host::HwptAllocRequest req;
  req.flags = flags;
  req.dev_id = dev;
  req.pt_id = ioas;
  VSMMU_TRY_ASSIGN(auto hwpt, host.hwpt_alloc(req));
  HostObject owned(host, hwpt);
  return owned.reset();
}

std::string could_not_tell(const Error& e) { return fmt::format("could not tell: {}", e.to_string()); }

// Plain DIRTY_TRACKING (a stage-1 paging HWPT): needs HTTU dirty state and coherent walks; GET_HW_INFO's
// capabilities announce it.
DirtyTracking probe_dirty(host::Host& host, host::DeviceId dev, host::ObjectId ioas, const DeviceReport& r) {
  const bool announced = r.hw_info->capabilities & host::uapi::kCapDirtyTracking;
  auto res = try_paging(host, dev, ioas, host::uapi::kHwptAllocDirtyTracking);
  if (res) return {true, announced ? "HTTU dirty state (IDR0.HTTU), announced in GET_HW_INFO capabilities"
                                   : "accepted, although GET_HW_INFO capabilities do not announce it"};
  if (transient(res.error().err)) return {false, could_not_tell(res.error())};
  if (res.error().err == EOPNOTSUPP && r.features && !r.features->dirty_capable())
    return {false, !r.features->id.httu_dirty() ? "the SMMU has no HTTU dirty state (IDR0.HTTU < 2)"
                                                          : "the SMMU's table walks are not coherent (IDR0.COHACC = 0)"};
  return {false, res.error().to_string()};
}

// NEST_PARENT|DIRTY_TRACKING: stage-2 dirty tracking under a nested guest, for live migration. Upstream
// kernels refuse the combination (EOPNOTSUPP) whatever the SMMU.
DirtyTracking probe_nested_dirty(host::Host& host, host::DeviceId dev, host::ObjectId ioas, const DeviceReport& r,
                                 bool nest_parent_ok) {
  auto res = try_paging(host, dev, ioas, host::uapi::kHwptAllocNestParent | host::uapi::kHwptAllocDirtyTracking);
  if (res) return {true, "the kernel accepts a NEST_PARENT|DIRTY_TRACKING HWPT"};
  if (transient(res.error().err)) return {false, could_not_tell(res.error())};
  if (res.error().err == EOPNOTSUPP) {
    if (!nest_parent_ok) return {false, "the SMMU cannot be a nesting parent at all"};
    if (r.features && !r.features->dirty_capable()) return {false, "the SMMU has no HTTU dirty state with coherent walks"};
    return {false, "this kernel has no nested dirty tracking (NEST_PARENT|DIRTY_TRACKING refused, as upstream does)"};
  }
  return {false, res.error().to_string()};
}

// What the probe allocates for one device, declared parent-first so that C++ tears it down child-first:
// detach, nested HWPT, vDEVICE, vIOMMU, nest parent, IOAS.
struct NestedObjects {
  HostObject ioas, parent, viommu, vdevice, nested;
  host::Attachment attached;
};

// The window sysfs (or the profile) gave, against what IOMMU_IOAS_IOVA_RANGES says with the device attached.
void check_msi_window(host::Host& host, host::ObjectId ioas, DeviceReport& r) {
  auto ranges = host.ioas_iova_ranges(ioas);
  if (!ranges) {
    r.msi_window_check = fmt::format("IOMMU_IOAS_IOVA_RANGES failed: {}", ranges.error().to_string());
  } else if (const auto allowed = host::allowed_overlap(*r.msi_window, *ranges)) {
    r.msi_window_check = fmt::format("the IOAS still allows {} with the device attached: the host's reserved "
                                     "regions and IOMMU_IOAS_IOVA_RANGES disagree", host::to_string(*allowed));
  } else {
    r.msi_window_check = "reserved in the IOAS (IOMMU_IOAS_IOVA_RANGES)";
  }
}

void prove_nesting(host::Host& host, host::DeviceId dev, DeviceReport& r) {
  NestedObjects o;
  auto ioas = host.ioas_alloc();
  if (!record(r, "IOAS", ioas)) return;
  o.ioas = HostObject(host, *ioas);

  host::HwptAllocRequest parent_req;
  parent_req.flags = host::uapi::kHwptAllocNestParent;
  parent_req.dev_id = dev;
  parent_req.pt_id = *ioas;
  auto parent = host.hwpt_alloc(parent_req);
  const bool parent_ok = record(r, "NEST_PARENT HWPT", parent);
  // Dirty tracking is asked whatever nesting says: the answers are independent and the operator wants both.
  r.dirty = probe_dirty(host, dev, *ioas, r);
  r.nested_dirty = probe_nested_dirty(host, dev, *ioas, r, parent_ok);
  if (!parent_ok) return;
  o.parent = HostObject(host, *parent);

  if (!record(r, "attach to NEST_PARENT", host.attach(dev, *parent))) return;
  o.attached = host::Attachment(host, dev);
  if (r.msi_window) check_msi_window(host, *ioas, r);
  auto viommu = host.viommu_alloc(dev, *parent, host::uapi::kViommuTypeArmSmmuv3);
  if (!record(r, "vIOMMU", viommu)) return;
  o.viommu = HostObject(host, *viommu);
  auto vdevice = host.vdevice_alloc(*viommu, dev, kVsid);
  if (!record(r, "vDEVICE", vdevice)) return;
  o.vdevice = HostObject(host, *vdevice);

  const auto vste = abort_vste();
  host::HwptAllocRequest nested_req;
  nested_req.dev_id = dev;
  nested_req.pt_id = *viommu;
  nested_req.data_type = host::uapi::kHwptDataArmSmmuv3;
  nested_req.data = vste;
  auto nested = host.hwpt_alloc(nested_req);
  if (!record(r, "nested HWPT (abort)", nested)) return;
  o.nested = HostObject(host, *nested);
  record(r, "attach to nested HWPT", host.attach(dev, *nested));
}

// The grouping key when the host does not name the SMMU: everything GET_HW_INFO says about it.
std::string idr_key(const host::HwInfo& hw) {
  return fmt::format("{:08x}/{:08x}/{:08x}/{:08x}", fmt::join(hw.idr, ","), hw.iidr, hw.aidr, hw.flags);
}

}  // namespace

std::string DeviceReport::where() const {
  std::vector<std::string> parts;
  if (!location.pci_address.empty() && location.pci_address != device) parts.push_back(location.pci_address);
  if (!location.root_complex.empty()) parts.push_back(fmt::format("root complex {}", location.root_complex));
  if (!location.smmu.empty()) parts.push_back(fmt::format("SMMU {}", location.smmu));
  if (location.stream_id) parts.push_back(fmt::format("StreamID {:#x}", *location.stream_id));
  return parts.empty() ? device : fmt::format("{} ({})", device, fmt::join(parts, ", "));
}

std::string SmmuFeatures::summary() const {
  std::vector<std::string> s;
  s.push_back(id.s1p && id.s2p ? "stage 1+2" : id.s1p ? "stage 1 only" : id.s2p ? "stage 2 only" : "no stages");
  s.push_back(id.fwb ? "S2FWB" : "no S2FWB");
  s.push_back(id.httu == Httu::none ? std::string("no HTTU") : fmt::format("HTTU {}", httu_name()));
  if (!id.cohacc) s.push_back("no COHACC");
  s.push_back(id.ril ? "RIL" : "no RIL");
  s.push_back(id.ats ? "ATS" : "no ATS");
  s.push_back(fmt::format("SIDSIZE {}, SSIDSIZE {}, OAS {}", id.sidsize, id.ssidsize, id.oas_bits()));
  std::vector<const char*> g;
  if (id.gran4k) g.push_back("4K");
  if (id.gran16k) g.push_back("16K");
  if (id.gran64k) g.push_back("64K");
  s.push_back(fmt::format("granules {}", fmt::join(g, " ")));
  if (errata_repeat_tlbi_cfgi) s.push_back("erratum: TLBI/CFGI + CMD_SYNC issued twice");
  return fmt::format("{}", fmt::join(s, ", "));
}

Result<SmmuFeatures> decode_features(const host::HwInfo& hw) {
  if (hw.type != host::uapi::kHwInfoTypeArmSmmuv3)
    return fail(EOPNOTSUPP, kWhere, "the device's IOMMU is not an ARM SMMUv3 (GET_HW_INFO type {})", hw.type);
  SmmuFeatures f;
  f.id = IdFeatures::of(hw.id_registers());
  f.errata_repeat_tlbi_cfgi = hw.flags & host::uapi::kHwInfoArmSmmuv3ErrataRepeatTlbiCfgi;
  return f;
}

const char* to_string(NestingVerdict v) {
  switch (v) {
    case NestingVerdict::possible: return "possible";
    case NestingVerdict::not_possible: return "not_possible";
    case NestingVerdict::unknown: break;
  }
  return "unknown";
}

std::size_t ProbeReport::possible() const {
  return static_cast<std::size_t>(
      std::count_if(devices.begin(), devices.end(), [](const DeviceReport& d) { return d.verdict == NestingVerdict::possible; }));
}

DeviceReport probe_device(host::Host& host, const std::string& device) {
  DeviceReport r;
  r.device = device;
  auto dev = host.bind_device(device);
  if (!record(r, "bind", dev)) {
    conclude(r);
    return r;
  }
  {
    host::BoundDevice bound(host, *dev);
    r.location = host.device_location(*dev);
    if (auto regions = host.reserved_regions(*dev)) r.msi_window = host::msi_window(*regions);
    else r.msi_window_error = regions.error();
    auto hw = host.get_hw_info(*dev);
    if (record(r, "GET_HW_INFO", hw)) {
      r.hw_info = *hw;
      auto features = decode_features(*hw);
      if (record(r, "ARM SMMUv3", features)) {
        r.features = *features;
        prove_nesting(host, *dev, r);
      }
    }
  }  // unbound here: the device blocks DMA again, as before the probe
  conclude(r);
  return r;
}


namespace {

// Each auto wish's value in `guest` (derived with default wishes) and the rule that gave it (VsmmuWishes).
std::vector<AutoValue> auto_values_of(const smmu::IdFeatures& host, std::uint64_t capabilities, const GuestIdRegisters& guest) {
  const smmu::IdFeatures g = smmu::IdFeatures::of(guest);
  const unsigned oas = g.oas_bits();
  const std::string oas_why = oas < host.oas_bits()
      ? fmt::format("the physical SMMU has {}; auto stops at {} (a VMM may ask for more)", host.oas_bits(), kMaxAutoOasBits)
      : std::string("the physical SMMU's");
  std::string ssid_why = "the physical SMMU's";
  if (g.ssidsize < host.ssidsize)
    ssid_why = host.cd2l ? fmt::format("the physical SMMU has {}; at most {}", host.ssidsize, kMaxSsidBits)
                         : fmt::format("the physical SMMU has {}, without 2-level CD tables (IDR0.CD2L=0): at most {}",
                                       host.ssidsize, kMaxLinearSsidBits);
  const bool stalls = g.stall_model != smmu::StallModel::terminate;
  return {
      {"oas_bits", oas, oas_why},
      {"ipa_bits", oas, "the OAS"},
      {"ssid_bits", g.ssidsize, ssid_why},
      {"ril", g.ril, "the physical SMMU's"},
      {"ats", g.ats,
       !host.ats ? "the physical SMMU has no ATS"
       : (capabilities & host::uapi::kCapPciAtsNotSupported) && !g.ats
           ? "a device behind it cannot use ATS (IOMMU_HW_CAP_PCI_ATS_NOT_SUPPORTED); on for a vSMMU whose first device can"
           : "the physical SMMU's"},
      {"stall", stalls,
       stalls ? "the physical SMMU's stall model (given only where the host kernel has fault queues)"
                    : "the physical SMMU terminates faulting transactions"},
      {"msi", g.msi, g.msi ? "the VMM delivers the vSMMU's MSIs"
                           : "on only for a VMM that delivers the vSMMU's MSIs (set_msi_handler, kCreateMsiDelivery)"},
  };
}

}  // namespace

ProbeReport probe(host::Host& host, const std::vector<std::string>& devices) {
  ProbeReport report;
  report.host = host.name();
  for (const auto& d : devices) report.devices.push_back(probe_device(host, d));

  std::vector<std::string> keys;
  for (std::size_t i = 0; i < report.devices.size(); ++i) {
    const auto& d = report.devices[i];
    if (!d.hw_info || !d.features) continue;
    const std::string key = d.location.smmu.empty() ? idr_key(*d.hw_info) : d.location.smmu;
    auto it = std::find(keys.begin(), keys.end(), key);
    if (it == keys.end()) {
      keys.push_back(key);
      SmmuGroup g;
      g.named_by_host = !d.location.smmu.empty();
      g.name = g.named_by_host ? d.location.smmu : fmt::format("SMMU {} (identical ID registers)", keys.size() - 1);
      g.hw_info = *d.hw_info;
      g.features = *d.features;
      report.smmus.push_back(std::move(g));
      it = keys.end() - 1;
    }
    auto& g = report.smmus[static_cast<std::size_t>(it - keys.begin())];
    // One vSMMU serves every device of the group: it may promise ATS only if none lacks it.
    g.hw_info.capabilities |= d.hw_info->capabilities & host::uapi::kCapPciAtsNotSupported;
    g.devices.push_back(i);
  }
  for (auto& g : report.smmus) {
    const bool any = std::any_of(g.devices.begin(), g.devices.end(),
                                 [&](std::size_t i) { return report.devices[i].verdict == NestingVerdict::possible; });
    g.guest = any ? derive_id_registers(g.hw_info, VsmmuWishes{}, fmt::format("a vSMMU on {}", g.name))
                  : fail(EOPNOTSUPP, kWhere, "no vSMMU: no device behind {} can nest", g.name);
    if (g.guest) g.auto_values = auto_values_of(g.features.id, g.hw_info.capabilities, *g.guest);
  }
  return report;
}

}  // namespace vsmmu::nesting

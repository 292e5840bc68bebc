// Stream binding: devices join a physical SMMU's vIOMMU, and each device's vSTE (or GBPA while SMMUEN = 0)
// becomes the host HWPT it is attached to (IHI 0070 5.2, 6.3.14; kernel-uapi.md "arm-smmu-v3 nesting rules").
#include <algorithm>
#include <cstring>

#include "base/try.hpp"
#include "nesting/virtual_smmu.hpp"
#include "nesting/virtual_smmu_state.hpp"
#include "smmu/command_legality.hpp"
#include "base/log.hpp"
#include "smmu/stream_table.hpp"

namespace vsmmu::nesting {

using namespace smmu;

namespace {

constexpr const char* kWhere = "vsmmu";

// The vSTE fields the host takes for a stage-1 stream (the kernel refuses any other bit with EIO).
constexpr std::uint64_t kVsteWord0 = mask_of<0>(Ste::V, Ste::Config, Ste::S1Fmt, Ste::S1ContextPtr, Ste::S1CDMax);
constexpr std::uint64_t kVsteWord1 = mask_of<1>(Ste::S1DSS, Ste::S1CIR, Ste::S1COR, Ste::S1CSH, Ste::S1STALLD);

Ste config_ste(StreamConfig config) { return Ste{}.set(Ste::V, true).set(Ste::Config, config); }

std::span<const std::byte> vste_bytes(const std::array<std::uint64_t, 2>& words) {
  return std::as_bytes(std::span(words));
}

const char* state_name(StreamState s) {
  switch (s) {
    case StreamState::blocked: return "blocked";
    case StreamState::abort: return "abort";
    case StreamState::bypass: return "bypass";
    case StreamState::translate: return "translate";
  }
  return "?";
}

// The same guest registers from two physical SMMUs, or the first field that differs.
std::optional<std::string> first_difference(const GuestIdRegisters& a, const GuestIdRegisters& b) {
  const std::array<std::pair<const char*, std::pair<std::uint32_t, std::uint32_t>>, 8> regs{{
      {"IDR0", {a.idr0.value(), b.idr0.value()}}, {"IDR1", {a.idr1.value(), b.idr1.value()}},
      {"IDR2", {a.idr2.value(), b.idr2.value()}}, {"IDR3", {a.idr3.value(), b.idr3.value()}},
      {"IDR4", {a.idr4.value(), b.idr4.value()}}, {"IDR5", {a.idr5.value(), b.idr5.value()}},
      {"IIDR", {a.iidr.value(), b.iidr.value()}}, {"AIDR", {a.aidr.value(), b.aidr.value()}},
  }};
  for (const auto& [name, v] : regs)
    if (v.first != v.second) return fmt::format("{} would be {:#010x} here but the guest sees {:#010x}", name, v.second, v.first);
  return std::nullopt;
}

// The wishes that reproduce `g` exactly on another physical SMMU (every "auto" resolved).
VsmmuWishes pinned(const VsmmuWishes& w, const GuestIdRegisters& g) {
  VsmmuWishes p = w;
  p.oas_bits = g.idr5.oas_bits();
  p.sid_bits = static_cast<unsigned>(g.idr1.get(Idr1::SIDSIZE));
  p.ssid_bits = static_cast<unsigned>(g.idr1.get(Idr1::SSIDSIZE));
  p.ril = g.idr3.get(Idr3::RIL);
  p.ats = g.idr0.get(Idr0::ATS);
  p.st_level = g.idr0.get(Idr0::ST_LEVEL);
  p.tt_endian = g.idr0.get(Idr0::TTENDIAN);
  p.gran4k = g.idr5.get(Idr5::GRAN4K);
  p.gran16k = g.idr5.get(Idr5::GRAN16K);
  p.gran64k = g.idr5.get(Idr5::GRAN64K);
  return p;
}

}  // namespace

// ---- devices -----------------------------------------------------------------------------------------------

Result<void> VirtualSmmu::add_device_locked(DeviceSpec spec) {
  auto dev = std::make_unique<Device>();
  dev->vsid = spec.vsid;
  dev->name = spec.path.empty() ? fmt::format("fd {}", spec.fd) : spec.path;
  const std::string what = device_name(*dev);
  // A vSID wider than SIDSIZE could never be named by the guest's commands (kernel-uapi.md: refuse it yourself).
  const auto vsid_fits = [&](const GuestIdRegisters& ids) -> Result<void> {
    if (std::uint64_t{spec.vsid} >> ids.idr1.get(Idr1::SIDSIZE) == 0) return {};
    return fail(EINVAL, kWhere, "{}: vSID {:#x} does not fit the vSMMU's {} StreamID bits (IDR1.SIDSIZE)", what,
                spec.vsid, ids.idr1.get(Idr1::SIDSIZE));
  };
  if (devices_.contains(spec.vsid))
    return fail(EEXIST, kWhere, "{}: vSID {:#x} is already used by {}", what, spec.vsid, devices_[spec.vsid]->name);
  if (regs_)
    VSMMU_TRY(vsid_fits(ids_));

  ++stats_.host_calls;
  auto id = spec.fd >= 0 ? host_.bind_device_fd(spec.fd) : host_.bind_device(spec.path);
  if (!id) return fail(id.error(), kWhere, "{}: binding to iommufd", what);
  dev->bound = host::BoundDevice(host_, *id);

  ++stats_.host_calls;
  auto hw = host_.get_hw_info(*id);
  if (!hw) return fail(hw.error(), kWhere, "{}: IOMMU_GET_HW_INFO", what);
  if (!regs_) {
    VSMMU_TRY_ASSIGN(auto ids, derive_id_registers(*hw, config_.wishes, what));
    VSMMU_TRY(vsid_fits(ids));
    ids_ = ids;
  } else {
    // Every physical SMMU behind one vSMMU must give the guest the same registers.
    VSMMU_TRY_ASSIGN(auto ids, derive_id_registers(*hw, pinned(config_.wishes, ids_), what));
    if (auto diff = first_difference(ids_, ids))
      return fail(EINVAL, kWhere, "{}: its physical SMMU differs from the one the guest already sees: {}; put it "
                  "behind another vSMMU", what, *diff);
  }

  VSMMU_TRY_ASSIGN(auto smmu, join_physical_smmu(*dev, what));
  dev->smmu = smmu;
  ++stats_.host_calls;
  auto vdev = host_.vdevice_alloc(dev->smmu->viommu.id(), *id, spec.vsid);
  if (!vdev) return fail(vdev.error(), kWhere, "{}: IOMMU_VDEVICE_ALLOC", what);
  dev->vdevice = host::HostObject(host_, *vdev);

  if (!regs_) {
    regs_ = std::make_unique<RegisterFile>(memory_.view(), ids_, static_cast<RegisterEffects&>(*this), config_.gbpa_abort_at_reset);
    features_ = command_features(ids_);
  }
  Device& d = *dev;
  devices_.emplace(spec.vsid, std::move(dev));
  if (auto r = reinstall(d); !r) {
    // The host could not give the device its configuration (GBPA, or even abort): the VMM learns it now.
    devices_.erase(spec.vsid);
    return fail(r.error(), kWhere, "{}", what);
  }
  log::info(kWhere, "{}: joined {} ({})", what, d.smmu->label, state_name(d.state));
  return {};
}

// The vIOMMU of the device's physical SMMU: an existing one if the device sits behind it, else a new one.
// VIOMMU_ALLOC is also the coherency check: the kernel grants it only with S2FWB or a CANWBS root complex, so
// it is asked for every device, and the probe is released again when the device joins an existing vIOMMU.
Result<VirtualSmmu::PhysicalSmmu*> VirtualSmmu::join_physical_smmu(Device& dev, const std::string& what) {
  for (auto& p : smmus_) {
    ++stats_.host_calls;
    auto probe = host_.viommu_alloc(dev.bound.id(), p->parent.id(), host::uapi::kViommuTypeArmSmmuv3);
    if (probe) {
      host::HostObject release(host_, *probe);
      return p.get();
    }
    if (probe.error().err == EINVAL) continue;  // the nest parent belongs to another physical SMMU
    return fail(probe.error(), kWhere, "{}: cannot nest", what);
  }
  ++stats_.host_calls;
  auto hw = host_.get_hw_info(dev.bound.id());
  if (!hw) return fail(hw.error(), kWhere, "{}: IOMMU_GET_HW_INFO", what);
  VSMMU_TRY_ASSIGN(auto p, new_physical_smmu(dev, *hw, what));
  smmus_.push_back(std::move(p));
  return smmus_.back().get();
}

Result<std::unique_ptr<VirtualSmmu::PhysicalSmmu>> VirtualSmmu::new_physical_smmu(Device& dev, const host::HwInfo& hw,
                                                                                const std::string& what) {
  auto p = std::make_unique<PhysicalSmmu>();
  p->label = fmt::format("physical SMMU {} (first device {})", smmus_.size(), dev.name);
  p->hw = hw;
  p->repeat_invalidations = (hw.flags & host::uapi::kHwInfoArmSmmuv3ErrataRepeatTlbiCfgi) != 0;

  host::HwptAllocRequest parent;
  parent.flags = host::uapi::kHwptAllocNestParent;
  parent.dev_id = dev.bound.id();
  parent.pt_id = memory_.ioas();
  ++stats_.host_calls;
  auto parent_id = host_.hwpt_alloc(parent);
  if (!parent_id) return fail(parent_id.error(), kWhere, "{}: the stage-2 (NEST_PARENT) HWPT", what);
  p->parent = host::HostObject(host_, *parent_id);

  ++stats_.host_calls;
  auto viommu = host_.viommu_alloc(dev.bound.id(), p->parent.id(), host::uapi::kViommuTypeArmSmmuv3);
  if (!viommu) return fail(viommu.error(), kWhere, "{}: cannot nest", what);
  p->viommu = host::HostObject(host_, *viommu);

  for (auto [config, slot] : {std::pair{StreamConfig::abort, &p->abort_hwpt}, std::pair{StreamConfig::bypass, &p->bypass_hwpt}}) {
    const Ste ste = config_ste(config);
    const std::array<std::uint64_t, 2> words{ste.dw[0], ste.dw[1]};
    host::HwptAllocRequest req;
    req.dev_id = dev.bound.id();
    req.pt_id = p->viommu.id();
    req.data_type = host::uapi::kHwptDataArmSmmuv3;
    req.data = vste_bytes(words);
    ++stats_.host_calls;
    auto id = host_.hwpt_alloc(req);
    if (!id)
      return fail(id.error(), kWhere, "{}: the {} HWPT", what, config == StreamConfig::abort ? "abort" : "bypass");
    *slot = host::HostObject(host_, *id);
  }
  if (regs_ && regs_->cr0().get(Cr0::EVENTQEN)) {
    // Hot-plug while the guest's event queue runs: this vIOMMU needs its vEVENTQ now.
    VSMMU_TRY(open_event_queue(*p, what));
  }
  return p;
}

// Physical SMMUs no device sits behind any more (its last device was removed, or a hot-plugged device failed
// after its vIOMMU was made): their nest parent, vIOMMU, HWPTs and vEVENTQ have no reason to live on.
void VirtualSmmu::drop_unused_smmus() {
  std::erase_if(smmus_, [&](const std::unique_ptr<PhysicalSmmu>& p) {
    return std::ranges::none_of(devices_, [&](const auto& d) { return d.second->smmu == p.get(); });
  });
}

// ---- streams -----------------------------------------------------------------------------------------------

std::optional<VirtualSmmu::HostRefusal> VirtualSmmu::reinstall_streams(const invalidation::SidRange& sids,
                                                                       std::uint32_t guest_index) {
  for (auto& p : smmus_) {
    p->entries.clear();
    p->guest_index.clear();
  }
  for (auto it = devices_.lower_bound(sids.first); it != devices_.end() && sids.contains(it->first); ++it) {
    Device& d = *it->second;
    (void)reinstall(d);  // the device blocks or aborts; why is in its StreamStatus and the log
    if (!std::exchange(d.cds_stale, false)) continue;
    // A CFGI_STE invalidates every CD cached through the STE (IHI 0070 4.3.1). The host's STE did not change
    // (same nested HWPT), so the kernel invalidated nothing: ask for it.
    d.smmu->entries.push_back(Command{}.set(Command::Opcode, Opcode::CFGI_CD_ALL).set(Command::SID, d.vsid));
    d.smmu->guest_index.push_back(guest_index);
  }
  std::optional<HostRefusal> first_bad;
  for (auto& p : smmus_)
    if (auto bad = invalidate(*p); bad && !first_bad) first_bad = bad;
  return first_bad;
}

// Why a vSTE with V = 1 is ILLEGAL on this stage-1-only vSMMU (IHI 0070 5.2 "STE validity"), or nullopt.
std::optional<std::string> VirtualSmmu::check_vste(const Ste& ste) const {
  const StreamConfig config = ste.get(Ste::Config);
  if (is_reserved(config)) return fmt::format("Config {:#x} is reserved", ste.raw(Ste::Config));
  if (has_stage2(config)) return "Config asks for stage 2, which this vSMMU does not implement (IDR0.S2P = 0)";
  if (config != StreamConfig::s1_translate) return std::nullopt;
  const std::uint64_t cdmax = ste.get(Ste::S1CDMax);
  if (cdmax > ids_.idr1.get(Idr1::SSIDSIZE))
    return fmt::format("S1CDMax {} exceeds IDR1.SSIDSIZE {}", cdmax, ids_.idr1.get(Idr1::SSIDSIZE));
  if (cdmax != 0) {
    if (ste.get(Ste::S1Fmt) == CdTableFormat::reserved) return "S1Fmt is reserved";
    if (ste.get(Ste::S1Fmt) != CdTableFormat::linear && !ids_.idr0.get(Idr0::CD2L))
      return "S1Fmt asks for a 2-level CD table, which IDR0.CD2L does not offer";
    if (ste.get(Ste::S1DSS) == S1Dss::reserved) return "S1DSS is reserved";
  }
  if (ids_.idr0.get(Idr0::ATS)) {
    const Eats eats = ste.get(Ste::EATS);
    if (eats == Eats::s1chk || eats == Eats::reserved)
      return fmt::format("EATS {} needs stage 2 or is reserved", static_cast<unsigned>(eats));
  }
  if (ste.get(Ste::S1ContextPtr) >> ids_.idr5.oas_bits() != 0)
    return fmt::format("S1ContextPtr {:#x} is above the {}-bit OAS", ste.get(Ste::S1ContextPtr), ids_.idr5.oas_bits());
  return std::nullopt;
}

void VirtualSmmu::record_bad_ste(std::uint32_t vsid) {
  regs_->record_event(Event{}.set(Event::ID, EventId::C_BAD_STE).set(Event::SID, vsid));
}

// Re-reads the device's configuration (its vSTE, or GBPA while SMMUEN = 0) and attaches what it says. Fails
// only when the host left the device doing something else and the guest was not told (no C_BAD_STE): GBPA
// could not be followed, or the device had to be detached. A guest register write cannot fail; a VMM call
// (add_device) does.
Result<void> VirtualSmmu::reinstall(Device& dev) {
  ++stats_.ste_reinstalls;
  dev.problem.reset();
  if (!regs_->cr0().get(Cr0::SMMUEN)) {
    // GBPA: abort or bypass every stream (IHI 0070 6.3.14); its attributes are the host's business.
    auto r = attach(dev, regs_->gbpa().get(Gbpa::ABORT) ? StreamState::abort : StreamState::bypass, nullptr);
    if (!r) dev.problem = r.error().message;
    return r;
  }
  auto loc = locate_ste(memory_.view(), ids_, regs_->strtab_base(), regs_->strtab_base_cfg(), dev.vsid);
  std::optional<Ste> ste;
  if (loc) {
    auto read = memory_.view().read_record<Ste>(loc->address);
    if (read) ste = *read;
    else loc = std::unexpected(SteLookupFailure{SteLookupFailure::Kind::fetch_abort, loc->address});
  }
  if (!ste) {
    const auto& f = loc.error();
    if (f.kind == SteLookupFailure::Kind::fetch_abort) {
      // The STE (or the level-1 descriptor locating it) is outside guest RAM: the fetch aborts, F_STE_FETCH
      // with its address (IHI 0070 7.3.4). Hardware records it when a transaction makes the fetch; the host's
      // abort HWPT never shows the vSMMU one, so it is recorded when the vSMMU makes the fetch - at the
      // CFGI_STE* or SMMUEN that asks it to - once per read, as C_BAD_STE is. No guest driver places its
      // stream table outside RAM, so a well-behaved guest never sees one.
      dev.problem = fmt::format("its STE could not be fetched at {:#x}: not in guest RAM (F_STE_FETCH)", f.fetch_address);
      log::info(kWhere, "{}: aborts: {}", device_name(dev), *dev.problem);
      regs_->record_event(Event{}.set(Event::ID, EventId::F_STE_FETCH).set(Event::SID, dev.vsid)
                              .set(Event::FetchAddr, f.fetch_address));
    } else {
      // The StreamID is outside the stream table, or its level-1 descriptor has no level-2 table yet: the stream
      // aborts. Hardware would raise C_BAD_STREAMID on the device's next transaction, which the host's abort
      // HWPT never reports; recording it here instead would flood a guest that enables SMMUEN before it makes
      // its level-2 tables (Linux does), so it is only logged.
      dev.problem = std::string("its StreamID is outside the stream table (no level-2 table for it yet?)");
      log::debug(kWhere, "{}: aborts: {}", device_name(dev), *dev.problem);
    }
    return attach(dev, StreamState::abort, nullptr);
  }
  if (!ste->get(Ste::V)) {
    // V = 0: no configuration; the host treats it as abort (kernel-uapi.md: "V=0: treated as abort").
    return attach(dev, StreamState::abort, nullptr);
  }
  if (auto problem = check_vste(*ste)) {
    ++stats_.bad_stes;
    dev.problem = *problem;
    log::info(kWhere, "{}: C_BAD_STE: {}", device_name(dev), *problem);
    record_bad_ste(dev.vsid);
    return attach(dev, StreamState::abort, nullptr);
  }
  const StreamConfig config = ste->get(Ste::Config);
  if (config == StreamConfig::abort) return attach(dev, StreamState::abort, nullptr);
  const StreamState want = config == StreamConfig::bypass ? StreamState::bypass : StreamState::translate;
  if (auto r = attach(dev, want, want == StreamState::translate ? &*ste : nullptr); !r) {
    // The host refused the vSTE (the kernel's own checks) or could not attach its HWPT: to the guest, an
    // ILLEGAL STE, never a stream that silently stopped doing what its STE says. attach() left the device
    // aborting (or detached), except when a nested HWPT could not even be allocated: then it still has its
    // previous configuration, which its new STE replaced.
    ++stats_.bad_stes;
    dev.problem = r.error().message;
    record_bad_ste(dev.vsid);
    if (dev.state == StreamState::translate || dev.state == StreamState::bypass) return attach(dev, StreamState::abort, nullptr);
    if (dev.state == StreamState::blocked) return std::unexpected(r.error());
  }
  return {};
}

// Attaches the device to the HWPT for `state` (for translate: the nested HWPT for *vste, shared by identical
// vSTEs). Attaching while attached is an atomic replace; the old HWPT is released after. If even the abort
// HWPT cannot be attached, the device is detached: it blocks DMA either way.
Result<void> VirtualSmmu::attach(Device& dev, StreamState state, const Ste* vste) {
  PhysicalSmmu& p = *dev.smmu;
  if (state != StreamState::translate && state == dev.state) {
    ++stats_.ste_unchanged;  // already attached to the abort or bypass HWPT
    return {};
  }
  std::shared_ptr<NestedHwpt> hwpt;
  host::ObjectId target = 0;
  if (state == StreamState::translate) {
    std::array<std::uint64_t, 2> words{vste->dw[0] & kVsteWord0, vste->dw[1] & kVsteWord1};
    if (ids_.idr0.get(Idr0::ATS)) words[1] |= vste->dw[1] & mask_of<1>(Ste::EATS);
    if (vste->get(Ste::S1CDMax) == 0) {
      // Without substreams S1Fmt and S1DSS are ignored (IHI 0070 5.2): clear them so equal streams share.
      Ste s{};
      s.dw[0] = words[0];
      s.dw[1] = words[1];
      s.set(Ste::S1Fmt, CdTableFormat::linear).set(Ste::S1DSS, S1Dss::terminate);
      words = {s.dw[0], s.dw[1]};
    }
    if (dev.state == StreamState::translate && dev.hwpt && dev.hwpt->vste == words) {
      // The same vSTE: attaching its HWPT again would change nothing on the host (the kernel returns early for
      // a domain replaced by itself), so nothing is attached; its CDs still need invalidating.
      ++stats_.ste_unchanged;
      dev.cds_stale = true;
      return {};
    }
    if (auto it = p.nested.find(words); it != p.nested.end()) hwpt = it->second.lock();
    if (hwpt) {
      ++stats_.hwpt_shared;
    } else {
      host::HwptAllocRequest req;
      req.dev_id = dev.bound.id();
      req.pt_id = p.viommu.id();
      req.data_type = host::uapi::kHwptDataArmSmmuv3;
      req.data = vste_bytes(words);
      ++stats_.host_calls;
      auto id = host_.hwpt_alloc(req);
      if (!id) return fail(id.error(), kWhere, "the host refused the vSTE {:#018x} {:#018x}", words[0], words[1]);
      ++stats_.hwpt_allocs;
      hwpt = std::make_shared<NestedHwpt>();
      hwpt->hwpt = host::HostObject(host_, *id);
      hwpt->vste = words;
      std::erase_if(p.nested, [](const auto& e) { return e.second.expired(); });
      p.nested[words] = hwpt;
    }
    target = hwpt->hwpt.id();
  } else {
    target = state == StreamState::bypass ? p.bypass_hwpt.id() : p.abort_hwpt.id();
  }
  ++stats_.host_calls;
  ++stats_.attaches;
  if (auto r = host_.attach(dev.bound.id(), target); !r) {
    log::error(kWhere, "{}: attaching HWPT {} ({}) failed: {}", device_name(dev), target, state_name(state), r.error());
    if (state != StreamState::abort) {
      // The stream cannot have what its configuration asks: it aborts, and the caller learns why (for a
      // translating vSTE the guest gets C_BAD_STE rather than a stream that silently stopped translating).
      (void)attach(dev, StreamState::abort, nullptr);
      return fail(r.error(), kWhere, "attaching the {} HWPT failed", state_name(state));
    }
    dev.attachment = {};  // detach: the device blocks DMA
    dev.hwpt.reset();
    dev.state = StreamState::blocked;
    dev.problem = fmt::format("no HWPT could be attached: {}", r.error().message);
    return fail(r.error().err, kWhere, "{}: {}", device_name(dev), *dev.problem);
  }
  dev.attachment.release();  // the replace happened; keep one owner of the attachment
  dev.attachment = host::Attachment(host_, dev.bound.id());
  dev.hwpt = std::move(hwpt);  // the previous nested HWPT, if no other device shares it, goes now
  dev.state = state;
  return {};
}

}  // namespace vsmmu::nesting

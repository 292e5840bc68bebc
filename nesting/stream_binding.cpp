// Stream binding: devices join the Viommu of their physical SMMU, and each device's vSTE (or GBPA while
// SMMUEN = 0) is read from guest RAM, checked, and installed on it (IHI 0070 5.2, 6.3.14; the host's side of
// each step is nesting/viommu.cpp).
#include <algorithm>
#include <cstring>

#include "base/try.hpp"
#include "nesting/virtual_smmu.hpp"
#include "nesting/virtual_smmu_state.hpp"
#include "smmu/command_legality.hpp"
#include "base/log.hpp"
#include "smmu/id_features.hpp"
#include "smmu/stream_table.hpp"

namespace vsmmu::nesting {

using namespace smmu;

namespace {

constexpr const char* kWhere = "vsmmu";

// A device as messages name it: its cdev path (or sim device name), or the fd the VMM passed.
std::string spec_name(const DeviceSpec& spec) { return spec.path.empty() ? fmt::format("fd {}", spec.fd) : spec.path; }
std::string describe_device(const std::string& vsmmu, const std::string& device, std::uint32_t vsid) {
  return fmt::format("{} device {} (vSID {:#x})", vsmmu, device, vsid);
}

}  // namespace

// ---- devices -----------------------------------------------------------------------------------------------

std::string VirtualSmmu::device_name(const Device& d) const { return describe_device(config_.name, d.name, d.vsid); }

Result<VirtualSmmu::BoundCandidate> VirtualSmmu::bind(host::Host& host, const std::string& vsmmu_name, DeviceSpec spec,
                                                      std::uint64_t& host_calls) {
  BoundCandidate c;
  c.dev = std::make_unique<Device>();
  c.dev->vsid = spec.vsid;
  c.dev->name = spec_name(spec);
  c.what = describe_device(vsmmu_name, c.dev->name, spec.vsid);
  ++host_calls;
  auto id = spec.fd >= 0 ? host.bind_device_fd(spec.fd) : host.bind_device(spec.path);
  if (!id) return fail(id.error(), kWhere, "{}: binding to iommufd", c.what);
  c.dev->bound = host::BoundDevice(host, *id);
  ++host_calls;
  auto hw = host.get_hw_info(*id);
  if (!hw) return fail(hw.error(), kWhere, "{}: IOMMU_GET_HW_INFO", c.what);
  c.hw = *hw;
  // Not an ioctl either (the firmware's dma-can-stall): a host that cannot tell leaves the device terminating.
  if (auto stall = host.device_can_stall(*id); stall) c.dev->can_stall = *stall;
  else log::warn(kWhere, "{}: whether it can stall is unknown, so its faults are not forwarded as stalls: {}", c.what,
                 stall.error());
  // Not an ioctl (sysfs on a kernel host): not counted as a host call. Without it the device still nests; only
  // the RAM check and the MSI diagnosis (docs/interrupts.md) are lost.
  if (auto regions = host.reserved_regions(*id); regions)
    c.dev->msi_window = host::msi_window(*regions);
  else
    log::warn(kWhere, "{}: the host's reserved regions are unknown, so guest RAM is not checked against its MSI "
              "window and its MSI faults are not diagnosed: {}", c.what, regions.error());
  return c;
}

Result<void> VirtualSmmu::add_device_locked(DeviceSpec spec) {
  const std::string what = describe_device(config_.name, spec_name(spec), spec.vsid);
  if (auto it = devices_.find(spec.vsid); it != devices_.end())
    return fail(EEXIST, kWhere, "{}: vSID {:#x} is already used by {}", what, spec.vsid, it->second->name);
  VSMMU_TRY(vsid_fits(spec.vsid, what));
  VSMMU_TRY_ASSIGN(auto c, bind(host_, config_.name, std::move(spec), stats_.host_calls));
  // Every physical SMMU behind one vSMMU must give the guest the same registers.
  VSMMU_TRY_ASSIGN(const auto ids, derive_id_registers(c.hw, pinned(config_.wishes, ids_), c.what));
  if (auto diff = first_difference(ids_, ids))
    return fail(EINVAL, kWhere, "{}: its physical SMMU differs from the one the guest already sees: {}; put it "
                "behind another vSMMU", c.what, *diff);
  return add_bound_device_locked(std::move(c));
}

// A vSID wider than SIDSIZE could never be named by the guest's commands, and the kernel does not refuse it
// (drivers/iommu/iommufd/viommu.c iommufd_vdevice_alloc_ioctl takes any 64-bit virt_id): refused here.
Result<void> VirtualSmmu::vsid_fits(std::uint32_t vsid, const std::string& what) const {
  if (std::uint64_t{vsid} >> guest_.sidsize == 0) return {};
  return fail(EINVAL, kWhere, "{}: vSID {:#x} does not fit the vSMMU's {} StreamID bits (IDR1.SIDSIZE)", what, vsid,
              guest_.sidsize);
}

Result<void> VirtualSmmu::add_bound_device_locked(BoundCandidate c) {
  Device& d = *c.dev;
  const std::string& what = c.what;
  VSMMU_TRY(vsid_fits(d.vsid, what));
  if (d.msi_window) {
    VSMMU_TRY_ASSIGN(d.msi_reservation, memory_.reserve_msi_window(*d.msi_window, what));
  }
  VSMMU_TRY_ASSIGN(d.viommu, join_viommu(d, c.hw, what));
  VSMMU_TRY_ASSIGN(d.stream, d.viommu->open_stream(d.bound.id(), d.vsid, what));
  devices_.emplace(d.vsid, std::move(c.dev));
  if (auto r = reinstall(d); !r) {
    // The host could not give the device its configuration (GBPA, or even abort): the VMM learns it now.
    const std::uint32_t vsid = d.vsid;
    devices_.erase(vsid);
    return fail(r.error().err, kWhere, "{}: {}", what, r.error().message);
  }
  log::info(kWhere, "{}: joined {} ({})", what, d.viommu->label(), state_name(d.stream.state));
  if (d.msi_window) check_window_reserved(d);
  return {};
}

// The other source of the window: IOMMU_IOAS_IOVA_RANGES, where the kernel cuts every attached device's
// reserved regions out of the IOAS (drivers/iommu/iommufd/io_pagetable.c iopt_table_enforce_dev_resv_regions).
// The window the host reported should not be usable IOVA there once the device is attached; if it is, the host's
// two answers disagree, and the operator hears of it.
void VirtualSmmu::check_window_reserved(const Device& d) {
  if (d.stream.state == StreamState::blocked) return;  // not attached: the IOAS does not reserve it yet
  ++stats_.host_calls;
  auto ranges = host_.ioas_iova_ranges(memory_.ioas());
  if (!ranges) {
    log::warn(kWhere, "{}: cannot cross-check its MSI window with IOMMU_IOAS_IOVA_RANGES: {}", device_name(d),
              ranges.error());
    return;
  }
  if (const auto r = host::allowed_overlap(*d.msi_window, *ranges))
    log::warn(kWhere, "{}: the host lists {} as its MSI window, but IOAS {} still allows IOVA {}: the host's "
              "reserved regions and the IOAS disagree", device_name(d), host::to_string(*d.msi_window),
              memory_.ioas(), host::to_string(*r));
}

std::vector<DeviceMsiWindow> VirtualSmmu::msi_windows() const {
  std::lock_guard lock(mu_);
  std::vector<DeviceMsiWindow> out;
  for (const auto& [vsid, d] : devices_)
    if (d->msi_window) out.push_back(DeviceMsiWindow{vsid, d->name, *d->msi_window});
  return out;
}

// The Viommu of the device's physical SMMU: an existing one if the device sits behind it, else a new one.
// VIOMMU_ALLOC is also the coherency check: the kernel grants it only with S2FWB or a CANWBS root complex, so
// it is asked for every device (Viommu::accepts), and the probe is released again when the device joins.
Result<Viommu*> VirtualSmmu::join_viommu(Device& dev, const host::HwInfo& hw, const std::string& what) {
  for (auto& v : viommus_) {
    VSMMU_TRY_ASSIGN(const bool behind_it, v->accepts(dev.bound.id(), what));
    if (behind_it) return v.get();
  }
  VSMMU_TRY_ASSIGN(auto v, Viommu::create(host_, stats_, memory_.dirty(), dev.bound.id(), memory_.ioas(), hw,
                                          fmt::format("physical SMMU {} (first device {})", viommus_.size(), dev.name),
                                          what));
  if (regs_.cr0().get(Cr0::EVENTQEN)) {
    // Hot-plug while the guest's event queue runs: this vIOMMU needs its vEVENTQ now.
    VSMMU_TRY(v->enable_events(regs_.eventq_index().entries(), what));
  }
  viommus_.push_back(std::move(v));
  return viommus_.back().get();
}

// Viommus no device sits behind any more (its last device was removed, or a hot-plugged device failed after
// its vIOMMU was made): their nest parent, vIOMMU, HWPTs and vEVENTQ have no reason to live on.
void VirtualSmmu::drop_unused_viommus() {
  std::erase_if(viommus_, [&](const std::unique_ptr<Viommu>& v) {
    return std::ranges::none_of(devices_, [&](const auto& d) { return d.second->viommu == v.get(); });
  });
}

// ---- streams -----------------------------------------------------------------------------------------------

std::optional<HostRefusal> VirtualSmmu::reinstall_streams(const invalidation::SidRange& sids, std::uint32_t guest_index) {
  for (auto& v : viommus_) v->scratch().clear();
  for (auto it = devices_.lower_bound(sids.first); it != devices_.end() && sids.contains(it->first); ++it) {
    Device& d = *it->second;
    (void)reinstall(d);  // the device blocks or aborts; why is in its StreamStatus and the log
    if (!std::exchange(d.cds_stale, false)) continue;
    // A CFGI_STE invalidates every CD cached through the STE (IHI 0070 4.3.1). The host's STE did not change
    // (same nested HWPT), so the kernel invalidated nothing: ask for it.
    d.viommu->scratch().add(Command{}.set(Command::Opcode, Opcode::CFGI_CD_ALL).set(Command::SID, d.vsid), guest_index);
  }
  std::optional<HostRefusal> first_bad;
  for (auto& v : viommus_)
    if (auto bad = v->invalidate(v->scratch()); bad && !first_bad) first_bad = bad;
  return first_bad;
}

void VirtualSmmu::reinstall_all_streams() { (void)reinstall_streams(invalidation::SidRange{0, 1ULL << 32}); }

// Why a vSTE with V = 1 is ILLEGAL on this stage-1-only vSMMU (IHI 0070 5.2 "STE validity"), or nullopt.
std::optional<std::string> VirtualSmmu::check_vste(const Ste& ste) const {
  const StreamConfig config = ste.get(Ste::Config);
  if (is_reserved(config)) return fmt::format("Config {:#x} is reserved", ste.raw(Ste::Config));
  if (has_stage2(config)) return "Config asks for stage 2, which this vSMMU does not implement (IDR0.S2P = 0)";
  if (config != StreamConfig::s1_translate) return std::nullopt;
  const std::uint64_t cdmax = ste.get(Ste::S1CDMax);
  if (cdmax > guest_.ssidsize)
    return fmt::format("S1CDMax {} exceeds IDR1.SSIDSIZE {}", cdmax, guest_.ssidsize);
  if (cdmax != 0) {
    if (ste.get(Ste::S1Fmt) == CdTableFormat::reserved) return "S1Fmt is reserved";
    if (ste.get(Ste::S1Fmt) != CdTableFormat::linear && !guest_.cd2l)
      return "S1Fmt asks for a 2-level CD table, which IDR0.CD2L does not offer";
    if (ste.get(Ste::S1DSS) == S1Dss::reserved) return "S1DSS is reserved";
  }
  if (guest_.ats) {
    const Eats eats = ste.get(Ste::EATS);
    if (eats == Eats::s1chk || eats == Eats::reserved)
      return fmt::format("EATS {} needs stage 2 or is reserved", static_cast<unsigned>(eats));
  }
  if (ste.get(Ste::S1ContextPtr) >> guest_.oas_bits() != 0)
    return fmt::format("S1ContextPtr {:#x} is above the {}-bit OAS", ste.get(Ste::S1ContextPtr), guest_.oas_bits());
  return std::nullopt;
}

void VirtualSmmu::record_bad_ste(std::uint32_t vsid) {
  if (quiet_) return;  // loading a migrated state: the source's guest was told already
  regs_.record_event(Event{}.set(Event::ID, EventId::C_BAD_STE).set(Event::SID, vsid));
}

// Re-reads the device's configuration (its vSTE, or GBPA while SMMUEN = 0) and attaches what it says. Fails
// only when the host left the device doing something else and the guest was not told (no C_BAD_STE): GBPA
// could not be followed, or the device had to be detached. A guest register write cannot fail; a VMM call
// (add_device) does.
Result<void> VirtualSmmu::reinstall(Device& dev) {
  ++stats_.ste_reinstalls;
  dev.problem.reset();
  if (!regs_.cr0().get(Cr0::SMMUEN)) {
    // GBPA: abort or bypass every stream (IHI 0070 6.3.14); its attributes are the host's business.
    auto r = attach(dev, regs_.gbpa().get(Gbpa::ABORT) ? StreamState::abort : StreamState::bypass, nullptr);
    if (!r) dev.problem = r.error().message;
    return r;
  }
  auto loc = locate_ste(memory_.view(), ids_, regs_.strtab_base(), regs_.strtab_base_cfg(), dev.vsid);
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
      if (!quiet_) regs_.record_event(Event{}.set(Event::ID, EventId::F_STE_FETCH).set(Event::SID, dev.vsid)
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
    // V = 0: no configuration; the host treats it as abort (drivers/iommu/arm/arm-smmu-v3/arm-smmu-v3-iommufd.c
    // arm_smmu_validate_vste turns a non-valid vSTE into an abort STE).
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
    if (dev.stream.state == StreamState::translate || dev.stream.state == StreamState::bypass) return attach(dev, StreamState::abort, nullptr);
    if (dev.stream.state == StreamState::blocked) return std::unexpected(r.error());
  }
  return {};
}

// Installs `state` (and for translate *vste) on the device's Viommu. A translating stream whose vSTE did not
// change is left as it is, with its CDs owed a CFGI_CD_ALL (cds_stale).
Result<void> VirtualSmmu::attach(Device& dev, StreamState state, const Ste* vste) {
  const auto fault_queue = state == StreamState::translate ? fault_queue_for(dev, *vste) : std::nullopt;
  // A stream whose configuration changes has its stalls ended first (the guest cannot answer them through the
  // old configuration; the kernel would answer them itself on the replace, iommufd_auto_response_faults).
  if (stalls_.has_stream(dev.vsid) && !dev.viommu->unchanged(dev.stream, state, vste, guest_.ats, fault_queue))
    terminate_stalls(dev.vsid, "its configuration changed");
  auto changed = dev.viommu->install(dev.stream, state, vste, guest_.ats, fault_queue);
  if (!changed) {
    if (state != StreamState::abort) return std::unexpected(changed.error());
    dev.problem = changed.error().message;  // not even the abort HWPT could be attached: the device blocks DMA
    return fail(changed.error().err, kWhere, "{}: {}", device_name(dev), *dev.problem);
  }
  if (!*changed && state == StreamState::translate) dev.cds_stale = true;
  return {};
}

}  // namespace vsmmu::nesting

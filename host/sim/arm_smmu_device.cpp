#include "host/sim/arm_smmu_device.hpp"

#include <algorithm>

#include "base/try.hpp"
#include "smmu/format.hpp"
#include "base/log.hpp"
#include "smmu/id_features.hpp"

namespace vsmmu::host::sim {

namespace {

constexpr const char* kWhere = "sim.arm-smmu-v3";
constexpr std::uint64_t kImplementerArm = 0x43b;
constexpr std::uint64_t kProductMmu600 = 0x483;
constexpr std::uint64_t kProductMmu700 = 0x487;
// CMDQ_BATCH_ENTRIES (BITS_PER_LONG): the driver's command batches.
constexpr std::size_t kBatchEntries = 64;
// CMDQ_MAX_TLBI_OPS (1 << (PAGE_SHIFT - 3)): beyond this many per-page TLBIs, invalidate the whole VMID.
constexpr std::uint64_t kMaxTlbiOps = 512;
constexpr unsigned kPageShift = 12;
// Driver RAM: the stream table (at most a 2^16-entry level 1 or a 2^16-STE linear table), level-2 tables as
// devices need them, the command and event queues. Reserved address space, touched as used.
constexpr std::uint64_t kDriverRamBytes = 32ULL << 20;

bool has(const std::vector<std::string>& v, std::string_view s) { return std::find(v.begin(), v.end(), s) != v.end(); }

DriverFeatures probe_features(const SmmuSpec& spec) {
  // arm_smmu_device_hw_probe: the ARM_SMMU_FEAT_* flags and sizes from the decoded ID registers.
  const smmu::IdFeatures id = spec.features();
  DriverFeatures f;
  f.trans_s1 = id.s1p;
  f.trans_s2 = id.s2p;
  f.coherent = id.cohacc;
  f.ha = id.httu_access();
  f.hd = id.httu_dirty();
  f.s2fwb = id.fwb;
  f.range_inv = id.ril;
  f.ats = id.ats;
  f.stall_force = spec.config.idr0.get(smmu::Idr0::STALL_MODEL) == smmu::StallModel::stall_forced;
  f.stalls = f.stall_force || spec.config.idr0.get(smmu::Idr0::STALL_MODEL) == smmu::StallModel::stall_and_terminate;
  f.vmid_bits = id.vmid_bits();
  f.asid_bits = id.asid_bits();
  f.ssid_bits = id.ssidsize;
  f.oas_bits = id.oas_bits();
  f.ias_bits = f.oas_bits;
  f.nesting = f.trans_s1 && f.trans_s2;
  if (!f.nesting) f.nesting_off = f.trans_s1 ? "IDR0.S2P is 0 (no stage 2)" : "IDR0.S1P is 0 (no stage 1)";

  // arm_smmu_device_iidr_probe: the errata the IIDR implies, and those the profile lists.
  std::vector<std::string> errata = spec.errata;
  if (id.implementer == kImplementerArm) {
    const auto product = id.product_id;
    const auto variant = id.variant;
    const auto revision = id.revision;
    if (product == kProductMmu600 && variant < 2 && !has(errata, "1209401")) errata.push_back("1209401");
    if (product == kProductMmu700) {
      if (!has(errata, "2812531")) errata.push_back("2812531");
      if ((variant < 1 || (variant == 1 && revision < 1)) && !has(errata, "2268618")) errata.push_back("2268618");
    }
  }
  for (const auto& e : errata) {
    if (e == "1209401" && f.nesting) {
      f.nesting = false;
      f.nesting_off = "Arm erratum 1209401 (MMU-600 before r2p0) makes the driver clear nesting";
    }
    if (e == "2268618" && f.nesting) {
      f.nesting = false;
      f.nesting_off = "Arm erratum 2268618 (MMU-700 before r1p1) makes the driver clear nesting";
    }
    if (e == "2812531") f.force_sync = true;
    if (e == "T264-SMMU-3") f.repeat_tlbi_cfgi = true;
  }
  f.errata = std::move(errata);
  return f;
}

}  // namespace

Result<std::unique_ptr<ArmSmmuDevice>> ArmSmmuDevice::probe(const SmmuSpec& spec, HostMemory& mem) {
  std::unique_ptr<ArmSmmuDevice> d(new ArmSmmuDevice(spec, mem));
  d->features_ = probe_features(spec);

  auto model = smmu::model::SmmuModel::create(mem.bus(), spec.config);
  if (!model) return fail(model.error().err, kWhere, "SMMU \"{}\": the model refuses its ID registers: {}", spec.name,
                          model.error().message);
  d->model_ = std::move(*model);
  // The event-queue interrupt only marks the queue for the host to drain once the model's call returns (the
  // handler runs on the DMA's thread, which holds the host's lock: an IRQ thread, not a nested call).
  auto flag = d->eventq_irq_;
  d->model_->set_irq_handler(smmu::model::Irq::eventq, [flag] { flag->store(true); });

  VSMMU_TRY_ASSIGN(auto ram, MappedRegion::anonymous(kDriverRamBytes, "the stream table and queues"));
  d->ram_ = std::move(ram);
  VSMMU_TRY_ASSIGN(auto pa, mem.place(d->ram_.bytes(), 1ULL << 21, 0));
  d->ram_pa_ = pa;
  d->ram_alloc_.emplace(mem.memory(), pa, kDriverRamBytes);

  smmu::driver::Options options;
  options.name = fmt::format("SMMU \"{}\"", spec.name);
  // A linear table of at most 2^16 STEs (4MB); a 2-level one of at most 2^16 level-1 descriptors.
  options.sid_bits = spec.usable_sid_bits();
  options.eventq_log2 = 8;
  options.skip_command_errors = true;  // arm_smmu_cmdq_skip_err: logged and replaced by CMD_SYNC
  auto drv = smmu::driver::SmmuDriver::start(*d->model_, mem.memory(), *d->ram_alloc_, options);
  if (!drv) return fail(drv.error().err, kWhere, "SMMU \"{}\": bringing it up failed: {}", spec.name, drv.error().message);
  d->driver_.emplace(std::move(*drv));
  log::debug(kWhere, "SMMU \"{}\" up: nesting {}, S2FWB {}, HTTU dirty {}, RIL {}, errata [{}]", spec.name,
             d->features_.nesting, d->features_.s2fwb, d->features_.hd, d->features_.range_inv,
             fmt::join(d->features_.errata, ", "));
  return d;
}

ArmSmmuDevice::~ArmSmmuDevice() {
  driver_.reset();
  model_.reset();
  if (ram_) mem_.remove(ram_pa_);
}

Result<void> ArmSmmuDevice::install_ste(std::uint32_t sid, const smmu::Ste& ste) {
  VSMMU_TRY(driver_->write_ste(sid, ste));
  const std::array cmd{smmu::driver::cmd_cfgi_ste(sid)};
  return issue_cmdlist(cmd, true);
}

Result<void> ArmSmmuDevice::issue_cmdlist(std::span<const smmu::Command> cmds, bool sync) {
  if (cmds.empty() && !sync) return {};
  commands_ += cmds.size() + (sync ? 1 : 0);
  for (const auto& c : cmds) syncs_ += c.get(smmu::Command::Opcode) == smmu::Opcode::CMD_SYNC ? 1 : 0;
  syncs_ += sync ? 1 : 0;
  const std::uint64_t skipped = driver_->command_errors_skipped();
  // The driver waits for room and for the CMD_SYNC, skipping a command the SMMU stops on (logged) as Linux does.
  auto r = sync ? driver_->issue(cmds) : driver_->push(cmds);
  command_errors_ += driver_->command_errors_skipped() - skipped;
  return r;
}

Result<void> ArmSmmuDevice::issue_batched(std::span<const smmu::Command> cmds) {
  const std::size_t batch = features_.force_sync ? kBatchEntries - 1 : kBatchEntries;
  std::size_t at = 0;
  do {
    const std::size_t n = std::min(batch, cmds.size() - at);
    const bool last = at + n == cmds.size();
    VSMMU_TRY(issue_cmdlist(cmds.subspan(at, n), last || features_.force_sync));
    at += n;
  } while (at < cmds.size());
  return {};
}

Result<void> ArmSmmuDevice::tlb_inv_vmid(std::uint16_t vmid) {
  const std::array cmd{smmu::driver::cmd_tlbi_s12_vmall(vmid)};
  return issue_cmdlist(cmd, true);
}

Result<void> ArmSmmuDevice::tlb_inv_s2_range(std::uint16_t vmid, std::uint64_t iova, std::uint64_t size, bool nest_parent) {
  using smmu::Command;
  if (size == 0) return {};
  std::vector<Command> cmds;
  if (!features_.range_inv && (size >> kPageShift) > kMaxTlbiOps) {
    // Cheaper to drop the whole VMID than to send thousands of per-page TLBIs (arm_smmu_tlb_inv_range_domain).
    cmds.push_back(smmu::driver::cmd_tlbi_s12_vmall(vmid));
  } else {
    // No TTL hint: the range may hold blocks and pages.
    cmds = smmu::driver::tlbi_range(smmu::driver::cmd_tlbi_s2_ipa(vmid, 0, false), iova, size, 1ULL << kPageShift,
                                    smmu::Granule::k4K, features_.range_inv);
  }
  VSMMU_TRY(issue_batched(cmds));
  if (nest_parent) {
    // When the S2 changes, every nested S1 cached through it has to go too.
    const std::array one{smmu::driver::cmd_tlbi_nh_all(vmid)};
    return issue_cmdlist(one, true);
  }
  return {};
}

Result<void> ArmSmmuDevice::page_response(std::uint32_t sid, std::uint16_t stag, bool retry) {
  smmu::Command c;
  c.set(smmu::Command::Opcode, smmu::Opcode::RESUME)
      .set(smmu::Command::SID, sid)
      .set(smmu::Command::STAG, stag)
      .set(smmu::Command::Action, retry ? smmu::ResumeAction::retry : smmu::ResumeAction::abort);
  const std::array cmd{c};
  return issue_cmdlist(cmd, false);
}

Result<std::uint16_t> ArmSmmuDevice::alloc_vmid() {
  // ida_alloc_range(&smmu->vmid_map, 1, (1 << vmid_bits) - 1): VMID 0 is left for bypass and abort.
  const std::uint32_t limit = 1U << features_.vmid_bits;
  for (std::uint32_t v = 1; v < limit; ++v)
    if (!vmids_.count(static_cast<std::uint16_t>(v))) {
      vmids_.insert(static_cast<std::uint16_t>(v));
      return static_cast<std::uint16_t>(v);
    }
  return fail(ENOSPC, kWhere, "SMMU \"{}\": all {} VMIDs are in use; destroy a paging HWPT first", spec_.name, limit - 1);
}

void ArmSmmuDevice::free_vmid(std::uint16_t vmid) { vmids_.erase(vmid); }

std::vector<smmu::Event> ArmSmmuDevice::take_events() {
  if (!eventq_irq_->exchange(false)) return {};
  auto events = driver_->drain_events();
  if (!events) {
    log::error(kWhere, "SMMU \"{}\": reading the event queue failed: {}", spec_.name, events.error());
    return {};
  }
  return std::move(events->records);
}

}  // namespace vsmmu::host::sim

// Live migration of a vSMMU (docs/migration.md): save_state on the source, load_state on the destination. The
// state is the registers, the devices by vSID and the event records not yet in the guest's queue
// (nesting/migration_state.hpp); the rest is in guest RAM, which the VMM copies, and the destination rebuilds
// its host objects from it as the guest's tables say, as if the guest had just programmed them.
#include <algorithm>
#include <cstdint>

#include "base/log.hpp"
#include "base/try.hpp"
#include "nesting/virtual_smmu.hpp"
#include "nesting/virtual_smmu_state.hpp"

namespace vsmmu::nesting {

using namespace smmu;

namespace {
constexpr const char* kWhere = "vsmmu.migration";
}  // namespace

void VirtualSmmu::release_held_events() {
  holding_ = false;
  for (const Event& e : held_events_) (void)regs_.record_event(e);
  if (held_lost_ != 0) regs_.events_lost(held_lost_);
  log::info(kWhere, "{}: the guest is back after a save: {} held event record(s) delivered, {} lost", config_.name,
            held_events_.size(), held_lost_);
  held_events_.clear();
  held_lost_ = 0;
  (void)deliver_stall_events();  // stall records that arrived meanwhile
}

Result<std::vector<std::byte>> VirtualSmmu::save_state() {
  std::unique_lock lock(mu_);
  // Commands the guest queued are the source's to finish: CONS moves to PROD (or stops on an error, which the
  // registers carry), whatever the per-access budget.
  commands_budget_ = UINT32_MAX;
  host_calls_limit_ = UINT64_MAX;
  if (regs_.cmdq_running() && regs_.cmdq_pending() != 0) run_command_queue();
  set_work_left(false);
  holding_ = true;
  (void)drain_host_events();  // into held_events_
  VsmmuState s;
  s.name = config_.name;
  s.ids = ids_;
  s.registers = regs_.state();
  for (const auto& [vsid, d] : devices_) s.devices.push_back({vsid, d->name, d->stream.state});
  s.events = held_events_;
  s.events_lost = held_lost_;
  log::info(kWhere, "{}: state saved: {} device(s), {} event record(s) carried, CMDQ_CONS {:#x} of PROD {:#x}",
            config_.name, s.devices.size(), s.events.size(), s.registers.CMDQ_CONS, s.registers.CMDQ_PROD);
  unlock_and_fire(lock);
  return encode_state(s);
}

Result<void> VirtualSmmu::load_state(std::span<const std::byte> blob) {
  VSMMU_TRY_ASSIGN(const VsmmuState s, decode_state(blob));
  std::unique_lock lock(mu_);
  const std::string& me = config_.name;
  if (programmed_)
    return fail(EBUSY, kWhere, "{}: the guest has already programmed this vSMMU; load a state into a newly created one",
                me);
  if (auto diff = first_difference(s.ids, ids_))
    return fail(EINVAL, kWhere, "{}: the guest of \"{}\" was promised other ID registers: {}; create this vSMMU with "
                "the source's wishes, behind a physical SMMU that can give them", me, s.name, *diff);
  for (const auto& d : s.devices)
    if (!devices_.contains(d.vsid))
      return fail(ENODEV, kWhere, "{}: device {} (vSID {:#x}) of \"{}\" is not attached here; attach the device that "
                  "replaces it at the same vSID before loading", me, d.name, d.vsid, s.name);
  for (const auto& [vsid, d] : devices_)
    if (std::ranges::none_of(s.devices, [vsid](const SavedDevice& sd) { return sd.vsid == vsid; }))
      return fail(EEXIST, kWhere, "{}: {} is attached here but the guest of \"{}\" has no device at vSID {:#x}; "
                  "attach it after the load (a hot-plug)", me, device_name(*d), s.name, vsid);

  const RegisterState before = regs_.state();
  regs_.restore(s.registers);
  quiet_ = true;
  // A refused load leaves the vSMMU as it was: reset registers, no event queues, every stream on GBPA.
  auto undo = [&](std::unexpected<Error> e) -> Result<void> {
    regs_.restore(before);
    disable_event_queues();
    reinstall_all_streams();
    quiet_ = false;
    return e;
  };
  if (regs_.cr0().get(Cr0::EVENTQEN))
    if (auto r = enable_event_queues(); !r)
      return undo(fail(r.error(), kWhere, "{}: the host refused the event queue the guest had on", me));
  reinstall_all_streams();  // every vSTE (or GBPA) from the guest's tables in guest RAM
  for (const auto& sd : s.devices) {
    const Device& d = *devices_.at(sd.vsid);
    const bool worked = sd.state == StreamState::translate || sd.state == StreamState::bypass;
    if (worked && d.stream.state != sd.state)
      return undo(fail(EINVAL, kWhere, "{}: its stream was {} on the source but is {} here{}{}", device_name(d),
                             state_name(sd.state), state_name(d.stream.state), d.problem ? ": " : "",
                             d.problem.value_or("")));
  }
  quiet_ = false;
  programmed_ = true;
  for (const Event& e : s.events) (void)regs_.record_event(e);
  if (s.events_lost != 0) regs_.events_lost(s.events_lost);
  begin_access();
  if (regs_.cmdq_running() && regs_.cmdq_pending() != 0) run_command_queue();
  log::info(kWhere, "{}: state of \"{}\" loaded: {} device(s), SMMUEN {}, {} event record(s) delivered", me, s.name,
            s.devices.size(), regs_.cr0().get(Cr0::SMMUEN) ? 1 : 0, s.events.size());
  unlock_and_fire(lock);
  return {};
}

Result<std::unique_ptr<VirtualSmmu>> VirtualSmmu::restore(GuestMemory& memory, const VirtualSmmuConfig& config,
                                                          std::vector<DeviceSpec> devices,
                                                          std::span<const std::byte> state) {
  VSMMU_TRY_ASSIGN(auto v, create(memory, config, std::move(devices)));
  VSMMU_TRY(v->load_state(state));
  return v;
}

}  // namespace vsmmu::nesting

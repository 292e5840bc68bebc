// VirtualSmmu: creation, registers, interrupts, introspection. Streams are in stream_binding.cpp, the
// command queue in command_execution.cpp, events in event_forwarding.cpp.
#include "nesting/virtual_smmu.hpp"

#include <sys/eventfd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <span>

#include "base/try.hpp"
#include "nesting/virtual_smmu_state.hpp"
#include "base/log.hpp"

namespace vsmmu::nesting {

using namespace smmu;

VirtualSmmu::VirtualSmmu(GuestMemory& memory, const VirtualSmmuConfig& config, const GuestIdRegisters& ids,
                         host::QueueObject fault_queue)
    : memory_(memory),
      host_(memory.host()),
      config_(config),
      ids_(ids),
      guest_(IdFeatures::of(ids)),
      features_(command_features(ids)),
      regs_(memory.view(), ids, static_cast<RegisterEffects&>(*this), config.gbpa_abort_at_reset),
      fault_queue_(std::move(fault_queue)),
      work_fd_(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) {
  if (fault_queue_) fault_reader_.emplace(host_, fault_queue_.fd());
  if (config.policy == InvalidationPolicy::per_command) {
    plan_options_.max_batch_entries = 1;
    plan_options_.coalesce = false;
  } else {
    // Never more entries in one HWPT_INVALIDATE than the kernel can allocate at once (its ENOMEM would read as
    // a transient failure, CERROR_ABT, and a retrying guest would never get past it).
    const std::uint32_t cap = host::limits::kInvalidateMaxAllocatableEntries;
    plan_options_.max_batch_entries = config.max_batch_entries == 0 ? cap : std::min(config.max_batch_entries, cap);
  }
}

VirtualSmmu::~VirtualSmmu() {
  std::lock_guard lock(mu_);
  // Outstanding stalls answered first: nothing stays stalled behind a vSMMU that is gone.
  for (const auto& [vsid, cookie] : stalls_.take_all()) {
    ++stats_.stalls_aborted;
    answer_fault(cookie, false, "the vSMMU is destroyed");
  }
  devices_.clear();  // detach (blocking DMA), then nested HWPTs and vDEVICEs, then unbind: before the vIOMMUs go
  viommus_.clear();
}

// The first device's physical SMMU decides what the guest sees: it is bound and asked before the vSMMU is
// built, so a constructed VirtualSmmu has its ID registers and register file from the start.
Result<std::unique_ptr<VirtualSmmu>> VirtualSmmu::create(GuestMemory& memory, const VirtualSmmuConfig& config,
                                                         std::vector<DeviceSpec> devices) {
  if (devices.empty())
    return fail(EINVAL, "vsmmu", "{}: a vSMMU needs at least one device: its physical SMMU decides what the guest sees",
                config.name);
  std::uint64_t host_calls = 0;
  VSMMU_TRY_ASSIGN(auto first, bind(memory.host(), config.name, std::move(devices.front()), host_calls));
  VSMMU_TRY_ASSIGN(auto ids, derive_id_registers(first.hw, config.wishes, first.what));
  VirtualSmmuConfig given = config;
  auto queue = open_fault_queue(memory.host(), config, ids, host_calls);
  if (!queue) {
    // Stalls left on auto need a host kernel with fault queues (IOMMU_FAULT_QUEUE_ALLOC, Linux 6.11+) as well
    // as a stalling SMMU: without one the guest is simply not given stalls. Asked for, they are refused.
    if (config.wishes.stall) return std::unexpected(queue.error());
    log::info("vsmmu", "{}: the physical SMMU stalls but the guest is not given stalls: {}", config.name, queue.error());
    given.wishes.stall = false;
    VSMMU_TRY_ASSIGN(ids, derive_id_registers(first.hw, given.wishes, first.what));
    queue = host::QueueObject{};
  }
  std::unique_ptr<VirtualSmmu> v(new VirtualSmmu(memory, given, ids, std::move(*queue)));
  if (!v->work_fd_)
    return fail(errno, "vsmmu", "{}: eventfd for the command queue's deferred work: {}", config.name, std::strerror(errno));
  v->stats_.host_calls += host_calls;
  std::lock_guard lock(v->mu_);
  VSMMU_TRY(v->add_bound_device_locked(std::move(first)));
  for (auto& d : std::span(devices).subspan(1)) VSMMU_TRY(v->add_device_locked(std::move(d)));
  return v;
}

Result<void> VirtualSmmu::add_device(DeviceSpec device) {
  std::unique_lock lock(mu_);
  auto r = add_device_locked(std::move(device));
  if (!r) drop_unused_viommus();  // a vIOMMU made for the device that could not join
  unlock_and_fire(lock);
  return r;
}

Result<void> VirtualSmmu::remove_device(std::uint32_t vsid) {
  std::lock_guard lock(mu_);
  auto it = devices_.find(vsid);
  if (it == devices_.end())
    return fail(ENOENT, "vsmmu", "{}: no device with vSID {:#x} to remove", config_.name, vsid);
  terminate_stalls(vsid, "its device is removed");
  devices_.erase(it);  // blocks its DMA, releases its HWPT, vDEVICE and binding
  drop_unused_viommus();
  return {};
}

// ---- registers ---------------------------------------------------------------------------------------------

// Every access goes on with command-queue work an earlier one left (the SMMU consumes its queue over time,
// IHI 0070 4.1.2): a guest polling CMDQ_CONS sees it advance. All of it within one access's budget.
Result<std::uint64_t> VirtualSmmu::mmio_read(std::uint64_t offset, unsigned size) {
  std::unique_lock lock(mu_);
  if (holding_) release_held_events();
  begin_access();
  if (work_left_) run_command_queue();
  auto r = regs_.access(offset, size, nullptr);
  unlock_and_fire(lock);
  return r;
}

Result<void> VirtualSmmu::mmio_write(std::uint64_t offset, std::uint64_t value, unsigned size) {
  std::unique_lock lock(mu_);
  if (holding_) release_held_events();
  programmed_ = true;
  begin_access();
  if (work_left_) run_command_queue();
  auto r = regs_.access(offset, size, &value);
  unlock_and_fire(lock);
  if (!r) return std::unexpected(r.error());
  return {};
}

void VirtualSmmu::set_irq_handler(Irq line, std::function<void()> handler) {
  std::lock_guard lock(mu_);
  irq_handlers_[static_cast<std::size_t>(line)] = std::move(handler);
}

void VirtualSmmu::set_msi_handler(MsiHandler handler) {
  std::lock_guard lock(mu_);
  msi_handler_ = std::move(handler);
}

void VirtualSmmu::set_notice_handler(NoticeHandler handler) {
  std::lock_guard lock(mu_);
  notice_handler_ = std::move(handler);
}

// Taken only with a handler to give it to; without one the RegisterFile raises MSI_*_ABT_ERR.
bool VirtualSmmu::msi_outside_memory(std::uint64_t address, std::uint32_t data) {
  if (!msi_handler_) return false;
  pending_msis_.emplace_back(address, data);
  return true;
}

// The notices, the wired lines' handlers, then the MSIs', in the order the vSMMU raised each kind.
void VirtualSmmu::unlock_and_fire(std::unique_lock<std::mutex>& lock) {
  auto pending = regs_.take_pending_irqs();
  if (std::ranges::all_of(pending, [](unsigned n) { return n == 0; }) && pending_msis_.empty() &&
      pending_notices_.empty())
    return;
  auto handlers = irq_handlers_;
  auto notices = std::exchange(pending_notices_, {});
  auto notice = notice_handler_;
  auto msis = std::exchange(pending_msis_, {});
  auto msi_handler = msis.empty() ? MsiHandler{} : msi_handler_;
  lock.unlock();  // a handler (the guest's ISR, in tests) reads registers
  for (const auto& n : notices) {
    if (notice) notice(n);
    else log::warn("vsmmu", "{}", n.text);
  }
  for (std::size_t line = 0; line < pending.size(); ++line)
    for (unsigned n = 0; n < pending[line]; ++n)
      if (handlers[line]) handlers[line]();
  for (const auto& [address, data] : msis)
    if (msi_handler) msi_handler(address, data);
}

void VirtualSmmu::control_changed(Cr0 before, Cr0 after) {
  if (!before.get(Cr0::EVENTQEN) && after.get(Cr0::EVENTQEN)) {
    if (auto r = enable_event_queues(); !r) {
      log::error("vsmmu", "{}: the guest enabled its event queue but the host refused a vEVENTQ; faults will not "
                 "reach the guest: {}", config_.name, r.error());
      // Tell the guest its records are being lost, the way an SMMU whose event queue writes abort does
      // (IHI 0070 7.5 GERROR.EVTQ_ABT_ERR; Linux logs "EVTQ write aborted -- events may have been lost").
      regs_.raise_gerror(Gerror{}.set(Gerror::EVTQ_ABT_ERR, true));
    }
  }
  if (before.get(Cr0::EVENTQEN) && !after.get(Cr0::EVENTQEN)) disable_event_queues();
  // SMMUEN switches every stream between GBPA and its STE (IHI 0070 6.3.9).
  if (before.get(Cr0::SMMUEN) != after.get(Cr0::SMMUEN))
    reinstall_all_streams();  // every vSTE or GBPA is a change here
}

void VirtualSmmu::bypass_changed(Gbpa) {
  if (!regs_.cr0().get(Cr0::SMMUEN)) reinstall_all_streams();
}

void VirtualSmmu::events_consumed() {
  // The guest freed records: move what the host queued meanwhile (the VMM may also call process_events).
  drain_host_events();
  drain_faults();
}

// ---- introspection -----------------------------------------------------------------------------------------

VirtualSmmuStats VirtualSmmu::stats() const {
  std::lock_guard lock(mu_);
  VirtualSmmuStats s = stats_;
  s.syncs = regs_.counters().syncs;
  s.command_errors = regs_.counters().command_errors;
  s.events = regs_.counters().events;
  s.events_lost = regs_.counters().events_lost;
  s.msis = regs_.counters().msis;
  s.msis_aborted = regs_.counters().msis_aborted;
  return s;
}

Result<StreamStatus> VirtualSmmu::stream_status(std::uint32_t vsid) const {
  std::lock_guard lock(mu_);
  auto it = devices_.find(vsid);
  if (it == devices_.end()) return fail(ENOENT, "vsmmu", "{}: no device with vSID {:#x}", config_.name, vsid);
  return StreamStatus{it->second->stream.state, it->second->problem};
}

std::size_t VirtualSmmu::host_objects() const {
  std::lock_guard lock(mu_);
  std::size_t n = 0;
  for (const auto& v : viommus_) n += v->host_objects();
  for (const auto& [vsid, d] : devices_)
    n += static_cast<std::size_t>(static_cast<bool>(d->bound)) + static_cast<bool>(d->stream.vdevice);
  return n;
}

std::vector<int> VirtualSmmu::event_fds() const {
  std::lock_guard lock(mu_);
  std::vector<int> fds;
  for (const auto& v : viommus_)
    if (v->events_enabled()) fds.push_back(v->event_fd());
  if (fault_queue_) fds.push_back(fault_queue_.fd());
  fds.push_back(work_fd_.get());
  return fds;
}

}  // namespace vsmmu::nesting

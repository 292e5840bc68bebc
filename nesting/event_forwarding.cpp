// Events: a vEVENTQ per vIOMMU while the guest's event queue is enabled (depth = the guest queue's size);
// its records (already carrying the vSID) go into the guest's event queue; losses on the host side become the
// guest queue's overflow (IHI 0070 7.4), as do records that find the guest queue full.
#include <utility>

#include "base/try.hpp"
#include "nesting/virtual_smmu.hpp"
#include "nesting/virtual_smmu_state.hpp"
#include "base/log.hpp"

namespace vsmmu::nesting {

using namespace smmu;

namespace {
constexpr const char* kWhere = "vsmmu.events";
}  // namespace

Result<void> VirtualSmmu::enable_event_queues() {
  for (auto& v : viommus_) VSMMU_TRY(v->enable_events(regs_.eventq_index().entries(), config_.name));
  return {};
}

void VirtualSmmu::disable_event_queues() {
  for (auto& v : viommus_) v->disable_events();
}

std::size_t VirtualSmmu::drain_host_events() {
  std::size_t written = 0;
  std::vector<host::VeventqRecord> records;
  for (auto& v : viommus_) {
    if (!v->events_enabled()) continue;
    for (;;) {
      records.clear();
      auto n = v->read_events(records);
      if (!n) {
        log::error(kWhere, "{}: reading the vEVENTQ of {}: {}", config_.name, v->label(), n.error());
        break;
      }
      if (*n == 0) break;
      for (const auto& r : records) {
        if (r.kind == host::VeventqRecord::Kind::lost) {
          if (holding_) held_lost_ += r.lost_count.value_or(1);
          else regs_.events_lost(r.lost_count.value_or(1));
          continue;
        }
        Event e;
        for (std::size_t w = 0; w < r.evt.size(); ++w) e.dw[w] = r.evt[w];
        diagnose_msi_fault(e);
        if (holding_) {
          // Saved for migration: guest RAM is no longer written; the record travels in the next save, or reaches
          // the guest when a resumed source is accessed. At most a guest queue's worth, as the host's queue.
          if (held_events_.size() < regs_.eventq_index().entries()) held_events_.push_back(e);
          else ++held_lost_;
          continue;
        }
        if (regs_.record_event(e)) ++written;
      }
    }
  }
  return written;
}

// Under nesting the host programs a device's MSI address with an IOVA in its software MSI window, which the
// device's write takes through the guest's stage 1 before the host's stage 2 maps it to the ITS doorbell. A
// guest whose stage 1 lacks the window (it ignored, or never got, the IORT RMR / DT reserved-memory node that
// describes it) sees stage-1 translation faults there, and the device's interrupts never arrive: the guest
// gets the record (IHI 0070 7.3.12 F_TRANSLATION, 7.3.15 F_PERMISSION; S2 = 0 for a stage-1 fault), the VMM's
// operator a notice saying what went wrong, once per device.
void VirtualSmmu::diagnose_msi_fault(const Event& e) {
  const EventId id = e.get(Event::ID);
  if ((id != EventId::F_TRANSLATION && id != EventId::F_PERMISSION) || e.get(Event::S2)) return;
  const auto it = devices_.find(e.get(Event::SID));
  if (it == devices_.end() || !it->second->msi_window) return;
  Device& d = *it->second;
  const std::uint64_t addr = e.get(Event::InputAddr);
  if (!d.msi_window->contains(addr)) return;
  ++stats_.msi_window_faults;
  if (std::exchange(d.msi_notice_sent, true)) return;
  pending_notices_.push_back(Notice{NoticeKind::msi_window_fault, d.vsid, fmt::format(
      "{}: DMA to {:#x} faulted in the guest's stage 1 ({}): the guest's stage 1 does not map the host's MSI window "
      "{}, so the device's MSIs are lost; check the guest's handling of the IORT RMR node (ACPI) or the "
      "reserved-memory node with iommu-addresses (device tree) that keeps the window identity-mapped (`vsmmu iort "
      "gen` and `vsmmu dt gen` emit them)",
      device_name(d), addr, event_name(id), host::to_string(*d.msi_window))});
}

Result<std::size_t> VirtualSmmu::process_events() {
  std::unique_lock lock(mu_);
  const std::size_t n = drain_host_events() + drain_faults();
  if (holding_) return n;  // saved: no command work either until the guest is back
  begin_access();
  if (work_left_) run_command_queue();  // what earlier accesses left (work fd readable)
  unlock_and_fire(lock);
  return n;
}

}  // namespace vsmmu::nesting

// Events: a vEVENTQ per vIOMMU while the guest's event queue is enabled (depth = the guest queue's size);
// its records (already carrying the vSID) go into the guest's event queue; losses on the host side become the
// guest queue's overflow (IHI 0070 7.4), as do records that find the guest queue full.
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
          regs_.events_lost(r.lost_count.value_or(1));
          continue;
        }
        Event e;
        for (std::size_t w = 0; w < r.evt.size(); ++w) e.dw[w] = r.evt[w];
        if (regs_.record_event(e)) ++written;
      }
    }
  }
  return written;
}

Result<std::size_t> VirtualSmmu::process_events() {
  std::unique_lock lock(mu_);
  const std::size_t n = drain_host_events();
  begin_access();
  if (work_left_) run_command_queue();  // what earlier accesses left (work fd readable)
  unlock_and_fire(lock);
  return n;
}

}  // namespace vsmmu::nesting

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

Result<void> VirtualSmmu::open_event_queue(PhysicalSmmu& p, const std::string& what) {
  const std::uint32_t depth = regs_->eventq_index().entries();
  ++stats_.host_calls;
  auto q = host_.veventq_alloc(p.viommu.id(), host::uapi::kVeventqTypeArmSmmuv3, depth);
  if (!q) return fail(q.error(), kWhere, "{}: IOMMU_VEVENTQ_ALLOC of depth {} on {}", what, depth, p.label);
  p.veventq = host::QueueObject(host_, q->id, q->fd);
  // Read through the host (Host::read_veventq: the kernel's answers on both backends); the fd is for polling.
  p.reader.emplace(host_, p.veventq.fd());
  return {};
}

Result<void> VirtualSmmu::enable_event_queues() {
  for (auto& p : smmus_)
    if (!p->veventq)
      VSMMU_TRY(open_event_queue(*p, config_.name));
  return {};
}

void VirtualSmmu::disable_event_queues() {
  for (auto& p : smmus_) {
    p->reader.reset();
    p->veventq = {};
  }
}

std::size_t VirtualSmmu::drain_host_events() {
  std::size_t written = 0;
  std::vector<host::VeventqRecord> records;
  for (auto& p : smmus_) {
    if (!p->reader) continue;
    for (;;) {
      records.clear();
      auto n = p->reader->read_available(records);
      if (!n) {
        log::error(kWhere, "{}: reading the vEVENTQ of {}: {}", config_.name, p->label, n.error());
        break;
      }
      if (*n == 0) break;
      for (const auto& r : records) {
        if (r.kind == host::VeventqRecord::Kind::lost) {
          regs_->events_lost(r.lost_count.value_or(1));
          continue;
        }
        Event e;
        for (std::size_t w = 0; w < r.evt.size(); ++w) e.dw[w] = r.evt[w];
        if (regs_->record_event(e)) ++written;
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

// Stalls (IHI 0070 3.12.2): with IDR0.STALL_MODEL given to the guest, the vSMMU holds one host fault queue
// (IOMMU_FAULT_QUEUE_ALLOC) and allocates the nested HWPT of every stream the guest lets stall (STE.S1STALLD = 0,
// a device that can stall) with it. The physical SMMU stalls the device's faulting transaction and the host
// kernel's arm-smmu-v3 hands it to the fault queue (drivers/iommu/arm/arm-smmu-v3/arm-smmu-v3.c
// arm_smmu_handle_evt, drivers/iommu/iommufd/eventq.c); each fault group read there becomes the guest's stall
// event record, and the guest's CMD_RESUME / CMD_STALL_TERM (IHI 0070 4.7.2, 4.7.3) the page response that
// lets the device retry or abort. Every stall is answered exactly once, by the guest or, when the guest can no
// longer (its stream reconfigured, its device removed, the vSMMU destroyed), by the vSMMU.
#include <algorithm>

#include "base/log.hpp"
#include "base/try.hpp"
#include "nesting/virtual_smmu.hpp"
#include "nesting/virtual_smmu_state.hpp"

namespace vsmmu::nesting {

using namespace smmu;

namespace {

constexpr const char* kWhere = "vsmmu.stall";

// The guest's record of a stalled transaction. The host's record has no fault type: arm-smmu-v3 hands the
// fault queue the stage-1 F_TRANSLATION, F_ADDR_SIZE, F_ACCESS and F_PERMISSION stalls alike (arm_smmu_handle_evt),
// and a guest's I/O page fault handler treats them alike too (it resolves the access `perm` names in its page
// tables: Linux's iommu_sva_handle_mm). F_TRANSLATION (IHI 0070 7.3.12) is what a page the guest has not mapped
// raises, the case I/O page faults are for; S2 = 0 (stage 1), CLASS = IN (the input address faulted).
Event stall_event(std::uint32_t vsid, std::uint16_t stag, const host::uapi::iommu_hwpt_pgfault& f) {
  using namespace host::uapi;
  Event e;
  e.set(Event::ID, EventId::F_TRANSLATION)
      .set(Event::SID, vsid)
      .set(Event::Stall, true)
      .set(Event::STAG, stag)
      .set(Event::CLASS, EventClass::IN)
      .set(Event::RnW, (f.perm & kPgfaultPermWrite) == 0)
      .set(Event::InD, (f.perm & kPgfaultPermExec) != 0)
      .set(Event::PnU, (f.perm & kPgfaultPermPriv) != 0)
      .set(Event::InputAddr, f.addr);
  if (f.flags & kPgfaultFlagsPasidValid) e.set(Event::SSV, true).set(Event::SSID, f.pasid);
  return e;
}

}  // namespace

Result<host::QueueObject> VirtualSmmu::open_fault_queue(host::Host& host, const VirtualSmmuConfig& config,
                                                        const GuestIdRegisters& ids, std::uint64_t& host_calls) {
  if (IdFeatures::of(ids).stall_model == StallModel::terminate) return host::QueueObject{};
  ++host_calls;
  auto q = host.fault_queue_alloc();
  if (!q) return fail(q.error(), kWhere, "{}: IOMMU_FAULT_QUEUE_ALLOC for the guest's stalls", config.name);
  return host::QueueObject(host, q->id, q->fd);
}

std::optional<host::ObjectId> VirtualSmmu::fault_queue_for(const Device& dev, const Ste& vste) const {
  if (!fault_queue_ || !dev.can_stall || vste.get(Ste::S1STALLD)) return std::nullopt;
  return fault_queue_.id();
}

void VirtualSmmu::answer_fault(std::uint32_t cookie, bool retry, std::string_view why) {
  ++stats_.host_calls;
  const std::uint32_t code = retry ? host::uapi::kPageResponseSuccess : host::uapi::kPageResponseInvalid;
  // EINVAL: the host answered the group itself (the kernel answers a detached or replaced device's faults,
  // drivers/iommu/iommufd/eventq.c iommufd_auto_response_faults): nothing is left to answer.
  if (auto r = fault_reader_->respond(cookie, code); !r)
    log::info(kWhere, "{}: answering fault group {} ({}): {}", config_.name, cookie, why, r.error());
  else
    log::debug(kWhere, "{}: fault group {} answered {} ({})", config_.name, cookie, retry ? "SUCCESS" : "INVALID", why);
}

std::size_t VirtualSmmu::drain_faults() {
  if (!fault_reader_) return 0;
  std::vector<host::FaultGroup> groups;
  if (auto n = fault_reader_->read_available(groups); !n)
    log::error(kWhere, "{}: reading the fault queue: {}", config_.name, n.error());
  for (const auto& g : groups) {
    const std::uint32_t dev_id = g.faults.front().dev_id;
    const auto it = std::ranges::find_if(devices_, [&](const auto& d) { return d.second->bound.id() == dev_id; });
    const char* drop = nullptr;
    std::optional<std::uint16_t> stag;
    if (it == devices_.end()) drop = "no device of the vSMMU has this dev_id";
    else if (!regs_.cr0().get(Cr0::EVENTQEN)) drop = "the guest's event queue is disabled";  // IHI 0070 6.3.9
    else if (!(stag = stalls_.add(it->second->vsid, g.cookie))) drop = "STALL_MAX stalls are outstanding";
    if (drop) {
      ++stats_.stalls_dropped;
      log::info(kWhere, "{}: fault at {:#x} of dev_id {} terminated: {}", config_.name, g.faults.front().addr,
                dev_id, drop);
      answer_fault(g.cookie, false, drop);
      continue;
    }
    ++stats_.stalls;
    // A group is one stalled transaction to the guest: one STAG, answered once (arm-smmu-v3's stall groups
    // hold one fault each; a larger group's records all carry its STAG).
    for (const auto& f : g.faults) stall_events_.push_back(stall_event(it->second->vsid, *stag, f));
  }
  return deliver_stall_events();
}

// A stall record waits for room in the guest's event queue rather than being lost to an overflow: its
// transaction stays stalled until the guest can be told of it (the SMMU's back-pressure on a full queue).
std::size_t VirtualSmmu::deliver_stall_events() {
  std::size_t written = 0;
  while (!stall_events_.empty() && !holding_) {
    const Event e = stall_events_.front();
    if (regs_.cr0().get(Cr0::EVENTQEN) && regs_.eventq_full()) break;
    stall_events_.pop_front();
    if (regs_.record_event(e)) {
      ++written;
      continue;
    }
    // Disabled meanwhile, or the write aborted (GERROR.EVTQ_ABT_ERR): the guest cannot learn of the stall.
    if (auto cookie = stalls_.take(e.get(Event::SID), e.get(Event::STAG))) {
      ++stats_.stalls_aborted;
      answer_fault(*cookie, false, "its stall record could not be written to the guest's event queue");
    }
  }
  return written;
}

void VirtualSmmu::terminate_stalls(std::uint32_t vsid, std::string_view why) {
  std::erase_if(stall_events_, [&](const Event& e) { return e.get(Event::SID) == vsid; });
  for (const auto& [stag, cookie] : stalls_.take_stream(vsid)) {
    ++stats_.stalls_aborted;
    answer_fault(cookie, false, why);
  }
}

// CMD_RESUME (IHI 0070 4.7.2): Action retry lets the transaction go on (the host's page response SUCCESS),
// abort and term end it (INVALID: the kernel has no "terminate silently", and to the device both fail the
// access). A StreamID and STAG naming no stalled transaction is ignored, not an error: the stall may have been
// terminated already (CMD_STALL_TERM, a reconfigured stream), which software cannot know. CMD_STALL_TERM
// (4.7.3) ends every stalled transaction of the stream.
void VirtualSmmu::execute_fault_response(const Command& cmd) {
  const std::uint32_t vsid = cmd.get(Command::SID);
  switch (cmd.get(Command::Opcode)) {
    case Opcode::RESUME: {
      const std::uint16_t stag = cmd.get(Command::STAG);
      const auto cookie = stalls_.take(vsid, stag);
      if (!cookie) {
        log::debug(kWhere, "{}: CMD_RESUME for vSID {:#x} STAG {:#x} names no stalled transaction: ignored",
                   config_.name, vsid, stag);
        return;
      }
      const bool retry = cmd.get(Command::Action) == ResumeAction::retry;
      ++(retry ? stats_.stalls_resumed : stats_.stalls_aborted);
      answer_fault(*cookie, retry, "CMD_RESUME");
      return;
    }
    case Opcode::STALL_TERM: terminate_stalls(vsid, "CMD_STALL_TERM"); return;
    default: return;  // PRI_RESP: classify() refuses it (no PRI is given)
  }
}

}  // namespace vsmmu::nesting

// The guest's command queue (IHI 0070 3.5, 4, 7.1): read everything between CONS and PROD, plan it
// (invalidation::plan), execute the plan in guest order: one HWPT_INVALIDATE per vIOMMU per batch, STE
// reinstalls, CMD_SYNC completion. An illegal command, or one the host refuses, stops the queue on it with
// CMDQ_CONS.ERR and GERROR.CMDQ_ERR; every command before it has been executed.
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <variant>

#include "nesting/virtual_smmu.hpp"
#include "nesting/virtual_smmu_state.hpp"
#include "base/log.hpp"

namespace vsmmu::nesting {

using namespace smmu;

namespace {

constexpr const char* kWhere = "vsmmu.cmdq";

}  // namespace

void VirtualSmmu::commands_published() { run_command_queue(); }

void VirtualSmmu::begin_access() {
  commands_budget_ = config_.commands_per_access != 0 ? config_.commands_per_access : UINT32_MAX;
  host_calls_limit_ =
      config_.host_calls_per_access != 0 ? stats_.host_calls + config_.host_calls_per_access : UINT64_MAX;
}

bool VirtualSmmu::host_budget_spent() const { return stats_.host_calls >= host_calls_limit_; }

void VirtualSmmu::set_work_left(bool left) {
  if (left == work_left_) return;
  work_left_ = left;
  if (left) {
    ++stats_.deferred;
    const std::uint64_t one = 1;
    if (::write(work_fd_.get(), &one, sizeof one) != static_cast<ssize_t>(sizeof one))
      log::error(kWhere, "{}: signalling the work eventfd: {}", config_.name, std::strerror(errno));
  } else {
    std::uint64_t count = 0;
    (void)!::read(work_fd_.get(), &count, sizeof count);  // EAGAIN when already clear: nothing to do
  }
}

void VirtualSmmu::run_command_queue() {
  bool budget_out = false;
  while (regs_.cmdq_running()) {
    const std::uint32_t pending = regs_.cmdq_pending();
    if (pending == 0) break;
    if (commands_budget_ == 0 || host_budget_spent()) {
      budget_out = true;
      break;
    }
    const std::uint32_t want = std::min(pending, commands_budget_);
    cmd_buffer_.resize(want);
    const auto got = static_cast<std::uint32_t>(regs_.read_commands(cmd_buffer_));
    const std::span<const Command> cmds(cmd_buffer_.data(), got);
    const invalidation::Plan& plan = planner_.plan(cmds, features_, plan_options_);

    std::uint32_t executed = 0;  // guest commands before this index are done
    std::optional<Cerror> error;
    bool stopped = false;        // on the host-call budget, before a step
    for (const auto& step : plan.steps) {
      if (executed > 0 && host_budget_spent()) {
        stopped = true;
        break;
      }
      if (const auto* b = std::get_if<invalidation::ForwardBatch>(&step)) {
        if (auto bad = forward(b->entries, b->guest_index)) {
          // The host refused guest command bad->guest_index. Commands before it that were coalesced away or not
          // issued by the host: send them again, uncoalesced and in order, so everything before it is done.
          const std::uint32_t k = bad->guest_index;
          const invalidation::Plan again = invalidation::plan(cmds.subspan(executed, k - executed), features_,
                                                              {.max_batch_entries = 0, .coalesce = false}, executed);
          for (const auto& s : again.steps)
            if (const auto* ab = std::get_if<invalidation::ForwardBatch>(&s)) (void)forward(ab->entries, ab->guest_index);
          executed = k;
          error = invalidation::cerror_for_host_errno(bad->err);
          break;
        }
        executed = b->guest_index.back() + 1;
      } else if (const auto* r = std::get_if<invalidation::StreamReinstall>(&step)) {
        if (auto bad = reinstall_streams(r->sids, r->guest_index)) {
          // The CFGI_CD_ALL that stands for the CFGI_STE's CD invalidation did not reach the host: the command
          // is not done (the streams it re-read are: doing that again after the guest's retry changes nothing).
          executed = r->guest_index;
          error = invalidation::cerror_for_host_errno(bad->err);
          break;
        }
        executed = r->guest_index + 1;
      } else if (const auto* s = std::get_if<invalidation::SyncPoint>(&step)) {
        regs_.complete_sync(s->command);
        executed = s->guest_index + 1;
      } else if (const auto* f = std::get_if<invalidation::FaultResponse>(&step)) {
        // Legal only while the vSMMU gives stalls (classify()); answered through the host's fault queue.
        execute_fault_response(f->command);
        executed = f->guest_index + 1;
      } else if (const auto* i = std::get_if<invalidation::IllegalCommand>(&step)) {
        log::info(kWhere, "{}: CERROR_ILL at command {} of this run: {}", config_.name, i->guest_index, i->reason);
        executed = i->guest_index;
        error = Cerror::ill;
        break;
      }
    }
    if (!error && !stopped) executed = got;  // trailing local no-ops (PREFETCH_*) are done too
    stats_.commands += executed;
    commands_budget_ -= executed;
    regs_.cmdq_consume(executed);
    if (error) {
      regs_.command_error(*error);
      break;
    }
    if (stopped) {
      budget_out = true;
      break;
    }
    if (got < want) {
      // The next command could not be read from guest RAM (IHI 0070 7.1 CERROR_ABT).
      log::info(kWhere, "{}: CERROR_ABT: a command queue entry is outside guest RAM", config_.name);
      regs_.command_error(Cerror::abt);
      break;
    }
  }
  set_work_left(budget_out);
}

// Sends a batch to every vIOMMU it concerns; returns the first guest command a host refused.
std::optional<HostRefusal> VirtualSmmu::forward(std::span<const Command> entries, std::span<const std::uint32_t> guest_index) {
  if (viommus_.size() == 1 && !devices_.empty()) {
    // The common case: one vIOMMU. Only commands naming an unknown vSID need filtering out.
    Viommu& v = *viommus_.front();
    InvalidationBatch& batch = v.scratch();
    batch.clear();
    for (std::size_t i = 0; i < entries.size(); ++i) {
      // A StreamID with no device behind it has nothing cached anywhere: nothing to invalidate.
      if (auto sid = invalidation::stream_named(entries[i]); sid && !devices_.contains(*sid)) continue;
      batch.add(entries[i], guest_index[i]);
    }
    return v.invalidate(batch);
  }
  for (auto& v : viommus_) v->scratch().clear();
  for (std::size_t i = 0; i < entries.size(); ++i) {
    if (auto sid = invalidation::stream_named(entries[i])) {
      auto it = devices_.find(*sid);
      if (it == devices_.end()) continue;
      it->second->viommu->scratch().add(entries[i], guest_index[i]);
      continue;
    }
    for (auto& v : viommus_) v->scratch().add(entries[i], guest_index[i]);
  }
  std::optional<HostRefusal> first_bad;
  for (auto& v : viommus_)
    if (auto bad = v->invalidate(v->scratch()); bad && (!first_bad || bad->guest_index < first_bad->guest_index))
      first_bad = bad;
  return first_bad;
}

}  // namespace vsmmu::nesting

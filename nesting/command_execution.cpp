// The guest's command queue (IHI 0070 3.5, 4, 7.1): read everything between CONS and PROD, plan it
// (invalidation::plan), execute the plan in guest order: one HWPT_INVALIDATE per vIOMMU per batch, STE
// reinstalls, CMD_SYNC completion. An illegal command, or one the host refuses, stops the queue on it with
// CMDQ_CONS.ERR and GERROR.CMDQ_ERR; every command before it has been executed.
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <variant>

#include "nesting/virtual_smmu.hpp"
#include "nesting/virtual_smmu_state.hpp"
#include "base/log.hpp"

namespace vsmmu::nesting {

using namespace smmu;

namespace {

constexpr const char* kWhere = "vsmmu.cmdq";

static_assert(sizeof(Command) == Command::bytes, "commands are passed to the host as they lie in memory");

// Commands that name a StreamID go to the vIOMMU that StreamID's device is on; the rest concern every one.
bool names_stream(Opcode op) { return op == Opcode::CFGI_CD || op == Opcode::CFGI_CD_ALL || op == Opcode::ATC_INV; }

// The kernel refusing a command's contents is CERROR_ILL (the guest's driver skips it); a host that could not
// carry it out now (ENOMEM, EFAULT, EINTR ...) is CERROR_ABT, which a driver retries after acknowledging, as
// Linux's arm_smmu_cmdq_skip_err does (IHI 0070 7.1).
Cerror cerror_for(int err) {
  const bool refused = err == EIO || err == EINVAL || err == EOPNOTSUPP || err == E2BIG || err == ENOENT;
  return refused ? Cerror::ill : Cerror::abt;
}

}  // namespace

void VirtualSmmu::commands_published() { run_command_queue(); }

void VirtualSmmu::begin_access() {
  commands_budget_ = config_.commands_per_access != 0 ? config_.commands_per_access : UINT32_MAX;
  host_calls_limit_ = config_.host_calls_per_access != 0 ? stats_.host_calls + config_.host_calls_per_access : UINT64_MAX;
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
  while (regs_->cmdq_running()) {
    const std::uint32_t pending = regs_->cmdq_pending();
    if (pending == 0) break;
    if (commands_budget_ == 0 || host_budget_spent()) {
      budget_out = true;
      break;
    }
    const std::uint32_t want = std::min(pending, commands_budget_);
    cmd_buffer_.resize(want);
    const auto got = static_cast<std::uint32_t>(regs_->read_commands(cmd_buffer_));
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
          error = cerror_for(bad->err);
          break;
        }
        executed = b->guest_index.back() + 1;
      } else if (const auto* r = std::get_if<invalidation::StreamReinstall>(&step)) {
        if (auto bad = reinstall_streams(r->sids, r->guest_index)) {
          // The CFGI_CD_ALL that stands for the CFGI_STE's CD invalidation did not reach the host: the command
          // is not done (the streams it re-read are: doing that again after the guest's retry changes nothing).
          executed = r->guest_index;
          error = cerror_for(bad->err);
          break;
        }
        executed = r->guest_index + 1;
      } else if (const auto* s = std::get_if<invalidation::SyncPoint>(&step)) {
        regs_->complete_sync(s->command);
        executed = s->guest_index + 1;
      } else if (const auto* f = std::get_if<invalidation::FaultResponse>(&step)) {
        // Not reachable while the vSMMU advertises neither PRI nor stalls: classify() calls them illegal.
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
    regs_->cmdq_consume(executed);
    if (error) {
      regs_->command_error(*error);
      break;
    }
    if (stopped) {
      budget_out = true;
      break;
    }
    if (got < want) {
      // The next command could not be read from guest RAM (IHI 0070 7.1 CERROR_ABT).
      log::info(kWhere, "{}: CERROR_ABT: a command queue entry is outside guest RAM", config_.name);
      regs_->command_error(Cerror::abt);
      break;
    }
  }
  set_work_left(budget_out);
}

// Sends a batch to every vIOMMU it concerns; returns the first guest command a host refused.
std::optional<VirtualSmmu::HostRefusal> VirtualSmmu::forward(std::span<const Command> entries,
                                                  std::span<const std::uint32_t> guest_index) {
  if (smmus_.size() == 1 && devices_.size() > 0) {
    // The common case: one vIOMMU. Only commands naming an unknown vSID need filtering out.
    PhysicalSmmu& p = *smmus_.front();
    p.entries.clear();
    p.guest_index.clear();
    for (std::size_t i = 0; i < entries.size(); ++i) {
      if (names_stream(entries[i].get(Command::Opcode)) && !devices_.contains(entries[i].get(Command::SID))) continue;
      p.entries.push_back(entries[i]);
      p.guest_index.push_back(guest_index[i]);
    }
    return invalidate(p);
  }
  for (auto& p : smmus_) {
    p->entries.clear();
    p->guest_index.clear();
  }
  for (std::size_t i = 0; i < entries.size(); ++i) {
    const Opcode op = entries[i].get(Command::Opcode);
    if (names_stream(op)) {
      // A StreamID with no device behind it has nothing cached anywhere: nothing to invalidate.
      auto it = devices_.find(entries[i].get(Command::SID));
      if (it == devices_.end()) continue;
      it->second->smmu->entries.push_back(entries[i]);
      it->second->smmu->guest_index.push_back(guest_index[i]);
      continue;
    }
    for (auto& p : smmus_) {
      p->entries.push_back(entries[i]);
      p->guest_index.push_back(guest_index[i]);
    }
  }
  std::optional<HostRefusal> first_bad;
  for (auto& p : smmus_)
    if (auto bad = invalidate(*p); bad && (!first_bad || bad->guest_index < first_bad->guest_index)) first_bad = bad;
  return first_bad;
}

// One IOMMU_HWPT_INVALIDATE on the vIOMMU with p.entries (twice on SMMUs with the repeat erratum).
std::optional<VirtualSmmu::HostRefusal> VirtualSmmu::invalidate(PhysicalSmmu& p) {
  if (p.entries.empty()) return std::nullopt;  // the kernel refuses entry_num = 0
  host::InvalidateRequest req;
  req.id = p.viommu.id();
  req.entry_len = Command::bytes;
  req.entry_num = static_cast<std::uint32_t>(p.entries.size());
  req.data = std::as_bytes(std::span(p.entries));
  for (int pass = 0; pass < (p.repeat_invalidations ? 2 : 1); ++pass) {
    const auto start = std::chrono::steady_clock::now();
    host::InvalidateOutcome out = host_.hwpt_invalidate(req);
    stats_.host_time += std::chrono::steady_clock::now() - start;
    ++stats_.host_calls;
    ++stats_.invalidate_calls;
    stats_.forwarded += out.error ? out.handled : req.entry_num;
    if (out.error) {
      const std::uint32_t k = std::min<std::uint32_t>(out.handled, req.entry_num - 1);
      log::info(kWhere, "{}: {} refused guest command {} ({:#018x} {:#018x}): {}", config_.name, p.label, p.guest_index[k],
                p.entries[k].dw[0], p.entries[k].dw[1], *out.error);
      return HostRefusal{p.guest_index[k], out.error->err};
    }
  }
  return std::nullopt;
}

}  // namespace vsmmu::nesting

// Stalled transactions (IHI 0070 3.12.2 "Stall model", 4.7.1 CMD_RESUME, 4.7.2 CMD_STALL_TERM): the SMMU holds
// a transaction whose translation-related fault its stage is configured to stall, identified by StreamID and
// the STAG of its event record, until software retries or terminates it.
#include <algorithm>

#include "base/log.hpp"
#include "smmu/model/smmu_model.hpp"

namespace vsmmu::smmu::model {

std::optional<std::uint16_t> SmmuModel::alloc_stag() const {
  // IDR5.STALL_MAX: the SMMU never has more unanswered stall records than this (IHI 0070 6.3.6).
  const auto held = static_cast<std::size_t>(std::ranges::count_if(stalls_, [](const auto& kv) { return kv.second.held; }));
  if (held >= config_.idr5.get(Idr5::STALL_MAX)) return std::nullopt;
  // A STAG is not re-used until its transaction was resumed or terminated (3.12.2).
  for (;;) {
    const std::uint16_t stag = next_stag_++;
    if (std::ranges::none_of(stalls_, [&](const auto& kv) { return kv.second.held && kv.second.stag == stag; }))
      return stag;
  }
}

DmaFault SmmuModel::hold(const DmaStream& stream, bool write, std::uint64_t iova, std::uint64_t size, bool probe,
                         std::span<const std::byte> data, DmaFault fault) {
  Stalled s;
  s.stream = stream;
  s.write = write;
  s.iova = iova;
  s.size = size;
  s.probe = probe;
  if (write && !probe) s.data.assign(data.begin(), data.end());
  s.stag = *fault.stag;
  fault.stall_id = next_stall_id_++;
  s.fault = fault;
  stalls_.emplace(fault.stall_id, std::move(s));
  return fault;
}

std::optional<StallResolution> SmmuModel::take_stall(std::uint64_t stall_id) {
  std::lock_guard lock(mu_);
  auto it = stalls_.find(stall_id);
  if (it == stalls_.end()) return std::nullopt;
  StallResolution r;
  r.held = it->second.held;
  r.fault = it->second.fault;
  if (r.held) return r;
  if (!it->second.write) r.read_data = std::move(it->second.data);
  stalls_.erase(it);
  return r;
}

std::size_t SmmuModel::stalled_transactions() const {
  std::lock_guard lock(mu_);
  return static_cast<std::size_t>(std::ranges::count_if(stalls_, [](const auto& kv) { return kv.second.held; }));
}

void SmmuModel::resume(std::uint32_t sid, std::uint16_t stag, ResumeAction action) {
  // StreamID and STAG together name the transaction; no match is a no-op, not an error (IHI 0070 4.7.1).
  auto it = std::ranges::find_if(stalls_, [&](const auto& kv) {
    return kv.second.held && kv.second.stream.sid == sid && kv.second.stag == stag;
  });
  if (it == stalls_.end()) {
    log::debug("smmu.model", "CMD_RESUME SID {:#x} STAG {:#x}: no such stalled transaction (no effect)", sid, stag);
    return;
  }
  const auto a = static_cast<unsigned>(action);
  // Ac (bit 0 of the field): retry; else terminate, with abort when Ab (bit 1) or IDR0.TERM_MODEL == 1, RAZ/WI
  // otherwise (4.7.1).
  if (a & 1U) return retry(it->first);
  const bool abort = (a & 2U) || config_.idr0.get(Idr0::TERM_MODEL);
  terminate(it->second, abort ? DmaOutcome::aborted : DmaOutcome::raz_wi);
}

void SmmuModel::terminate(Stalled& s, DmaOutcome how) {
  DmaFault f = *s.fault;
  f.outcome = how;
  f.stag.reset();
  finish(s, f);
}

void SmmuModel::finish(Stalled& s, const DmaFault& f) {
  s.held = false;
  s.fault = f;
  // A read terminated as RAZ/WI completes with zeros (3.12.1).
  if (!s.write) s.data.assign(f.outcome == DmaOutcome::raz_wi && !s.probe ? s.size : 0, std::byte{0});
}

// Retried as though it had just arrived (IHI 0070 3.12.2): the configuration and translations of now, and
// a fault may stall it again under a new STAG (the same stall_id for its device).
void SmmuModel::retry(std::uint64_t id) {
  Stalled& s = stalls_.at(id);
  s.held = false;  // its STAG is free again
  auto pieces = translate_range(s.stream, s.iova, s.size, s.write);
  if (!pieces) {
    DmaFault f = pieces.error();
    if (f.outcome == DmaOutcome::stalled) {
      s.held = true;
      s.stag = *f.stag;
      f.stall_id = id;
      s.fault = f;
      return;
    }
    finish(s, f);
    return;
  }
  s.fault.reset();
  if (s.probe) return;
  if (s.write) {
    if (auto r = write_pieces(s.stream.sid, *pieces, s.iova, s.data); !r) s.fault = r.error();
    return;
  }
  s.data.assign(s.size, std::byte{0});
  if (auto r = read_pieces(*pieces, s.iova, s.data); !r) s.fault = r.error();
}

// Clearing SMMUEN terminates every stalled transaction (IHI 0070 3.12.2).
void SmmuModel::control_changed(Cr0 before, Cr0 after) {
  if (!before.get(Cr0::SMMUEN) || after.get(Cr0::SMMUEN)) return;
  for (auto& [id, s] : stalls_)
    if (s.held) terminate(s, DmaOutcome::aborted);
}

}  // namespace vsmmu::smmu::model

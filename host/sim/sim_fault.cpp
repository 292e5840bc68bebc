// The simulated kernel's I/O page faults: DMA engines whose bursts stall (IHI 0070 3.12.2), the stall events
// arm-smmu-v3 turns into fault groups (arm_smmu_handle_event -> iommu_report_device_fault, io-pgfault.c), the
// fault queue's fd (drivers/iommu/iommufd/eventq.c: iommufd_fault_iopf_handler, iommufd_fault_fops_read/write,
// iommufd_auto_response_faults) and the answers that become CMD_RESUME (arm_smmu_page_response).
#include <fcntl.h>

#include <algorithm>
#include <cstring>

#include <fmt/ranges.h>

#include "base/log.hpp"
#include "base/try.hpp"
#include "host/sim/sim_host.hpp"
#include "host/sim/sim_state.hpp"
#include "smmu/format.hpp"

namespace vsmmu::host::sim {

namespace {

constexpr const char* kLog = "sim.host";
constexpr std::size_t kRecordBytes = sizeof(uapi::iommu_hwpt_pgfault);
constexpr std::size_t kResponseBytes = sizeof(uapi::iommu_hwpt_page_response);

}  // namespace

// ---------------------------------------------------------------------------------------------------------
// Stall capability and the stall path

bool SimHost::State::stall_enabled(const DeviceObj& d) {
  const auto& f = smmu_of(d).features();
  return f.stall_force || (f.stalls && spec_of(d).stall);
}

Result<bool> SimHost::device_can_stall(DeviceId dev) const {
  std::lock_guard lock(s_->mu);
  auto* d = s_->get<DeviceObj>(dev);
  if (!d) return fail(ENOENT, "device_can_stall", "dev_id {} is not a bound device", dev);
  return s_->stall_enabled(*d);
}

std::optional<ObjectId> SimHost::State::fault_of(ObjectId hwpt_id) {
  if (auto* p = get<HwptPagingObj>(hwpt_id)) return p->fault;
  if (auto* n = get<HwptNestedObj>(hwpt_id)) return n->fault;
  return std::nullopt;
}

Result<FaultObj*> SimHost::State::fault_io(int fd, std::size_t bytes, std::size_t unit, const char* call,
                                            std::string_view units) {
  if (::fcntl(fd, F_GETFD) < 0) return fail(EBADF, call, "fd {} is not open", fd);
  FaultObj* q = nullptr;
  for (auto& [id, body] : objects)
    if (auto* f = std::get_if<FaultObj>(&body); f && f->channel.is_user_fd(fd)) q = f;
  if (!q) return fail(EINVAL, call, "fd {} is not a fault queue fd of this host", fd);
  // iommufd_fault_fops_read / _write: a count that is not whole records is ESPIPE.
  if (bytes % unit != 0)
    return fail(ESPIPE, call, "fd {}: {} bytes is not a whole number of {}-byte {}", fd, bytes, unit, units);
  return q;
}

void SimHost::State::report_stall(std::size_t smmu_index, const smmu::Event& ev) {
  using smmu::Event;
  auto& drv = *smmus[smmu_index];
  const std::uint32_t sid = ev.get(Event::SID);
  const auto stag = static_cast<std::uint16_t>(ev.get(Event::STAG));
  // arm_smmu_find_master; iommu_report_device_fault finds the attach handle of the PASID, and for a PASID with
  // none, the RID's nested domain (arm-smmu-v3 sets user_pasid_table): either way the RID's domain here.
  FaultObj* queue = nullptr;
  ObjectId dev_id = 0;
  for (std::size_t spec = 0; spec < hw.devices.size(); ++spec) {
    if (smmu_of_spec(spec) != smmu_index || hw.devices[spec].sid != sid || !bound[spec]) continue;
    dev_id = *bound[spec];
    auto& d = *get<DeviceObj>(dev_id);
    if (!d.attached || !stall_enabled(d)) break;
    if (auto f = fault_of(*d.attached)) queue = get<FaultObj>(*f);
    break;
  }
  if (!queue) {
    // No iopf handler (no fault queue on the domain, or a master that is not stall_enabled): io-pgfault.c's
    // iopf_error_response answers IOMMU_PAGE_RESP_INVALID, which arm_smmu_page_response makes CMD_RESUME abort.
    ++stalls_aborted_by_kernel;
    log::info(kLog, "SMMU \"{}\": stall not handled (no fault queue for SID {:#x}), aborted: {}", hw.smmus[smmu_index].name,
              sid, ev);
    if (auto r = drv.page_response(sid, stag, false); !r) log::error(kLog, "CMD_RESUME failed: {}", r.error());
    return;
  }
  // One group of one fault (IOMMU_FAULT_PAGE_REQUEST_LAST_PAGE, grpid = STAG), perm from RnW/InD/PnU, the
  // PASID from SSV/SSID (arm_smmu_handle_event; iommufd_compose_fault_message).
  FaultGroup g;
  g.dev = dev_id;
  g.smmu = smmu_index;
  g.sid = sid;
  g.stag = stag;
  auto& r = g.record;
  r.flags = uapi::kPgfaultFlagsLastPage;
  if (ev.get(Event::SSV)) {
    r.flags |= uapi::kPgfaultFlagsPasidValid;
    r.pasid = static_cast<std::uint32_t>(ev.get(Event::SSID));
  }
  r.dev_id = dev_id;
  r.grpid = stag;
  r.perm = ev.get(Event::RnW) ? uapi::kPgfaultPermRead : uapi::kPgfaultPermWrite;
  if (ev.get(Event::InD)) r.perm |= uapi::kPgfaultPermExec;
  if (ev.get(Event::PnU)) r.perm |= uapi::kPgfaultPermPriv;
  r.addr = ev.get(Event::InputAddr);
  r.length = 0;
  queue->deliver.push_back(g);
  queue->channel.set_ready(true, -1);  // iommufd_fault_iopf_handler: wake the readers (POLLIN)
}

void SimHost::State::auto_respond(ObjectId dev, ObjectId hwpt_id) {
  auto f = fault_of(hwpt_id);
  if (!f) return;
  auto* q = get<FaultObj>(*f);
  if (!q) return;
  std::vector<FaultGroup> answer;
  for (auto it = q->deliver.begin(); it != q->deliver.end();) {
    if (it->dev == dev) {
      answer.push_back(*it);
      it = q->deliver.erase(it);
    } else {
      ++it;
    }
  }
  for (auto it = q->response.begin(); it != q->response.end();) {
    if (it->second.dev == dev) {
      answer.push_back(it->second);
      it = q->response.erase(it);
    } else {
      ++it;
    }
  }
  if (q->deliver.empty() && q->channel.is_user_fd(q->user_fd)) q->channel.set_ready(false, q->user_fd);
  for (const auto& g : answer)
    if (auto r = smmus[g.smmu]->page_response(g.sid, g.stag, false); !r)
      log::error(kLog, "CMD_RESUME failed: {}", r.error());
  settle();
}

// ---------------------------------------------------------------------------------------------------------
// The fault queue's fd

Result<std::size_t> SimHost::read_fault_queue(int fd, std::span<std::byte> buf) {
  constexpr const char* kCall = "read(fault queue)";
  std::lock_guard lock(s_->mu);
  VSMMU_TRY_ASSIGN(FaultObj* q, s_->fault_io(fd, buf.size(), kRecordBytes, kCall, "fault records"));
  std::size_t done = 0;
  // Whole groups, oldest first; each gets the lowest free cookie (xa_alloc, XA_FLAGS_ALLOC1).
  while (!q->deliver.empty() && buf.size() - done >= kRecordBytes) {
    FaultGroup g = q->deliver.front();
    q->deliver.pop_front();
    std::uint32_t cookie = 1;
    while (q->response.count(cookie)) ++cookie;
    g.record.cookie = cookie;
    std::memcpy(buf.data() + done, &g.record, kRecordBytes);
    done += kRecordBytes;
    q->response.emplace(cookie, g);
  }
  if (q->deliver.empty()) q->channel.set_ready(false, fd);
  return done;
}

Result<std::size_t> SimHost::write_fault_queue(int fd, std::span<const std::byte> responses) {
  constexpr const char* kCall = "write(fault queue)";
  std::lock_guard lock(s_->mu);
  VSMMU_TRY_ASSIGN(FaultObj* q, s_->fault_io(fd, responses.size(), kResponseBytes, kCall, "page responses"));
  // iommufd_fault_fops_write: in order; the first bad one stops the write, which returns the bytes consumed
  // before it (or the error when there are none).
  std::size_t done = 0;
  std::optional<Error> error;
  while (done < responses.size()) {
    uapi::iommu_hwpt_page_response resp;
    std::memcpy(&resp, responses.data() + done, kResponseBytes);
    if (resp.code != uapi::kPageResponseSuccess && resp.code != uapi::kPageResponseInvalid) {
      error = fail(EINVAL, kCall, "fd {}: response {} has code {}; allowed: 0 (SUCCESS), 1 (INVALID)", fd,
                   done / kResponseBytes, resp.code).error();
      break;
    }
    auto it = q->response.find(resp.cookie);
    if (it == q->response.end()) {
      error = fail(EINVAL, kCall, "fd {}: response {} names cookie {}, which no delivered fault group awaiting an "
                   "answer has (never read, or answered already)", fd, done / kResponseBytes, resp.cookie).error();
      break;
    }
    const FaultGroup g = it->second;
    q->response.erase(it);
    // iopf_group_response -> arm_smmu_page_response: SUCCESS retries, INVALID aborts.
    if (auto r = s_->smmus[g.smmu]->page_response(g.sid, g.stag, resp.code == uapi::kPageResponseSuccess); !r)
      log::error(kLog, "CMD_RESUME failed: {}", r.error());
    done += kResponseBytes;
  }
  s_->settle();
  if (done == 0 && error) return std::unexpected(*error);
  return done;
}

// ---------------------------------------------------------------------------------------------------------
// DMA engines

Result<DmaResult> SimHost::State::dma(std::string_view engine, std::uint64_t iova, std::span<std::byte> read_into,
                                      std::span<const std::byte> write_from, bool write,
                                      std::optional<std::uint32_t> ssid) {
  auto e = hw.find_dma_engine(engine);
  if (!e) {
    std::vector<std::string> names;
    for (const auto& x : hw.dma_engines) names.push_back(x.name);
    return fail(ENOENT, "sim.dma", "no DMA engine \"{}\" in hardware profile \"{}\"; it has: {}", engine, hw.name,
                fmt::join(names, ", "));
  }
  const std::uint64_t size = write ? write_from.size() : read_into.size();
  if (size && iova > ~0ULL - (size - 1))
    return fail(EINVAL, "sim.dma", "[{:#x}, +{:#x}) wraps the address space", iova, size);
  settle();
  if (auto it = engine_access.find(*e); it != engine_access.end()) {
    if (!it->second.finished)
      return fail(EBUSY, "sim.dma", "DMA engine \"{}\" has a stalled transfer (STAG {:#x}); answer the stall and "
                  "collect it with dma_outcome first", engine, it->second.result.stalled->stag);
    engine_access.erase(it);  // an uncollected outcome is dropped by the next transfer
  }
  EngineAccess a;
  a.write = write;
  a.iova = iova;
  a.ssid = ssid;
  if (write) a.data.assign(write_from.begin(), write_from.end());
  else a.data.assign(read_into.begin(), read_into.end());
  run_engine(*e, a, std::nullopt);
  if (!a.finished) {
    auto& kept = engine_access[*e] = std::move(a);
    settle();  // the kernel may have answered the stall already (no fault queue: abort)
    if (!write) std::ranges::copy(kept.data, read_into.begin());
    DmaResult res = kept.result;
    if (kept.finished) engine_access.erase(*e);
    return res;
  }
  if (!write) std::ranges::copy(a.data, read_into.begin());
  return a.result;
}

void SimHost::State::run_engine(std::size_t e, EngineAccess& a,
                                std::optional<std::expected<void, smmu::model::DmaFault>> first) {
  const auto& spec = hw.dma_engines[e];
  const auto& dev = hw.devices[spec.device];
  auto& model = smmus[smmu_of_spec(spec.device)]->model();
  const std::uint64_t size = a.data.size();
  smmu::model::DmaStream stream{dev.sid, a.ssid, {spec.privileged, false}};
  DmaResult& res = a.result;
  while (a.done < size) {
    const std::uint64_t addr = a.iova + a.done;
    // After a fault, an engine with fault_retry_bytes goes on in pieces of that size.
    const std::uint64_t unit = res.fault ? spec.fault_retry_bytes : spec.burst_bytes;
    const std::uint64_t chunk = first ? a.chunk : std::min(size - a.done, unit - (addr & (unit - 1)));
    const auto piece = std::span(a.data).subspan(a.done, chunk);
    auto r = first ? *std::exchange(first, std::nullopt)
                   : (a.write ? model.dma_write(stream, addr, piece) : model.dma_read(stream, addr, piece));
    // arm_smmu_evtq_thread runs as the SMMU raises its event-queue interrupt and keeps up with a device that
    // faults piece after piece, so the SMMU's queue (2^8 entries here) overflows only while interrupts are
    // deferred (a thread that cannot keep up).
    if (!interrupts_deferred) handle_events();
    if (r) {
      res.bytes += chunk;
      a.done += chunk;
      continue;
    }
    if (r.error().outcome == smmu::model::DmaOutcome::stalled) {
      // Held by the SMMU: the engine waits for this burst (docs/sim-host.md, "Stalls").
      a.chunk = chunk;
      res.stalled = DmaStall{*r.error().stag, addr, *r.error().event};
      a.stall_id = r.error().stall_id;
      return;
    }
    const bool first_fault = !res.fault;
    if (first_fault) res.fault = r.error();
    if (!spec.fault_retry_bytes) break;
    // The faulting burst moved nothing: it is done again in pieces, its fault standing for its first piece's.
    a.done += first_fault ? std::min(chunk, spec.fault_retry_bytes - (addr & (spec.fault_retry_bytes - 1))) : chunk;
  }
  res.stalled.reset();
  a.finished = true;
}

void SimHost::State::settle() {
  // The event-queue thread sees what the commands caused (a retry that stalled again) unless it runs late.
  if (!interrupts_deferred) handle_events();
  for (bool moved = true; moved;) {
    moved = false;
    for (auto& [e, a] : engine_access) {
      if (a.finished) continue;
      auto& model = smmus[smmu_of_spec(hw.dma_engines[e].device)]->model();
      auto st = model.take_stall(a.stall_id);
      std::expected<void, smmu::model::DmaFault> burst;
      if (!st) {
        burst = std::unexpected(smmu::model::DmaFault::without_event(smmu::model::DmaOutcome::aborted, a.result.stalled->iova));
      } else if (st->held) {
        // Retried and stalled again: a new record, a new STAG.
        if (st->fault && st->fault->stag) a.result.stalled = DmaStall{*st->fault->stag, a.result.stalled->iova, *st->fault->event};
        continue;
      } else if (st->fault) {
        burst = std::unexpected(*st->fault);
      }
      // A read's bytes: what the retry read, or zeros for RAZ/WI.
      if (st && !a.write && st->read_data.size() == a.chunk)
        std::ranges::copy(st->read_data, a.data.begin() + static_cast<std::ptrdiff_t>(a.done));
      run_engine(e, a, burst);
      moved = true;
    }
  }
}

Result<DmaResult> SimHost::dma_outcome(std::string_view engine, std::span<std::byte> read_data) {
  constexpr const char* kCall = "sim.dma_outcome";
  std::lock_guard lock(s_->mu);
  auto e = s_->hw.find_dma_engine(engine);
  if (!e) return fail(ENOENT, kCall, "no DMA engine \"{}\" in hardware profile \"{}\"", engine, s_->hw.name);
  s_->settle();
  auto it = s_->engine_access.find(*e);
  if (it == s_->engine_access.end())
    return fail(ENOENT, kCall, "DMA engine \"{}\" has no stalled or uncollected transfer", engine);
  auto& a = it->second;
  if (!a.write && !read_data.empty() && read_data.size() != a.data.size())
    return fail(EINVAL, kCall, "DMA engine \"{}\": a buffer of {} bytes for a read of {} bytes", engine, read_data.size(),
                a.data.size());
  DmaResult res = a.result;
  if (!a.finished) return res;
  if (!a.write && !read_data.empty()) std::ranges::copy(a.data, read_data.begin());
  s_->engine_access.erase(it);
  return res;
}

}  // namespace vsmmu::host::sim

// The simulated kernel's vIOMMU side: IOMMU_VIOMMU_ALLOC, IOMMU_VDEVICE_ALLOC, IOMMU_VEVENTQ_ALLOC, fault
// queues, IOMMU_HWPT_INVALIDATE (drivers/iommu/iommufd/viommu.c, eventq.c, hw_pagetable.c and
// arm-smmu-v3-iommufd.c), the event path (arm_smmu_evtq_thread -> arm_vmaster_report_event) and DMA.
#include <fcntl.h>

#include <algorithm>
#include <array>
#include <cstring>

#include <fmt/ranges.h>

#include "host/sim/sim_host.hpp"
#include "host/sim/sim_state.hpp"
#include "smmu/command.hpp"
#include "smmu/event.hpp"
#include "smmu/format.hpp"
#include "base/log.hpp"

namespace vsmmu::host::sim {

namespace {

constexpr const char* kLog = "sim.host";
// CMDQ_BATCH_ENTRIES - 1: arm_vsmmu_cache_invalidate issues the converted commands in groups of up to 63,
// each followed by a CMD_SYNC.
constexpr std::size_t kInvalidateGroup = 63;
constexpr std::size_t kArmEventBytes = 32;

}  // namespace

// ---------------------------------------------------------------------------------------------------------
// vIOMMU (iommufd_viommu_alloc_ioctl, arm_smmu_get_viommu_size, arm_vsmmu_init)

Result<ObjectId> SimHost::viommu_alloc(DeviceId dev, ObjectId parent_hwpt, std::uint32_t type) {
  constexpr const char* kCall = "IOMMU_VIOMMU_ALLOC";
  std::lock_guard lock(s_->mu);
  if (auto e = s_->inject(kCall)) return std::unexpected(*e);
  if (type == 0) return fail(EOPNOTSUPP, kCall, "type IOMMU_VIOMMU_TYPE_DEFAULT (0) is reserved; use ARM_SMMUV3 (1)");
  auto* d = s_->get<DeviceObj>(dev);
  if (!d) return fail(ENOENT, kCall, "dev_id {} is not a bound device", dev);
  const std::size_t smmu = s_->smmu_of_spec(d->spec);
  const auto& f = s_->smmus[smmu]->features();
  const auto& spec = s_->spec_of(*d);
  const auto& rc = s_->hw.root_complexes[spec.root_complex];
  const std::string who = fmt::format("{} on root complex \"{}\" behind SMMU \"{}\"", s_->describe_device(*d, dev),
                                      rc.name, s_->hw.smmus[smmu].name);
  if (!f.nesting) return fail(EOPNOTSUPP, kCall, "{}: the SMMU cannot nest: {}", who, f.nesting_off);
  if (f.force_sync)
    return fail(EOPNOTSUPP, kCall, "{}: the driver forces a CMD_SYNC after each command (erratum 2812531), which "
                "vIOMMU invalidation does not handle", who);
  // arm_smmu_get_viommu_size: VFIO does no cache maintenance, so the guest must not be able to make DMA
  // non-coherent: either the device is coherent for any attribute (CANWBS) or stage 2 forces write-back (S2FWB).
  if (!rc.canwbs && !f.s2fwb)
    return fail(EOPNOTSUPP, kCall, "{}: neither S2FWB (SMMU \"{}\" IDR3.FWB = 0) nor CANWBS (root complex \"{}\"'s IORT "
                "memory access flags lack it); one of them is needed so a guest's stage 1 cannot make DMA "
                "non-coherent: put the device behind an SMMU with S2FWB or a root complex with CANWBS",
                who, s_->hw.smmus[smmu].name, rc.name);
  if (type != uapi::kViommuTypeArmSmmuv3)
    return fail(EOPNOTSUPP, kCall, "type {}: arm-smmu-v3 without an implementation extension offers ARM_SMMUV3 (1) only", type);
  auto* parent = s_->get<HwptPagingObj>(parent_hwpt);
  if (!parent) return fail(ENOENT, kCall, "hwpt_id {} is not a paging HWPT", parent_hwpt);
  if (!parent->domain->nest_parent())
    return fail(EINVAL, kCall, "paging HWPT {} was not allocated with NEST_PARENT", parent_hwpt);
  if (parent->smmu != smmu)
    return fail(EINVAL, kCall, "{}: nest parent HWPT {} belongs to SMMU \"{}\"", who, parent_hwpt,
                s_->hw.smmus[parent->smmu].name);
  ViommuObj v;
  v.smmu = smmu;
  v.parent = parent_hwpt;
  v.type = type;
  return s_->insert(std::move(v));
}

// ---------------------------------------------------------------------------------------------------------
// vDEVICE (iommufd_vdevice_alloc_ioctl)

Result<ObjectId> SimHost::vdevice_alloc(ObjectId viommu, DeviceId dev, std::uint64_t virt_id) {
  constexpr const char* kCall = "IOMMU_VDEVICE_ALLOC";
  std::lock_guard lock(s_->mu);
  if (auto e = s_->inject(kCall)) return std::unexpected(*e);
  auto* vi = s_->get<ViommuObj>(viommu);
  if (!vi) return fail(ENOENT, kCall, "viommu_id {} is not a vIOMMU", viommu);
  auto* d = s_->get<DeviceObj>(dev);
  if (!d) return fail(ENOENT, kCall, "dev_id {} is not a bound device", dev);
  if (vi->smmu != s_->smmu_of_spec(d->spec))
    return fail(EINVAL, kCall, "{} is behind SMMU \"{}\" but vIOMMU {} is on SMMU \"{}\"", s_->describe_device(*d, dev),
                s_->hw.smmus[s_->smmu_of_spec(d->spec)].name, viommu, s_->hw.smmus[vi->smmu].name);
  if (d->vdevice)
    return fail(EEXIST, kCall, "{} already has vDEVICE {}; a device has one vSID", s_->describe_device(*d, dev), *d->vdevice);
  if (auto it = vi->vdevs.find(virt_id); it != vi->vdevs.end())
    return fail(EEXIST, kCall, "vIOMMU {} already has vDEVICE {} with virt_id (vSID) {:#x}", viommu, it->second, virt_id);
  VdeviceObj v;
  v.viommu = viommu;
  v.dev = dev;
  v.virt_id = virt_id;
  const ObjectId id = s_->insert(std::move(v));
  s_->get<ViommuObj>(viommu)->vdevs.emplace(virt_id, id);
  s_->get<DeviceObj>(dev)->vdevice = id;
  return id;
}

// ---------------------------------------------------------------------------------------------------------
// vEVENTQ and fault queue (iommufd_veventq_alloc, iommufd_fault_alloc)

Result<VeventqInfo> SimHost::veventq_alloc(ObjectId viommu, std::uint32_t type, std::uint32_t depth) {
  constexpr const char* kCall = "IOMMU_VEVENTQ_ALLOC";
  std::lock_guard lock(s_->mu);
  if (auto e = s_->inject(kCall)) return std::unexpected(*e);
  if (type == 0) return fail(EOPNOTSUPP, kCall, "type IOMMU_VEVENTQ_TYPE_DEFAULT (0) is reserved; use ARM_SMMUV3 (1)");
  if (depth == 0 || depth > limits::kVeventqMaxDepth)
    return fail(EINVAL, kCall, "veventq_depth {} is outside 1..{} (VEVENTQ_MAX_DEPTH)", depth, limits::kVeventqMaxDepth);
  if (!s_->get<ViommuObj>(viommu)) return fail(ENOENT, kCall, "viommu_id {} is not a vIOMMU", viommu);
  for (const auto& [id, body] : s_->objects)
    if (auto* q = std::get_if<VeventqObj>(&body); q && q->viommu == viommu && q->type == type)
      return fail(EEXIST, kCall, "vIOMMU {} already has vEVENTQ {} of type {}; one per type", viommu, id, type);
  auto queue = VeventQueue::create(depth, type == uapi::kVeventqTypeArmSmmuv3 ? kArmEventBytes : 0);
  if (!queue) return fail(queue.error().err, kCall, "{}", queue.error().message);
  VeventqObj q;
  q.viommu = viommu;
  q.type = type;
  q.queue = std::move(*queue);
  const int fd = q.queue->take_user_fd();
  const ObjectId id = s_->insert(std::move(q));
  return VeventqInfo{id, fd};
}

Result<std::size_t> SimHost::read_veventq(int fd, std::span<std::byte> buf) {
  constexpr const char* kCall = "read(vEVENTQ)";
  std::lock_guard lock(s_->mu);
  if (::fcntl(fd, F_GETFD) < 0) return fail(EBADF, kCall, "fd {} is not open", fd);
  for (auto& [id, body] : s_->objects)
    if (auto* q = std::get_if<VeventqObj>(&body); q && q->queue->is_user_fd(fd)) return q->queue->read(buf, fd);
  return fail(EINVAL, kCall, "fd {} is not a vEVENTQ fd of this host", fd);
}

// Fault delivery is not modelled yet (issue 15 brings stalls to the model): a fault queue never holds a fault.
Result<std::size_t> SimHost::read_fault_queue(int fd, std::span<std::byte> buf) {
  std::lock_guard lock(s_->mu);
  if (::fcntl(fd, F_GETFD) < 0) return fail(EBADF, "read(fault queue)", "fd {} is not open", fd);
  // iommufd_fault_fops_read (drivers/iommu/iommufd/eventq.c): a count that is not a whole number of records is
  // ESPIPE, as the real kernel answered in the e2e run (docs/e2e.md step 7b).
  if (buf.size() % sizeof(uapi::iommu_hwpt_pgfault) != 0)
    return fail(ESPIPE, "read(fault queue)", "fd {}: {} bytes is not a whole number of fault records", fd, buf.size());
  return std::size_t{0};
}

Result<std::size_t> SimHost::write_fault_queue(int fd, std::span<const std::byte> responses) {
  std::lock_guard lock(s_->mu);
  if (::fcntl(fd, F_GETFD) < 0) return fail(EBADF, "write(fault queue)", "fd {} is not open", fd);
  if (responses.size() % sizeof(uapi::iommu_hwpt_page_response) != 0)
    return fail(ESPIPE, "write(fault queue)", "fd {}: {} bytes is not a whole number of page responses", fd,
                responses.size());
  return fail(EINVAL, "write(fault queue)", "fd {}: {} bytes of responses, but no fault group was delivered", fd,
              responses.size());
}

Result<FaultQueueInfo> SimHost::fault_queue_alloc() {
  constexpr const char* kCall = "IOMMU_FAULT_QUEUE_ALLOC";
  std::lock_guard lock(s_->mu);
  if (auto e = s_->inject(kCall)) return std::unexpected(*e);
  auto channel = UserChannel::create("fault queue");
  if (!channel) return fail(channel.error().err, kCall, "{}", channel.error().message);
  FaultObj f;
  f.channel = std::move(*channel);
  const int fd = f.channel.take_user_fd();
  const ObjectId id = s_->insert(std::move(f));
  return FaultQueueInfo{id, fd};
}

// ---------------------------------------------------------------------------------------------------------
// IOMMU_HWPT_INVALIDATE (iommufd_hwpt_invalidate, arm_vsmmu_cache_invalidate, arm_vsmmu_convert_user_cmd)

InvalidateOutcome SimHost::hwpt_invalidate(const InvalidateRequest& req) {
  constexpr const char* kCall = "IOMMU_HWPT_INVALIDATE";
  std::lock_guard lock(s_->mu);
  auto error = [](Result<void> r) { return InvalidateOutcome{0, r.error()}; };
  if (auto e = s_->inject(kCall)) return InvalidateOutcome{0, *e};
  if (auto e = invalidate_data_error(req)) return InvalidateOutcome{0, *e};
  // iommufd_hwpt_invalidate, before the target is looked up; an empty span is a NULL data_uptr.
  if (req.entry_num && (req.data.empty() || !req.entry_len || req.entry_len > limits::kInvalidateMaxEntryLen ||
                        req.entry_num > limits::kInvalidateMaxEntries))
    return error(fail(EINVAL, kCall, "{} entries (at most {}) with entry_len {} (1..{}) and data_uptr {}",
                      req.entry_num, limits::kInvalidateMaxEntries, req.entry_len, limits::kInvalidateMaxEntryLen,
                      req.data.empty() ? "NULL" : "set"));
  auto it = s_->objects.find(req.id);
  if (it == s_->objects.end()) return error(fail(ENOENT, kCall, "hwpt_id {} names no object", req.id));
  switch (s_->type_of(it->second)) {
    case ObjType::hwpt_nested:
      return error(fail(EOPNOTSUPP, kCall, "id {} is a nested HWPT: arm-smmu-v3 invalidates through its vIOMMU ({})",
                        req.id, std::get<HwptNestedObj>(it->second).viommu));
    case ObjType::viommu: return s_->viommu_invalidate(req.id, req);
    default:
      return error(fail(EINVAL, kCall, "id {} is a {}; invalidations go to a vIOMMU", req.id,
                        type_name(s_->type_of(it->second))));
  }
}

InvalidateOutcome SimHost::State::viommu_invalidate(ObjectId viommu_id, const InvalidateRequest& req) {
  using smmu::Command;
  using smmu::Opcode;
  constexpr const char* kCall = "IOMMU_HWPT_INVALIDATE";
  auto& vi = *get<ViommuObj>(viommu_id);
  auto& drv = *smmus[vi.smmu];
  const auto& f = drv.features();
  const std::uint16_t vmid = get<HwptPagingObj>(vi.parent)->domain->vmid();
  auto error = [](Result<void> r, std::uint32_t handled = 0) { return InvalidateOutcome{handled, r.error()}; };

  // arm_vsmmu_cache_invalidate allocates the whole array of 16-byte commands first; when that fails it returns
  // before touching the array's entry_num, which iommufd_hwpt_invalidate (drivers/iommu/iommufd/hw_pagetable.c)
  // writes back: the caller reads its own entry_num as "handled" (seen on Linux 7.3 under QEMU, e2e_kernel_host).
  if (req.entry_num > limits::kInvalidateMaxAllocatableEntries)
    return error(fail(ENOMEM, kCall, "{} entries: the driver copies at most {} commands in one allocation",
                      req.entry_num, limits::kInvalidateMaxAllocatableEntries),
                 req.entry_num);
  // iommu_copy_struct_from_full_user_array
  if (req.data_type != uapi::kInvalidateDataViommuArmSmmuv3)
    return error(fail(EINVAL, kCall, "data_type {}: an ARM SMMUv3 vIOMMU takes IOMMU_VIOMMU_INVALIDATE_DATA_ARM_SMMUV3 ({})",
                      req.data_type, uapi::kInvalidateDataViommuArmSmmuv3));
  if (req.entry_num == 0) return error(fail(EINVAL, kCall, "entry_num is 0; pass at least one command"));
  std::vector<Command> cmds(req.entry_num);
  for (std::uint32_t i = 0; i < req.entry_num; ++i) {
    const auto entry = req.data.subspan(std::size_t{i} * req.entry_len, req.entry_len);
    // copy_struct_from_user: a shorter entry is zero-extended; bytes past the 16 the kernel knows must be 0.
    if (entry.size() > Command::bytes &&
        std::any_of(entry.begin() + Command::bytes, entry.end(), [](std::byte b) { return b != std::byte{0}; }))
      return error(fail(E2BIG, kCall, "entry {} has non-zero bytes past the 16 of struct "
                        "iommu_viommu_arm_smmuv3_invalidate (entry_len {})", i, req.entry_len));
    std::array<std::byte, Command::bytes> raw{};
    std::memcpy(raw.data(), entry.data(), std::min<std::size_t>(entry.size(), raw.size()));
    cmds[i] = Command::from_bytes(std::span<const std::byte, Command::bytes>(raw));
  }

  // arm_vsmmu_convert_user_cmd (+ the stricter checks of the "strict_invalidation_fields" kernel profile).
  auto convert = [&](Command& c, std::uint32_t index) -> Result<void> {
    const auto op = static_cast<std::uint8_t>(c.raw(Command::Opcode));
    const auto name = smmu::opcode_name(static_cast<Opcode>(op));
    if (kernel.strict_invalidation_fields) {
      const auto res0 = smmu::res0_violation(c);
      if (res0)
        return fail(EIO, kCall, "entry {} ({}) sets reserved bits (word 0 {:#x}, word 1 {:#x})", index, name, res0.dw0, res0.dw1);
      const bool tlbi_asid = op == static_cast<std::uint8_t>(Opcode::TLBI_NH_ASID) || op == static_cast<std::uint8_t>(Opcode::TLBI_NH_VA);
      if (tlbi_asid && f.asid_bits == 8 && c.get(Command::ASID) > 0xff)
        return fail(EIO, kCall, "entry {} ({}) names ASID {:#x}; SMMU \"{}\" has 8-bit ASIDs", index, name,
                    c.get(Command::ASID), hw.smmus[vi.smmu].name);
      const bool tlbi_va = op == static_cast<std::uint8_t>(Opcode::TLBI_NH_VA) || op == static_cast<std::uint8_t>(Opcode::TLBI_NH_VAA);
      if (tlbi_va && !f.range_inv && (c.get(Command::NUM) || c.get(Command::SCALE) || c.get(Command::TG)))
        return fail(EIO, kCall, "entry {} ({}) uses range fields (NUM/SCALE/TG) but SMMU \"{}\" has no RIL", index, name,
                    hw.smmus[vi.smmu].name);
      if (tlbi_va && c.get(Command::TG) == 0 && c.get(Command::TTL) != 0)
        return fail(EIO, kCall, "entry {} ({}) gives a TTL hint without a TG", index, name);
      if (op == static_cast<std::uint8_t>(Opcode::ATC_INV) && c.get(Command::Size) > 52)
        return fail(EIO, kCall, "entry {} (ATC_INV) has Size {} above 52", index, c.get(Command::Size));
      const bool ssid_cmd = op == static_cast<std::uint8_t>(Opcode::CFGI_CD) || op == static_cast<std::uint8_t>(Opcode::ATC_INV);
      if (ssid_cmd && (c.get(Command::SSID) >> f.ssid_bits) != 0)
        return fail(EIO, kCall, "entry {} ({}) names SSID {:#x}; SMMU \"{}\" has {}-bit SSIDs", index, name,
                    c.get(Command::SSID), hw.smmus[vi.smmu].name, f.ssid_bits);
    }
    switch (static_cast<Opcode>(op)) {
      case Opcode::TLBI_NSNH_ALL:
        c = Command{};
        c.set(Command::Opcode, Opcode::TLBI_NH_ALL).set(Command::VMID, vmid);
        return {};
      case Opcode::TLBI_NH_VA:
      case Opcode::TLBI_NH_VAA:
      case Opcode::TLBI_NH_ALL:
      case Opcode::TLBI_NH_ASID:
        c.set(Command::VMID, vmid);
        return {};
      case Opcode::ATC_INV:
      case Opcode::CFGI_CD:
      case Opcode::CFGI_CD_ALL: {
        const std::uint32_t vsid = c.get(Command::SID);
        auto v = vi.vdevs.find(vsid);
        if (v == vi.vdevs.end())
          return fail(EIO, kCall, "entry {} ({}) names vSID {:#x}, which no vDEVICE of vIOMMU {} has", index, name, vsid,
                      viommu_id);
        const auto& vd = *get<VdeviceObj>(v->second);
        c.set(Command::SID, hw.devices[get<DeviceObj>(vd.dev)->spec].sid);
        return {};
      }
      default:
        return fail(EIO, kCall, "entry {} is {} (opcode {:#04x}); a vIOMMU forwards only TLBI_NH_*, TLBI_NSNH_ALL, "
                    "ATC_INV, CFGI_CD and CFGI_CD_ALL (the VMM handles the rest)", index, name, op);
    }
  };

  // Convert in order; every 63 converted commands (and at the end) go to the SMMU with a CMD_SYNC. On an
  // error, entry_num says where it stopped: commands converted since the last group are not issued.
  std::size_t cur = 0, last = 0;
  const std::size_t n = cmds.size();
  while (cur != n) {
    if (auto r = convert(cmds[cur], static_cast<std::uint32_t>(cur)); !r)
      return error(r, static_cast<std::uint32_t>(cur));
    ++cur;
    if (cur != n && cur - last != kInvalidateGroup) continue;
    if (auto r = drv.issue_cmdlist(std::span(cmds).subspan(last, cur - last), true); !r) {
      --cur;
      return error(fail(r.error().err, kCall, "the SMMU did not complete the group ending at entry {}: {}", cur,
                        r.error().message), static_cast<std::uint32_t>(cur));
    }
    last = cur;
  }
  return InvalidateOutcome{static_cast<std::uint32_t>(n), std::nullopt};
}

// ---------------------------------------------------------------------------------------------------------
// Events (arm_smmu_evtq_thread, arm_smmu_handle_evt, arm_vmaster_report_event, iommufd_viommu_report_event)

void SimHost::State::handle_events() {
  using smmu::Event;
  using smmu::EventId;
  for (std::size_t i = 0; i < smmus.size(); ++i) {
    for (Event ev : smmus[i]->take_events()) {
      const auto id = ev.get(Event::ID);
      const bool reportable = id == EventId::C_BAD_STE || id == EventId::F_STREAM_DISABLED ||
                              id == EventId::C_BAD_SUBSTREAMID || id == EventId::C_BAD_CD ||
                              id == EventId::F_TRANSLATION || id == EventId::F_ADDR_SIZE || id == EventId::F_ACCESS ||
                              id == EventId::F_PERMISSION;
      // arm_smmu_find_master, then the master's vmaster: attached to a nested HWPT with a vDEVICE (vSID).
      const std::uint32_t sid = ev.get(Event::SID);
      VeventQueue* queue = nullptr;
      std::uint64_t vsid = 0;
      for (std::size_t spec = 0; spec < hw.devices.size() && reportable && !ev.get(Event::S2); ++spec) {
        if (smmu_of_spec(spec) != i || hw.devices[spec].sid != sid || !bound[spec]) continue;
        auto& d = *get<DeviceObj>(*bound[spec]);
        auto* n = d.attached ? get<HwptNestedObj>(*d.attached) : nullptr;
        if (!n || !d.vdevice) break;
        auto& vd = *get<VdeviceObj>(*d.vdevice);
        if (vd.viommu != n->viommu) break;
        vsid = vd.virt_id;
        for (auto& [qid, body] : objects)
          if (auto* q = std::get_if<VeventqObj>(&body);
              q && q->viommu == n->viommu && q->type == uapi::kVeventqTypeArmSmmuv3)
            queue = q->queue.get();
        break;
      }
      if (!queue) {
        ++events_unhandled;
        log::info(kLog, "SMMU \"{}\": event not forwarded to a guest: {}", hw.smmus[i].name, ev);
        continue;
      }
      // The guest sees its own StreamID (truncated to the field: a vSID wider than 32 bits cannot be named).
      ev.set(Event::SID, static_cast<std::uint32_t>(vsid));
      queue->report(ev.to_bytes());
      ++events_forwarded;
    }
  }
}

// ---------------------------------------------------------------------------------------------------------
// DMA

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
  const auto& spec = hw.dma_engines[*e];
  const auto& dev = hw.devices[spec.device];
  auto& model = smmus[smmu_of_spec(spec.device)]->model();
  const std::uint64_t size = write ? write_from.size() : read_into.size();
  if (size && iova > ~0ULL - (size - 1))
    return fail(EINVAL, "sim.dma", "[{:#x}, +{:#x}) wraps the address space", iova, size);
  smmu::model::DmaStream stream{dev.sid, ssid, {spec.privileged, false}};
  DmaResult res;
  std::uint64_t done = 0;
  while (done < size) {
    const std::uint64_t a = iova + done;
    // After a fault, an engine with fault_retry_bytes goes on in pieces of that size.
    const std::uint64_t unit = res.fault ? spec.fault_retry_bytes : spec.burst_bytes;
    const std::uint64_t chunk = std::min(size - done, unit - (a & (unit - 1)));
    auto r = write ? model.dma_write(stream, a, write_from.subspan(done, chunk))
                   : model.dma_read(stream, a, read_into.subspan(done, chunk));
    // arm_smmu_evtq_thread runs as the SMMU raises its event-queue interrupt and keeps up with a device that
    // faults piece after piece, so the SMMU's queue (2^8 entries here) overflows only while interrupts are
    // deferred (a thread that cannot keep up).
    if (!interrupts_deferred) handle_events();
    if (r) {
      res.bytes += chunk;
      done += chunk;
      continue;
    }
    const bool first = !res.fault;
    if (first) res.fault = r.error();
    if (!spec.fault_retry_bytes) break;
    // The faulting burst moved nothing: it is done again in pieces, its fault standing for its first piece's.
    done += first ? std::min(chunk, spec.fault_retry_bytes - (a & (spec.fault_retry_bytes - 1))) : chunk;
  }
  return res;
}

Result<DmaResult> SimHost::dma_write(std::string_view engine, std::uint64_t iova, std::span<const std::byte> data,
                                     std::optional<std::uint32_t> ssid) {
  std::lock_guard lock(s_->mu);
  return s_->dma(engine, iova, {}, data, true, ssid);
}

void SimHost::set_interrupts_deferred(bool deferred) {
  std::lock_guard lock(s_->mu);
  s_->interrupts_deferred = deferred;
}

void SimHost::run_interrupts() {
  std::lock_guard lock(s_->mu);
  s_->handle_events();
}

Result<DmaResult> SimHost::dma_read(std::string_view engine, std::uint64_t iova, std::span<std::byte> data,
                                    std::optional<std::uint32_t> ssid) {
  std::lock_guard lock(s_->mu);
  return s_->dma(engine, iova, data, {}, false, ssid);
}

}  // namespace vsmmu::host::sim

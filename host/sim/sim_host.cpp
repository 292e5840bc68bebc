// The simulated kernel: iommufd's object table, creation, IOMMU_DESTROY and introspection, with the errnos of
// drivers/iommu/iommufd/main.c. The rest is split as iommufd is: sim_device.cpp (device.c: bind, attach),
// sim_ioas.cpp (ioas.c, io_pagetable.c), sim_hwpt.cpp (hw_pagetable.c), sim_dirty.cpp, sim_viommu.cpp
// (viommu.c, eventq.c).
#include "host/sim/sim_host.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cstdio>
#include <cstring>

#include <fmt/ranges.h>

#include "base/try.hpp"
#include "host/sim/sim_state.hpp"
#include "base/log.hpp"

namespace vsmmu::host::sim {

std::string_view type_name(ObjType t) {
  switch (t) {
    case ObjType::device: return "device";
    case ObjType::ioas: return "IOAS";
    case ObjType::hwpt_paging: return "paging HWPT";
    case ObjType::hwpt_nested: return "nested HWPT";
    case ObjType::viommu: return "vIOMMU";
    case ObjType::vdevice: return "vDEVICE";
    case ObjType::veventq: return "vEVENTQ";
    case ObjType::fault: return "fault queue";
  }
  return "object";
}

// ---------------------------------------------------------------------------------------------------------
// Objects

ObjectId SimHost::State::alloc_id() const {
  // xa_alloc(&ictx->objects, ..., xa_limit_31b): the lowest free index from 1.
  ObjectId id = 1;
  for (const auto& [used, body] : objects) {
    if (used != id) break;
    ++id;
  }
  return id;
}

ObjectId SimHost::State::insert(Body body) {
  const ObjectId id = alloc_id();
  objects.emplace(id, std::move(body));
  return id;
}

std::optional<Error> SimHost::State::inject(const char* call) {
  if (fail_nth == 0 || fired) return std::nullopt;
  if (++calls != fail_nth) return std::nullopt;
  fired = true;
  return Error{ENOMEM, std::string(call),
               fmt::format("injected failure (fail_nth = {}): the simulated kernel's allocation failed before the "
                           "call changed anything", fail_nth)};
}

std::string SimHost::State::describe_device(const DeviceObj& d, ObjectId id) const {
  const auto& s = spec_of(d);
  return fmt::format("device {} (dev_id {}, {})", s.name, id, s.bdf.to_string());
}

bool SimHost::State::ats_capable(const DeviceObj& d) const {
  const auto& s = spec_of(d);
  return s.ats && hw.root_complexes[s.root_complex].ats && smmus[smmu_of_spec(d.spec)]->features().ats;
}

// ---------------------------------------------------------------------------------------------------------
// Creation

SimHost::SimHost(std::unique_ptr<State> state) : s_(std::move(state)) {}

Result<std::unique_ptr<SimHost>> SimHost::create(KernelProfile kernel, HardwareProfile hardware) {
  // The simulated physical address space: RAM from kHostRamBase to the smallest OAS of the SMMUs (TableBuilder
  // writes output addresses below 2^48 with the 4KB granule), the ITS below it.
  unsigned oas = 48;
  for (const auto& s : hardware.smmus) oas = std::min(oas, s.features().oas_bits());
  const std::uint64_t its = hardware.its_base;
  auto state = std::make_unique<State>(std::move(kernel), std::move(hardware), kHostRamBase, 1ULL << oas, its);
  State& st = *state;
  for (const auto& spec : st.hw.smmus) {
    VSMMU_TRY_ASSIGN(auto d, ArmSmmuDevice::probe(spec, st.mem));
    st.smmus.push_back(std::move(d));
  }
  st.bound.assign(st.hw.devices.size(), std::nullopt);
  st.installed.assign(st.hw.devices.size(), smmu::Ste{});
  // Every device starts blocked: an abort STE (the driver's blocking domain before VFIO binds it).
  for (std::size_t i = 0; i < st.hw.devices.size(); ++i) VSMMU_TRY(st.install(i, st.abort_ste()));
  return std::unique_ptr<SimHost>(new SimHost(std::move(state)));
}

Result<std::unique_ptr<SimHost>> SimHost::create_default() {
  VSMMU_TRY_ASSIGN(auto k, embedded_kernel_profile("upstream"));
  VSMMU_TRY_ASSIGN(auto h, embedded_hardware_profile("default"));
  return create(std::move(k), std::move(h));
}

SimHost::~SimHost() {
  std::lock_guard lock(s_->mu);
  // What the user left behind goes as closing /dev/iommu would take it: attachments, then children before
  // parents, each IOAS's mappings last.
  for (auto& [id, body] : s_->objects)
    if (auto* d = std::get_if<DeviceObj>(&body); d && d->attached) (void)s_->do_detach(id);
  for (ObjType t : {ObjType::hwpt_nested, ObjType::vdevice, ObjType::veventq, ObjType::viommu, ObjType::hwpt_paging,
                    ObjType::ioas, ObjType::fault, ObjType::device}) {
    std::vector<ObjectId> ids;
    for (const auto& [id, body] : s_->objects)
      if (s_->type_of(body) == t) ids.push_back(id);
    for (ObjectId id : ids) {
      if (t == ObjType::hwpt_paging) {
        s_->destroy_paging(id);
        continue;
      }
      if (t == ObjType::ioas) {
        auto& io = *s_->get<IoasObj>(id);
        while (!io.areas.empty()) s_->unmap_area(io, io.areas.begin());
      }
      s_->objects.erase(id);
    }
  }
}

std::string SimHost::name() const { return fmt::format("sim {}/{}", s_->kernel.name, s_->hw.name); }

const KernelProfile& SimHost::kernel_profile() const { return s_->kernel; }
const HardwareProfile& SimHost::hardware_profile() const { return s_->hw; }

void SimHost::set_fail_nth(unsigned n) {
  std::lock_guard lock(s_->mu);
  s_->fail_nth = n;
  s_->calls = 0;
  s_->fired = false;
}

bool SimHost::fail_nth_fired() const {
  std::lock_guard lock(s_->mu);
  return s_->fired;
}

// ---------------------------------------------------------------------------------------------------------
// IOMMU_DESTROY (iommufd_destroy: EBUSY while other objects or an open fd hold it)

Result<void> SimHost::destroy(ObjectId id) {
  constexpr const char* kCall = "IOMMU_DESTROY";
  std::lock_guard lock(s_->mu);
  auto it = s_->objects.find(id);
  if (it == s_->objects.end()) return fail(ENOENT, kCall, "id {} names no object", id);
  auto busy = [&](std::string_view why) {
    return fail(EBUSY, kCall, "{} {} is in use: {}; destroy or detach that first", type_name(s_->type_of(it->second)), id, why);
  };
  std::vector<ObjectId> users;
  auto users_of = [&](auto pred) {
    users.clear();
    for (const auto& [oid, body] : s_->objects)
      if (pred(body)) users.push_back(oid);
    return !users.empty();
  };
  switch (s_->type_of(it->second)) {
    case ObjType::device:
      return busy("a bound device belongs to its VFIO cdev; unbind it (close the cdev) instead");
    case ObjType::ioas: {
      if (users_of([&](const Body& b) { auto* p = std::get_if<HwptPagingObj>(&b); return p && p->ioas == id; }))
        return busy(fmt::format("paging HWPT(s) {} are built on it", fmt::join(users, ", ")));
      auto& io = std::get<IoasObj>(it->second);
      while (!io.areas.empty()) s_->unmap_area(io, io.areas.begin());
      s_->objects.erase(it);
      return {};
    }
    case ObjType::hwpt_paging: {
      if (users_of([&](const Body& b) { auto* d = std::get_if<DeviceObj>(&b); return d && d->attached == id; }))
        return busy(fmt::format("device(s) {} are attached to it", fmt::join(users, ", ")));
      if (users_of([&](const Body& b) { auto* v = std::get_if<ViommuObj>(&b); return v && v->parent == id; }))
        return busy(fmt::format("vIOMMU(s) {} use it as their nest parent", fmt::join(users, ", ")));
      s_->destroy_paging(id);
      return {};
    }
    case ObjType::hwpt_nested:
      if (users_of([&](const Body& b) { auto* d = std::get_if<DeviceObj>(&b); return d && d->attached == id; }))
        return busy(fmt::format("device(s) {} are attached to it", fmt::join(users, ", ")));
      s_->objects.erase(it);
      return {};
    case ObjType::viommu: {
      if (users_of([&](const Body& b) { auto* n = std::get_if<HwptNestedObj>(&b); return n && n->viommu == id; }))
        return busy(fmt::format("nested HWPT(s) {} are built on it", fmt::join(users, ", ")));
      if (users_of([&](const Body& b) { auto* v = std::get_if<VdeviceObj>(&b); return v && v->viommu == id; }))
        return busy(fmt::format("vDEVICE(s) {} belong to it", fmt::join(users, ", ")));
      if (users_of([&](const Body& b) { auto* q = std::get_if<VeventqObj>(&b); return q && q->viommu == id; }))
        return busy(fmt::format("vEVENTQ(s) {} belong to it", fmt::join(users, ", ")));
      s_->objects.erase(it);
      return {};
    }
    case ObjType::vdevice: {
      auto& v = std::get<VdeviceObj>(it->second);
      if (auto* vi = s_->get<ViommuObj>(v.viommu)) vi->vdevs.erase(v.virt_id);
      if (auto* d = s_->get<DeviceObj>(v.dev)) d->vdevice.reset();
      s_->objects.erase(it);
      return {};
    }
    case ObjType::veventq:
      if (std::get<VeventqObj>(it->second).queue->user_open()) return busy("its fd is still open; close it first");
      s_->objects.erase(it);
      return {};
    case ObjType::fault:
      if (std::get<FaultObj>(it->second).channel.user_open()) return busy("its fd is still open; close it first");
      if (users_of([&](const Body& b) {
            if (auto* p = std::get_if<HwptPagingObj>(&b)) return p->fault == id;
            if (auto* n = std::get_if<HwptNestedObj>(&b)) return n->fault == id;
            return false;
          }))
        return busy(fmt::format("HWPT(s) {} report faults to it", fmt::join(users, ", ")));
      s_->objects.erase(it);
      return {};
  }
  return {};
}

// ---------------------------------------------------------------------------------------------------------
// Introspection

std::string SimStats::held() const {
  std::string out;
  const auto add = [&out](std::uint64_t n, std::string_view what) {
    if (n) out += fmt::format("{}{} {}", out.empty() ? "" : ", ", n, what);
  };
  add(objects, "objects");
  add(devices_bound, "bound devices");
  add(ioas_areas, "IOAS areas");
  add(pinned_bytes, "pinned bytes");
  add(domains, "domains");
  add(domain_mapped_bytes, "domain-mapped bytes");
  add(translating_stes, "translating STEs");
  add(veventq_fds, "event/fault fds");
  add(fault_groups, "fault groups");
  add(stalled_transactions, "stalled transactions");
  add(pending_dma, "pending DMA transfers");
  return out;
}

SimStats SimHost::stats() const {
  std::lock_guard lock(s_->mu);
  SimStats st;
  st.objects = s_->objects.size();
  for (const auto& [id, body] : s_->objects) {
    if (std::holds_alternative<DeviceObj>(body)) ++st.devices_bound;
    if (auto* io = std::get_if<IoasObj>(&body)) {
      st.ioas_areas += io->areas.size();
      for (const auto& [iova, a] : io->areas) st.pinned_bytes += a.length;
    }
    if (auto* p = std::get_if<HwptPagingObj>(&body)) {
      ++st.domains;
      st.domain_mapped_bytes += p->domain->mapped_bytes();
    }
    if (std::holds_alternative<VeventqObj>(body) || std::holds_alternative<FaultObj>(body)) ++st.veventq_fds;
    if (auto* f = std::get_if<FaultObj>(&body)) st.fault_groups += f->deliver.size() + f->response.size();
  }
  for (const auto& ste : s_->installed)
    if (ste.get(smmu::Ste::Config) != smmu::StreamConfig::abort) ++st.translating_stes;
  st.events_forwarded = s_->events_forwarded;
  st.events_unhandled = s_->events_unhandled;
  st.stalls_aborted = s_->stalls_aborted_by_kernel;
  for (const auto& smmu : s_->smmus) st.stalled_transactions += smmu->model().stalled_transactions();
  for (const auto& [e, a] : s_->engine_access) st.pending_dma += a.finished ? 0 : 1;
  st.host_regions = s_->mem.regions();
  return st;
}

Result<SmmuCounters> SimHost::smmu_counters(std::string_view smmu_name) const {
  std::lock_guard lock(s_->mu);
  auto i = s_->hw.find_smmu(smmu_name);
  if (!i) return fail(ENOENT, "sim.host", "no SMMU \"{}\" in hardware profile \"{}\"", smmu_name, s_->hw.name);
  auto& d = *s_->smmus[*i];
  SmmuCounters c;
  c.commands = d.commands_issued();
  c.syncs = d.syncs_issued();
  c.command_errors = d.command_errors();
  c.model = d.model().counters();
  return c;
}

Result<smmu::Ste> SimHost::physical_ste(std::string_view device) const {
  std::lock_guard lock(s_->mu);
  auto i = s_->hw.find_device(device);
  if (!i) return fail(ENOENT, "sim.host", "no device \"{}\" in hardware profile \"{}\"", device, s_->hw.name);
  return s_->installed[*i];
}

}  // namespace vsmmu::host::sim

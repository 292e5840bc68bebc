// A small Host for unit tests of what sits directly on the seam (nesting/viommu.hpp): objects with parents and
// the kernel's "busy while referenced" rule (drivers/iommu/iommufd/main.c iommufd_object_remove: EBUSY while
// users remain), devices on one of two physical SMMUs (IOMMU_VIOMMU_ALLOC with a nest parent of the other SMMU
// is EINVAL, drivers/iommu/arm/arm-smmu-v3/arm-smmu-v3-iommufd.c), attachments, recorded invalidations and
// vEVENTQs, and one call that can be made to fail. Nothing of the SMMU is simulated: the simulated host
// (host/sim) does that, for the sim tier.
#pragma once

#include <sys/eventfd.h>
#include <unistd.h>

#include <cstring>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "base/error.hpp"
#include "host/host.hpp"

namespace vsmmu::nesting::test {

class FakeHost final : public host::Host {
 public:
  struct Object {
    std::string kind;                     // "hwpt", "nested", "viommu", "vdevice", "veventq", "ioas"
    std::optional<host::ObjectId> parent;  // the object it holds a reference to
    std::optional<host::DeviceId> dev;
    unsigned smmu = 0;                     // the physical SMMU a parent/vIOMMU belongs to
    std::vector<std::byte> data;           // HWPT_ALLOC's driver data (the vSTE)
    std::uint32_t flags = 0;
    std::optional<host::ObjectId> fault_id;  // HWPT_ALLOC with FAULT_ID_VALID
    int fd = -1;
  };
  struct Invalidation {
    host::ObjectId viommu = 0;
    std::vector<std::uint64_t> words;      // the entries as sent, two words each
  };

  // Devices 1.. sit on SMMU device_smmu[dev]; SMMU `coherent_smmus` members grant a vIOMMU.
  std::map<host::DeviceId, unsigned> device_smmu{{1, 0}, {2, 0}, {3, 1}};
  std::set<unsigned> coherent_smmus{0, 1};
  // The call named here ("hwpt_alloc", "viommu_alloc", "attach", ...) fails with `fail_errno` on its
  // fail_after+1-th use from now on.
  std::string fail_call;
  int fail_after = 0;
  int fail_errno = ENOMEM;
  // hwpt_invalidate refuses the entry at this index (EINVAL, handled = index), if set.
  std::optional<std::uint32_t> refuse_entry;
  std::uint32_t hw_flags = 0;

  std::map<host::ObjectId, Object> objects;
  std::map<host::DeviceId, host::ObjectId> attached;
  std::vector<Invalidation> invalidations;
  std::vector<std::string> calls;         // every call, in order
  std::vector<std::string> destroy_errors;

  ~FakeHost() override {
    for (auto& [id, o] : objects)
      if (o.fd >= 0) ::close(o.fd);
  }

  std::size_t count(const std::string& kind) const {
    std::size_t n = 0;
    for (const auto& [id, o] : objects) n += o.kind == kind;
    return n;
  }

  std::string name() const override { return "fake"; }
  Result<host::DeviceId> bind_device(const std::string&) override { return fail(ENOTSUP, "fake", "not used"); }
  Result<host::DeviceId> bind_device_fd(int) override { return fail(ENOTSUP, "fake", "not used"); }
  Result<void> unbind_device(host::DeviceId) override { return {}; }
  Result<host::HwInfo> get_hw_info(host::DeviceId) override {
    host::HwInfo hw;
    hw.type = host::uapi::kHwInfoTypeArmSmmuv3;
    hw.flags = hw_flags;
    return hw;
  }
  Result<host::ObjectId> ioas_alloc() override { return add("ioas", {}); }
  Result<std::uint64_t> ioas_map(host::ObjectId, void*, std::uint64_t, std::uint64_t iova, std::uint32_t) override {
    return iova;
  }
  Result<std::uint64_t> ioas_map_file(host::ObjectId, int, std::uint64_t, std::uint64_t, std::uint64_t iova,
                                      std::uint32_t) override {
    return iova;
  }
  Result<std::uint64_t> ioas_unmap(host::ObjectId, std::uint64_t, std::uint64_t length) override { return length; }
  Result<std::vector<host::IovaRange>> ioas_iova_ranges(host::ObjectId) override { return std::vector<host::IovaRange>{}; }

  Result<host::ObjectId> hwpt_alloc(const host::HwptAllocRequest& r) override {
    if (auto e = injected("hwpt_alloc")) return std::unexpected(*e);
    if (!objects.contains(r.pt_id)) return fail(ENOENT, "IOMMU_HWPT_ALLOC", "no object {}", r.pt_id);
    Object o;
    o.parent = r.pt_id;
    o.dev = r.dev_id;
    o.flags = r.flags;
    o.fault_id = r.fault_id;
    o.data.assign(r.data.begin(), r.data.end());
    o.kind = objects[r.pt_id].kind == "viommu" ? "nested" : "hwpt";
    o.smmu = device_smmu[r.dev_id];
    return add(o.kind, o);
  }
  Result<void> attach(host::DeviceId dev, host::ObjectId pt) override {
    if (auto e = injected("attach")) return std::unexpected(*e);
    attached[dev] = pt;
    return {};
  }
  Result<void> detach(host::DeviceId dev) override {
    calls.push_back("detach");
    attached.erase(dev);
    return {};
  }
  Result<void> set_dirty_tracking(host::ObjectId, bool) override { return fail(EOPNOTSUPP, "fake", "not used"); }
  Result<void> get_dirty_bitmap(host::ObjectId, std::uint64_t, std::uint64_t, std::uint64_t, std::byte*,
                                std::uint32_t) override {
    return fail(EOPNOTSUPP, "fake", "not used");
  }

  Result<host::ObjectId> viommu_alloc(host::DeviceId dev, host::ObjectId parent, std::uint32_t) override {
    if (auto e = injected("viommu_alloc")) return std::unexpected(*e);
    const unsigned smmu = device_smmu[dev];
    if (objects.at(parent).smmu != smmu) return fail(EINVAL, "IOMMU_VIOMMU_ALLOC", "nest parent of another SMMU");
    if (!coherent_smmus.contains(smmu)) return fail(EOPNOTSUPP, "IOMMU_VIOMMU_ALLOC", "neither S2FWB nor CANWBS");
    Object o;
    o.parent = parent;
    o.dev = dev;
    o.smmu = smmu;
    return add("viommu", o);
  }
  Result<host::ObjectId> vdevice_alloc(host::ObjectId viommu, host::DeviceId dev, std::uint64_t) override {
    if (auto e = injected("vdevice_alloc")) return std::unexpected(*e);
    Object o;
    o.parent = viommu;
    o.dev = dev;
    return add("vdevice", o);
  }
  Result<host::VeventqInfo> veventq_alloc(host::ObjectId viommu, std::uint32_t, std::uint32_t depth) override {
    if (auto e = injected("veventq_alloc")) return std::unexpected(*e);
    Object o;
    o.parent = viommu;
    o.flags = depth;
    o.fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    auto id = add("veventq", o);
    return host::VeventqInfo{*id, ::dup(o.fd)};
  }
  Result<host::FaultQueueInfo> fault_queue_alloc() override { return fail(EOPNOTSUPP, "fake", "not used"); }

  host::InvalidateOutcome hwpt_invalidate(const host::InvalidateRequest& r) override {
    calls.push_back("hwpt_invalidate");
    Invalidation inv{r.id, std::vector<std::uint64_t>(r.data.size() / 8)};
    std::memcpy(inv.words.data(), r.data.data(), r.data.size());
    invalidations.push_back(std::move(inv));
    if (refuse_entry && *refuse_entry < r.entry_num)
      return {*refuse_entry, Error{EINVAL, "IOMMU_HWPT_INVALIDATE", "refused entry"}};
    return {r.entry_num, std::nullopt};
  }
  // One queued ARM SMMUv3 record (header + 32 bytes) per call, then empty.
  std::vector<std::array<std::uint64_t, 4>> pending_events;
  Result<std::size_t> read_veventq(int, std::span<std::byte> buf) override {
    if (pending_events.empty()) return std::size_t{0};
    constexpr std::size_t kRecord = 8 + 32;
    if (buf.size() < kRecord) return fail(EINVAL, "read", "short buffer");
    const std::uint32_t header[2] = {0, next_sequence_++};
    std::memcpy(buf.data(), header, 8);
    std::memcpy(buf.data() + 8, pending_events.front().data(), 32);
    pending_events.erase(pending_events.begin());
    return kRecord;
  }
  // No fault queue of this host ever holds a fault: unit tests of the vSMMU's queues need none.
  Result<std::size_t> read_fault_queue(int, std::span<std::byte>) override { return std::size_t{0}; }
  Result<std::size_t> write_fault_queue(int, std::span<const std::byte>) override {
    return fail(EINVAL, "write(fault queue)", "no fault group was delivered");
  }

  Result<void> destroy(host::ObjectId id) override {
    calls.push_back("destroy " + objects[id].kind);
    for (const auto& [other, o] : objects)
      if (o.parent == id) {
        destroy_errors.push_back(fmt::format("{} {} destroyed while {} {} uses it", objects[id].kind, id, o.kind, other));
        return fail(EBUSY, "IOMMU_DESTROY", "in use");
      }
    for (const auto& [dev, pt] : attached)
      if (pt == id) {
        destroy_errors.push_back(fmt::format("{} {} destroyed while device {} is attached", objects[id].kind, id, dev));
        return fail(EBUSY, "IOMMU_DESTROY", "attached");
      }
    if (objects[id].fd >= 0) ::close(objects[id].fd);
    objects.erase(id);
    return {};
  }

 private:
  std::optional<Error> injected(const std::string& call) {
    calls.push_back(call);
    if (call != fail_call) return std::nullopt;
    if (fail_after-- > 0) return std::nullopt;
    fail_call.clear();
    return Error{fail_errno, call, "injected failure"};
  }
  Result<host::ObjectId> add(const std::string& kind, Object o) {
    o.kind = kind;
    const host::ObjectId id = next_id_++;
    objects[id] = std::move(o);
    return id;
  }
  host::ObjectId next_id_ = 100;
  std::uint32_t next_sequence_ = 0;
};

}  // namespace vsmmu::nesting::test

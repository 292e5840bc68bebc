#include "nesting/viommu.hpp"

#include <algorithm>
#include <span>
#include <utility>

#include "base/log.hpp"
#include "base/try.hpp"

namespace vsmmu::nesting {

using namespace smmu;

namespace {

constexpr const char* kWhere = "vsmmu";

static_assert(sizeof(Command) == Command::bytes, "commands are passed to the host as they lie in memory");

std::span<const std::byte> vste_bytes(const std::array<std::uint64_t, 2>& words) {
  return std::as_bytes(std::span(words));
}

}  // namespace

const char* state_name(StreamState s) {
  switch (s) {
    case StreamState::blocked: return "blocked";
    case StreamState::abort: return "abort";
    case StreamState::bypass: return "bypass";
    case StreamState::translate: return "translate";
  }
  return "?";
}

struct Viommu::NestedHwpt {
  host::HostObject hwpt;
  NestedKey key;
};

Viommu::Viommu(host::Host& host, ViommuStats& stats, DirtyTracker& dirty, const host::HwInfo& hw, std::string label)
    : host_(host),
      label_(std::move(label)),
      hw_(hw),
      repeat_invalidations_((hw.flags & host::uapi::kHwInfoArmSmmuv3ErrataRepeatTlbiCfgi) != 0),
      stats_(stats),
      dirty_(dirty) {}

Viommu::~Viommu() {
  // What devices wrote through the nest parent goes to the VM's dirty log before the parent goes.
  if (parent_) dirty_.parent_removing(parent_.id());
}

Result<std::unique_ptr<Viommu>> Viommu::create(host::Host& host, ViommuStats& stats, DirtyTracker& dirty,
                                               host::DeviceId dev, host::ObjectId ioas, const host::HwInfo& hw,
                                               std::string label, const std::string& what) {
  std::unique_ptr<Viommu> v(new Viommu(host, stats, dirty, hw, std::move(label)));
  // Stage-2 dirty tracking for live migration can only be asked for when the nest parent is made.
  bool tracks = false;
  std::string why_not;
  if (hw.capabilities & host::uapi::kCapDirtyTracking) {
    ++stats.host_calls;
    auto tracked = host.hwpt_alloc(host::paging_request(
        dev, ioas, host::uapi::kHwptAllocNestParent | host::uapi::kHwptAllocDirtyTracking));
    if (tracked) {
      v->parent_ = host::HostObject(host, *tracked);
      tracks = true;
    } else if (tracked.error().err != EOPNOTSUPP) {
      // Not the flags refused (arm_smmu_domain_alloc_paging_flags answers those EOPNOTSUPP): a real failure.
      return fail(tracked.error(), kWhere, "{}: the stage-2 (NEST_PARENT|DIRTY_TRACKING) HWPT", what);
    } else {
      why_not = fmt::format("the host refuses IOMMU_HWPT_ALLOC with NEST_PARENT|DIRTY_TRACKING, {}",
                                     tracked.error().message);
    }
  } else {
    why_not = "its SMMU does not report IOMMU_HW_CAP_DIRTY_TRACKING (no HTTU dirty state, or walks not coherent)";
  }
  if (!v->parent_) {
    ++stats.host_calls;
    auto parent = host.hwpt_alloc(host::paging_request(dev, ioas, host::uapi::kHwptAllocNestParent));
    if (!parent) return fail(parent.error(), kWhere, "{}: the stage-2 (NEST_PARENT) HWPT", what);
    v->parent_ = host::HostObject(host, *parent);
    log::info(kWhere, "{}: live migration will use conservative dirty tracking (every guest RAM page reported dirty "
              "in every round): {}", what, why_not);
  }
  dirty.parent_added(v->parent_.id(), tracks, v->label_, std::move(why_not));

  ++stats.host_calls;
  auto viommu = host.viommu_alloc(dev, v->parent_.id(), host::uapi::kViommuTypeArmSmmuv3);
  if (!viommu) return fail(viommu.error(), kWhere, "{}: cannot nest", what);
  v->viommu_ = host::HostObject(host, *viommu);

  for (auto [config, slot] : {std::pair{StreamConfig::abort, &v->abort_hwpt_}, std::pair{StreamConfig::bypass, &v->bypass_hwpt_}}) {
    const Ste ste = Ste{}.set(Ste::V, true).set(Ste::Config, config);
    const std::array<std::uint64_t, 2> words{ste.dw[0], ste.dw[1]};
    ++stats.host_calls;
    auto id = host.hwpt_alloc(host::nested_request(dev, v->viommu_.id(), vste_bytes(words)));
    if (!id) return fail(id.error(), kWhere, "{}: the {} HWPT", what, config == StreamConfig::abort ? "abort" : "bypass");
    *slot = host::HostObject(host, *id);
  }
  return v;
}

Result<bool> Viommu::accepts(host::DeviceId dev, const std::string& what) {
  ++stats_.host_calls;
  auto probe = host_.viommu_alloc(dev, parent_.id(), host::uapi::kViommuTypeArmSmmuv3);
  if (probe) {
    host::HostObject release(host_, *probe);
    return true;
  }
  if (probe.error().err == EINVAL) return false;  // the nest parent belongs to another physical SMMU
  return fail(probe.error(), kWhere, "{}: cannot nest", what);
}

Result<Viommu::Stream> Viommu::open_stream(host::DeviceId dev, std::uint32_t vsid, std::string name) {
  ++stats_.host_calls;
  auto vdev = host_.vdevice_alloc(viommu_.id(), dev, vsid);
  if (!vdev) return fail(vdev.error(), kWhere, "{}: its vDEVICE", name);
  Stream s;
  s.dev = dev;
  s.name = std::move(name);
  s.vdevice = host::HostObject(host_, *vdev);
  return s;
}

std::array<std::uint64_t, 2> Viommu::host_vste(const Ste& vste, bool ats) {
  const std::uint64_t word1 = ats ? kNestingAllowedWord1 : kNestingAllowedWord1 & ~mask_of<1>(Ste::EATS);
  Ste s{};
  s.dw[0] = vste.dw[0] & kNestingAllowedWord0;
  s.dw[1] = vste.dw[1] & word1;
  if (vste.get(Ste::S1CDMax) == 0) s.set(Ste::S1Fmt, CdTableFormat::linear).set(Ste::S1DSS, S1Dss::terminate);
  return {s.dw[0], s.dw[1]};
}

Result<std::shared_ptr<Viommu::NestedHwpt>> Viommu::nested_hwpt(const Stream& s, const NestedKey& key) {
  const auto& words = key.first;
  if (auto it = nested_.find(key); it != nested_.end())
    if (auto shared = it->second.lock()) {
      ++stats_.hwpt_shared;
      return shared;
    }
  ++stats_.host_calls;
  host::HwptAllocRequest req = host::nested_request(s.dev, viommu_.id(), vste_bytes(words));
  req.fault_id = key.second;
  auto id = host_.hwpt_alloc(req);
  if (!id)
    return fail(id.error(), kWhere, "the host refused the vSTE {:#018x} {:#018x}{}", words[0], words[1],
                key.second ? fmt::format(" with fault queue {}", *key.second) : std::string{});
  ++stats_.hwpt_allocs;
  auto hwpt = std::make_shared<NestedHwpt>();
  hwpt->hwpt = host::HostObject(host_, *id);
  hwpt->key = key;
  std::erase_if(nested_, [](const auto& e) { return e.second.expired(); });
  nested_[key] = hwpt;
  return hwpt;
}

bool Viommu::unchanged(const Stream& s, StreamState state, const Ste* vste, bool ats,
                       std::optional<host::ObjectId> fault_queue) const {
  if (state != StreamState::translate) return state == s.state;  // already attached to the abort or bypass HWPT
  // The same vSTE: attaching its HWPT again would change nothing on the host (the kernel returns early for a
  // domain replaced by itself, drivers/iommu/iommufd/device.c iommufd_device_do_replace).
  return s.state == StreamState::translate && s.hwpt && s.hwpt->key == NestedKey{host_vste(*vste, ats), fault_queue};
}

Result<bool> Viommu::install(Stream& s, StreamState state, const Ste* vste, bool ats,
                             std::optional<host::ObjectId> fault_queue) {
  if (unchanged(s, state, vste, ats, fault_queue)) {
    ++stats_.ste_unchanged;
    return false;
  }
  std::shared_ptr<NestedHwpt> hwpt;
  host::ObjectId target = 0;
  if (state == StreamState::translate) {
    VSMMU_TRY_ASSIGN(hwpt, nested_hwpt(s, NestedKey{host_vste(*vste, ats), fault_queue}));
    target = hwpt->hwpt.id();
  } else {
    target = state == StreamState::bypass ? bypass_hwpt_.id() : abort_hwpt_.id();
  }
  ++stats_.host_calls;
  ++stats_.attaches;
  if (auto r = host_.attach(s.dev, target); !r) {
    log::error(kWhere, "{}: attaching HWPT {} ({}) failed: {}", s.name, target, state_name(state), r.error());
    if (state != StreamState::abort) {
      // The stream cannot have what its configuration asks: it aborts, and the caller learns why.
      (void)install(s, StreamState::abort, nullptr, ats);
      return fail(r.error(), kWhere, "attaching the {} HWPT failed", state_name(state));
    }
    s.attachment = {};  // detach: the device blocks DMA
    s.hwpt.reset();
    s.state = StreamState::blocked;
    return fail(r.error(), kWhere, "no HWPT could be attached");
  }
  s.attachment.release();  // the replace happened; keep one owner of the attachment
  s.attachment = host::Attachment(host_, s.dev);
  s.hwpt = std::move(hwpt);  // the previous nested HWPT, if no other stream shares it, goes now
  s.state = state;
  return true;
}

std::optional<HostRefusal> Viommu::invalidate(const InvalidationBatch& batch) {
  if (batch.empty()) return std::nullopt;
  host::InvalidateRequest req;
  req.id = viommu_.id();
  req.entry_len = Command::bytes;
  req.entry_num = static_cast<std::uint32_t>(batch.entries.size());
  req.data = std::as_bytes(std::span(batch.entries));
  for (int pass = 0; pass < (repeat_invalidations_ ? 2 : 1); ++pass) {
    const auto start = std::chrono::steady_clock::now();
    host::InvalidateOutcome out = host_.hwpt_invalidate(req);
    stats_.host_time += std::chrono::steady_clock::now() - start;
    ++stats_.host_calls;
    ++stats_.invalidate_calls;
    stats_.forwarded += out.error ? out.handled : req.entry_num;
    if (out.error) {
      const std::uint32_t k = std::min<std::uint32_t>(out.handled, req.entry_num - 1);
      log::info("vsmmu.cmdq", "{} refused guest command {} ({:#018x} {:#018x}): {}", label_, batch.guest_index[k],
                batch.entries[k].dw[0], batch.entries[k].dw[1], *out.error);
      return HostRefusal{batch.guest_index[k], out.error->err};
    }
  }
  return std::nullopt;
}

Result<void> Viommu::enable_events(std::uint32_t depth, const std::string& what) {
  if (veventq_) return {};
  ++stats_.host_calls;
  auto q = host_.veventq_alloc(viommu_.id(), host::uapi::kVeventqTypeArmSmmuv3, depth);
  if (!q) return fail(q.error(), "vsmmu.events", "{}: IOMMU_VEVENTQ_ALLOC of depth {} on {}", what, depth, label_);
  veventq_ = host::QueueObject(host_, q->id, q->fd);
  // Read through the host (Host::read_veventq: the kernel's answers on both backends); the fd is for polling.
  reader_.emplace(host_, veventq_.fd());
  return {};
}

void Viommu::disable_events() {
  reader_.reset();
  veventq_ = {};
}

Result<std::size_t> Viommu::read_events(std::vector<host::VeventqRecord>& out) {
  if (!reader_) return std::size_t{0};
  return reader_->read_available(out);
}

std::size_t Viommu::host_objects() const {
  std::size_t n = static_cast<std::size_t>(static_cast<bool>(parent_)) + static_cast<bool>(viommu_) +
                  static_cast<bool>(abort_hwpt_) + static_cast<bool>(bypass_hwpt_) + static_cast<bool>(veventq_);
  return n + static_cast<std::size_t>(std::ranges::count_if(nested_, [](const auto& e) { return !e.second.expired(); }));
}

}  // namespace vsmmu::nesting

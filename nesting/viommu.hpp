// Viommu: one physical SMMU behind a vSMMU, as the host's iommufd objects: the nest parent (stage 2, on the
// guest's IOAS), the vIOMMU, the abort and bypass HWPTs, the nested HWPTs of translating vSTEs (identical vSTEs
// share one) and, while the guest's event queue is on, the vEVENTQ. It knows nothing of the guest's registers
// or queues: VirtualSmmu (nesting/virtual_smmu.hpp) asks it to open a device's stream, to install what the
// guest's STE says, to send a batch of invalidations and to read events.
//
// Members are declared parent-first so C++ destroys them child-first, in the order the kernel needs
// (drivers/iommu/iommufd/viommu.c: a vIOMMU stays busy while a vDEVICE, vEVENTQ or nested HWPT uses it, the
// nest parent while the vIOMMU does). A Stream holds a nested HWPT and a vDEVICE: streams go before their Viommu.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "base/error.hpp"
#include "host/handles.hpp"
#include "host/host.hpp"
#include "host/veventq_reader.hpp"
#include "nesting/dirty_tracking.hpp"
#include "smmu/command.hpp"
#include "smmu/ste.hpp"

namespace vsmmu::nesting {

// What a device's stream does on the host.
enum class StreamState : std::uint8_t { blocked, abort, bypass, translate };
const char* state_name(StreamState s);

// A guest command the host refused: its index in the guest's run of commands, and the host's errno.
struct HostRefusal {
  std::uint32_t guest_index = 0;
  int err = 0;
};

// The guest commands bound for one vIOMMU, each with its index in the guest's run (to name a refused one).
struct InvalidationBatch {
  std::vector<smmu::Command> entries;
  std::vector<std::uint32_t> guest_index;

  void clear() {
    entries.clear();
    guest_index.clear();
  }
  void add(const smmu::Command& c, std::uint32_t index) {
    entries.push_back(c);
    guest_index.push_back(index);
  }
  bool empty() const { return entries.empty(); }
};

// What the Viommus asked of the host. Every Viommu of a vSMMU counts into the vSMMU's one instance (its
// VirtualSmmuStats), so nothing is summed or lost when a Viommu goes.
struct ViommuStats {
  std::uint64_t host_calls = 0;           // every Host call
  std::uint64_t hwpt_allocs = 0;          // nested HWPTs allocated for translating vSTEs
  std::uint64_t hwpt_shared = 0;          // translating vSTEs that reused an existing nested HWPT
  std::uint64_t attaches = 0;             // attach / replace calls
  std::uint64_t ste_unchanged = 0;        // installs that found the stream already configured so (no attach)
  std::uint64_t invalidate_calls = 0;     // HWPT_INVALIDATE calls
  std::uint64_t forwarded = 0;            // entries the host took in HWPT_INVALIDATE
  std::chrono::nanoseconds host_time{0};  // time spent inside HWPT_INVALIDATE calls
};

class Viommu {
 public:
  struct NestedHwpt;
  // One device's stream on this vIOMMU: its vDEVICE and what the device is attached to. Destroying it detaches
  // the device (blocking DMA), then releases its nested HWPT and its vDEVICE.
  struct Stream {
    host::DeviceId dev = 0;
    std::string name;                   // the device, for messages
    host::HostObject vdevice;
    std::shared_ptr<NestedHwpt> hwpt;   // while translating
    host::Attachment attachment;
    StreamState state = StreamState::blocked;
  };

  // Allocates the nest parent on `ioas`, the vIOMMU and the abort and bypass HWPTs against `dev` (bound, behind
  // this physical SMMU; `hw` its IOMMU_GET_HW_INFO). `label` names the Viommu in messages, `what` the device.
  // Fails with the first refusal, leaving nothing on the host; a refused vIOMMU is the kernel's coherency rule
  // (S2FWB or a CANWBS root complex, drivers/iommu/arm/arm-smmu-v3/arm-smmu-v3-iommufd.c arm_vsmmu_init).
  // Counts what it does, from its first host call, into `stats` (which must outlive it).
  // The nest parent is allocated with DIRTY_TRACKING where GET_HW_INFO reports IOMMU_HW_CAP_DIRTY_TRACKING and the
  // host accepts NEST_PARENT|DIRTY_TRACKING (else without, and the VM's dirty log is conservative while this
  // Viommu lives); it registers with `dirty` (the VM's, on the same IOAS; it must outlive the Viommu).
  static Result<std::unique_ptr<Viommu>> create(host::Host& host, ViommuStats& stats, DirtyTracker& dirty,
                                                host::DeviceId dev, host::ObjectId ioas, const host::HwInfo& hw,
                                                std::string label, const std::string& what);
  ~Viommu();
  Viommu(const Viommu&) = delete;
  Viommu& operator=(const Viommu&) = delete;

  // Whether `dev` sits behind this physical SMMU: IOMMU_VIOMMU_ALLOC on this nest parent succeeds (the probe
  // is released at once). It is asked for every device, being also the kernel's coherency check. EINVAL from
  // the kernel means "another SMMU" (false); any other refusal is the error.
  Result<bool> accepts(host::DeviceId dev, const std::string& what);
  // IOMMU_VDEVICE_ALLOC: the vIOMMU knows `dev` as `vsid`. The stream starts blocked (not attached).
  Result<Stream> open_stream(host::DeviceId dev, std::uint32_t vsid, std::string name);

  // Attaches the stream to what `state` asks: the abort or the bypass HWPT, or for translate the nested HWPT of
  // *vste (only the bits the kernel takes, smmu::kNestingAllowedWord*, EATS only with `ats`; S1Fmt and S1DSS
  // cleared when S1CDMax = 0, where IHI 0070 5.2 ignores them, so equal streams share). Attaching while
  // attached is an atomic replace (VFIO_DEVICE_ATTACH_IOMMUFD_PT); the old HWPT is released after.
  // Returns false when nothing changed on the host (already so; for a translating stream the caller then owes
  // its CDs a CFGI_CD_ALL, as a CFGI_STE invalidates them, IHI 0070 4.3.1). On failure the stream aborts; if
  // even the abort HWPT cannot be attached it is detached (blocked: DMA blocked); if a nested HWPT cannot be
  // allocated it keeps its previous configuration. The stream's state says which.
  // `fault_queue`: the nested HWPT of a translating stream is allocated with it (IOMMU_HWPT_FAULT_ID_VALID), so
  // the host reports the stream's stage-1 faults there instead of terminating them; streams with equal vSTEs
  // share a HWPT only when both have it or both lack it.
  Result<bool> install(Stream& s, StreamState state, const smmu::Ste* vste, bool ats,
                       std::optional<host::ObjectId> fault_queue = std::nullopt);
  // Whether install() with these arguments would leave the host as it is (no attach).
  bool unchanged(const Stream& s, StreamState state, const smmu::Ste* vste, bool ats,
                 std::optional<host::ObjectId> fault_queue = std::nullopt) const;

  // One IOMMU_HWPT_INVALIDATE with the batch (twice on an SMMU with the repeat erratum,
  // IOMMU_HW_INFO_ARM_SMMUV3_ERRATA_REPEAT_TLBI_CFGI); nothing for an empty batch (the kernel refuses
  // entry_num = 0). Returns the first command the host refused.
  std::optional<HostRefusal> invalidate(const InvalidationBatch& batch);
  // A batch the caller may fill and reuse for this vIOMMU (its buffers keep their size).
  InvalidationBatch& scratch() { return scratch_; }

  // IOMMU_VEVENTQ_ALLOC with `depth` records (the guest event queue's size).
  Result<void> enable_events(std::uint32_t depth, const std::string& what);
  void disable_events();
  bool events_enabled() const { return static_cast<bool>(veventq_); }
  int event_fd() const { return veventq_.fd(); }
  // Appends the records the host holds now (none while events are off); returns how many.
  Result<std::size_t> read_events(std::vector<host::VeventqRecord>& out);

  const std::string& label() const { return label_; }
  const host::HwInfo& hw() const { return hw_; }
  // The host objects held: nest parent, vIOMMU, abort and bypass HWPTs, vEVENTQ, nested HWPTs in use.
  std::size_t host_objects() const;

 private:
  Viommu(host::Host& host, ViommuStats& stats, DirtyTracker& dirty, const host::HwInfo& hw, std::string label);
  // The vSTE as the host takes it, normalized so that equal streams share a nested HWPT.
  static std::array<std::uint64_t, 2> host_vste(const smmu::Ste& vste, bool ats);
  // What a nested HWPT is allocated from: the vSTE as the host takes it, and the fault queue if any.
  using NestedKey = std::pair<std::array<std::uint64_t, 2>, std::optional<host::ObjectId>>;
  Result<std::shared_ptr<NestedHwpt>> nested_hwpt(const Stream& s, const NestedKey& key);

  host::Host& host_;
  std::string label_;
  host::HwInfo hw_;
  bool repeat_invalidations_ = false;
  ViommuStats& stats_;
  DirtyTracker& dirty_;
  host::HostObject parent_;       // NEST_PARENT HWPT on the guest's IOAS: stage 2
  host::HostObject viommu_;
  host::HostObject abort_hwpt_;   // vSTE {V, Config=abort}
  host::HostObject bypass_hwpt_;  // vSTE {V, Config=bypass}: stage 2 only
  std::map<NestedKey, std::weak_ptr<NestedHwpt>> nested_;
  host::QueueObject veventq_;
  std::optional<host::VeventqReader> reader_;
  InvalidationBatch scratch_;
};

}  // namespace vsmmu::nesting

// The simulated host (docs/sim-host.md): a Host that plays the Linux kernel's iommufd and its arm-smmu-v3
// driver over software SMMUv3s (smmu/model) in a simulated host-physical memory.
// - The iommufd object rules: ids (lowest free from 1, devices included), references (EBUSY on destroying
//   what is in use), and the errnos the kernel returns where it returns them (drivers/iommu/iommufd/;
//   docs/kernel-rules.md).
// - The arm-smmu-v3 rules: vSTE masks and Config/EATS checks, V=0 as abort, VIOMMU_ALLOC needing nesting
//   and S2FWB or a CANWBS root complex, invalidation opcodes with vSID -> pSID and VMID rewritten and issued
//   in groups of 63 + CMD_SYNC, events forwarded to the vEVENTQ with the vSID.
// - Real memory: an IOAS maps the VMM's memory (a memfd range, or user memory) into stage-2 tables whose
//   output addresses are that memory placed in the simulated physical address space, so a simulated
//   device's DMA lands where the VMM sees it.
// What may differ from a kernel is kept by the profiles (KernelProfile, HardwareProfile) or listed in
// docs/sim-host.md. Every member is thread-safe: a simulated device may DMA from another thread.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "host/host.hpp"
#include "host/sim/profile.hpp"
#include "smmu/model/smmu_model.hpp"
#include "smmu/ste.hpp"

namespace vsmmu::host::sim {

// A burst the SMMU holds after a stalling fault (IHI 0070 3.12.2): the STAG of its stall event record, the
// address of the burst, the event as the SMMU recorded it (Stall = 1).
struct DmaStall {
  std::uint16_t stag = 0;
  std::uint64_t iova = 0;
  smmu::Event event;
};

// The outcome of a simulated DMA: the bytes that landed (the bursts before the first fault; with
// fault_retry_bytes, every piece that translated) and the first fault; or, while a burst is stalled, the
// stall (`stalled`, no fault yet): the transfer is pending in its engine until the stall is answered, and
// SimHost::dma_outcome tells how it ended.
struct DmaResult {
  std::uint64_t bytes = 0;
  std::optional<smmu::model::DmaFault> fault;
  std::optional<DmaStall> stalled;
  bool ok() const { return !fault && !stalled; }
  bool pending() const { return stalled.has_value(); }
};

// An MSI message as the host kernel composes it for one vector of a device (iommu_dma_compose_msi_msg): the
// address the device writes, the data it writes there (the vector's ITS EventID).
struct MsiMessage {
  std::uint64_t address = 0;
  std::uint32_t data = 0;
  friend bool operator==(const MsiMessage&, const MsiMessage&) = default;
};

// The outcome of a device raising an MSI: its 4-byte DMA write of the message's data to the message's address,
// and whether the ITS took it (the write reached GITS_TRANSLATER).
struct MsiOutcome {
  MsiMessage message;
  DmaResult dma;
  bool delivered = false;
};

// What the simulated host holds now; a full teardown brings every count back to zero.
struct SimStats {
  std::size_t objects = 0;                // live iommufd objects, bound devices included
  std::size_t devices_bound = 0;
  std::size_t ioas_areas = 0;             // IOAS mappings
  std::uint64_t pinned_bytes = 0;         // memory the IOAS mappings hold (placed in host-physical memory)
  std::size_t domains = 0;                // paging domains (stage-2 tables)
  std::uint64_t domain_mapped_bytes = 0;  // bytes mapped in those tables
  std::size_t translating_stes = 0;       // devices whose physical STE lets DMA through (not abort)
  std::size_t veventq_fds = 0;            // vEVENTQ and fault-queue fds handed out and not yet destroyed
  std::uint64_t events_forwarded = 0;     // event records delivered to a vEVENTQ (queued or lost there)
  std::uint64_t events_unhandled = 0;     // event records the driver only logged (no vEVENTQ for them)
  std::size_t fault_groups = 0;           // fault groups in fault queues, unread or awaiting their response
  std::size_t stalled_transactions = 0;   // transactions the SMMUs hold stalled
  std::size_t pending_dma = 0;            // DMA engines with a stalled or uncollected transfer
  std::uint64_t stalls_aborted = 0;       // stall events no fault queue took: the kernel answered them abort
  std::size_t host_regions = 0;           // regions placed in host-physical memory (drivers' RAM included)

  // What the host still holds for its users - every nonzero count among objects, bound devices, IOAS areas,
  // pinned bytes, domains, mapped bytes, translating STEs, event/fault fds, fault groups, stalled transactions
  // and pending DMA - as "2 objects, 1 domains"; empty when a user has given everything back.
  std::string held() const;
};

// Per-SMMU counters: what the simulated driver sent and what the model did.
struct SmmuCounters {
  std::uint64_t commands = 0;             // commands written to the command queue, CMD_SYNCs included
  std::uint64_t syncs = 0;
  std::uint64_t command_errors = 0;       // commands the SMMU stopped on (logged and skipped)
  smmu::model::Counters model;
};

// IOMMU_GET_HW_INFO with a user buffer of data_len bytes, as the ioctl takes it.
struct HwInfoIoctl {
  std::uint32_t data_len = 0;             // out: the size of the kernel's structure (40 for ARM SMMUv3)
  std::uint32_t type = 0;
  std::uint8_t max_pasid_log2 = 0;
  std::uint64_t capabilities = 0;
};

class SimHost final : public Host {
 public:
  static Result<std::unique_ptr<SimHost>> create(KernelProfile kernel, HardwareProfile hardware);
  // The embedded default: kernel "upstream", hardware "default".
  static Result<std::unique_ptr<SimHost>> create_default();
  ~SimHost() override;

  // ---- Host
  std::string name() const override;
  Result<DeviceId> bind_device(const std::string& path_or_name) override;
  Result<DeviceId> bind_device_fd(int fd) override;
  Result<void> unbind_device(DeviceId dev) override;
  Result<HwInfo> get_hw_info(DeviceId dev) override;
  DeviceLocation device_location(DeviceId dev) const override;  // from the hardware profile
  // The SMMU's software MSI window (SmmuSpec::msi_window), "msi".
  Result<std::vector<ReservedRegion>> reserved_regions(DeviceId dev) const override;
  Result<ObjectId> ioas_alloc() override;
  Result<std::uint64_t> ioas_map(ObjectId ioas, void* user_va, std::uint64_t length, std::uint64_t iova,
                                 std::uint32_t flags) override;
  Result<std::uint64_t> ioas_map_file(ObjectId ioas, int fd, std::uint64_t start, std::uint64_t length,
                                      std::uint64_t iova, std::uint32_t flags) override;
  Result<std::uint64_t> ioas_unmap(ObjectId ioas, std::uint64_t iova, std::uint64_t length) override;
  Result<std::vector<IovaRange>> ioas_iova_ranges(ObjectId ioas) override;
  Result<ObjectId> hwpt_alloc(const HwptAllocRequest& req) override;
  Result<void> attach(DeviceId dev, ObjectId pt_id) override;
  Result<void> detach(DeviceId dev) override;
  Result<void> set_dirty_tracking(ObjectId hwpt, bool enable) override;
  Result<void> get_dirty_bitmap(ObjectId hwpt, std::uint64_t iova, std::uint64_t length, std::uint64_t page_size,
                                std::byte* bitmap, std::uint32_t flags) override;
  Result<ObjectId> viommu_alloc(DeviceId dev, ObjectId parent_hwpt, std::uint32_t type) override;
  Result<ObjectId> vdevice_alloc(ObjectId viommu, DeviceId dev, std::uint64_t virt_id) override;
  Result<VeventqInfo> veventq_alloc(ObjectId viommu, std::uint32_t type, std::uint32_t depth) override;
  Result<FaultQueueInfo> fault_queue_alloc() override;
  InvalidateOutcome hwpt_invalidate(const InvalidateRequest& req) override;
  // The simulated kernel's own queue (veventq.hpp), with iommufd_veventq_fops_read's rules.
  Result<std::size_t> read_veventq(int fd, std::span<std::byte> buf) override;
  Result<std::size_t> read_fault_queue(int fd, std::span<std::byte> buf) override;
  Result<std::size_t> write_fault_queue(int fd, std::span<const std::byte> responses) override;
  // master->stall_enabled: the profile device's "stall" with its SMMU's stall_model "stall", or "forced".
  Result<bool> device_can_stall(DeviceId dev) const override;
  Result<void> destroy(ObjectId id) override;

  // ---- The simulated host's own controls.

  // Fault injection, like the kernel's fail_nth: the n-th call from now (1-based) of those that allocate in
  // the kernel (bind, GET_HW_INFO, IOAS alloc/map/map_file, HWPT alloc, attach, GET_DIRTY_BITMAP,
  // vIOMMU/vDEVICE/vEVENTQ/fault-queue alloc, HWPT_INVALIDATE) fails with ENOMEM before any side effect.
  // 0 turns injection off. Teardown calls (unmap, detach, destroy, unbind) never fail this way: they do not
  // allocate in the kernel either.
  void set_fail_nth(unsigned n);
  // Whether the injected failure has happened since set_fail_nth.
  bool fail_nth_fired() const;

  SimStats stats() const;
  Result<SmmuCounters> smmu_counters(std::string_view smmu) const;
  // The STE the simulated driver installed for a device of the profile (by name or BDF).
  Result<smmu::Ste> physical_ste(std::string_view device) const;

  // A DMA by one of the profile's DMA engines, through its device's SMMU. Event records it causes are
  // handled (forwarded to a vEVENTQ or logged) as the SMMU writes them, burst by burst, as the kernel's
  // event-queue thread keeps up with a faulting device, unless interrupts are deferred.
  Result<DmaResult> dma_write(std::string_view engine, std::uint64_t iova, std::span<const std::byte> data,
                              std::optional<std::uint32_t> ssid = std::nullopt);
  Result<DmaResult> dma_read(std::string_view engine, std::uint64_t iova, std::span<std::byte> data,
                             std::optional<std::uint32_t> ssid = std::nullopt);
  // A burst that stalls (docs/sim-host.md, "Stalls") leaves the transfer pending in its engine: dma_write/dma_read
  // return with `stalled` set and the bytes landed before it; the engine refuses another transfer (EBUSY) until
  // the stall is answered and the outcome collected. Once answered (a fault-queue response, the kernel's own
  // abort, a detach), the burst is retried or terminated and the rest of the transfer runs: a retried burst may
  // stall again. dma_outcome(engine) says where the transfer stands: still `stalled`, or finished (then
  // forgotten): every byte it moved, its first fault. For a read, `read_data` (empty, or exactly the read's
  // size) receives the bytes read after dma_read returned. ENOENT: no stalled or uncollected transfer.
  Result<DmaResult> dma_outcome(std::string_view engine, std::span<std::byte> read_data = {});

  // ---- MSIs (docs/sim-host.md, "MSIs"). Every device of the profile has an MSI capability of 32 vectors.
  // VFIO_DEVICE_SET_IRQS(VFIO_PCI_MSI_IRQ_INDEX, ACTION_TRIGGER, count = vectors) on a bound device (by name or
  // BDF): the ITS gives vector i EventID i; iommu_dma_prepare_msi -> iommufd_sw_msi maps the ITS doorbell's page
  // into the device's domain (a nested HWPT's nest parent) at the SW MSI window (SmmuSpec::msi_window), read-write, unless
  // it is there already, and remembers that the device needs it in every domain it attaches to from now on;
  // iommu_dma_compose_msi_msg makes each address the window's page plus GITS_TRANSLATER's offset in its page.
  // A device attached to nothing gets the doorbell's physical address (nothing to map it into). EINVAL: not
  // bound, vectors outside 1..32, or MSIs already enabled (disable first, as a VMM does to change the count).
  Result<std::vector<MsiMessage>> enable_msi(std::string_view device, unsigned vectors);
  // VFIO_DEVICE_SET_IRQS(VFIO_PCI_MSI_IRQ_INDEX, count 0): the device's MSIs are off. The doorbell's page stays
  // mapped in the domains that have it, as in the kernel (a sw_msi page leaves a domain only with the domain).
  Result<void> disable_msi(std::string_view device);
  // The MSIs a device has enabled now (empty when off).
  Result<std::vector<MsiMessage>> msi_messages(std::string_view device) const;
  // The device of DMA engine `engine` raises MSI vector `vector`: a 4-byte DMA write of its data to its
  // address by the engine, through the device's translation now, like any of its writes (faults raise the
  // same events). EINVAL when the device's MSIs are off or the vector is not enabled.
  Result<MsiOutcome> raise_msi(std::string_view engine, unsigned vector);
  // The ITS's doorbell (GITS_TRANSLATER) and the MSIs it took, by (DeviceID = the writer's StreamID, EventID).
  std::uint64_t its_translater() const;
  std::uint64_t msis_delivered(std::uint32_t device_id, std::uint32_t event_id) const;
  std::uint64_t msis_delivered() const;

  // Interrupt latency: while deferred, the event-queue interrupt is not serviced after each DMA but when
  // run_interrupts() is called, so one handler run sees every event since (as an IRQ thread that runs late).
  void set_interrupts_deferred(bool deferred);
  void run_interrupts();

  // IOMMU_OPTION(IOMMU_OPTION_HUGE_PAGES) on an IOAS: with `set`, turns large IOMMU pages on or off (off is
  // refused with EINVAL once paging HWPTs hold mappings of it); returns the setting. On (the default), stage-2
  // tables use 2 MiB and 1 GiB blocks wherever IOVA and memory alignment allow, as the kernel does for
  // physically contiguous memory (hugetlbfs, THP); off, every leaf is a 4 KiB page.
  Result<bool> ioas_huge_pages(ObjectId ioas, std::optional<bool> set);

  // IOMMU_GET_HW_INFO with a buffer of buffer.size() bytes: copies what fits of the 40-byte
  // iommu_hw_info_arm_smmuv3, zero-fills the rest of a larger buffer, reports the kernel's size.
  Result<HwInfoIoctl> get_hw_info_ioctl(DeviceId dev, std::span<std::byte> buffer);

  const KernelProfile& kernel_profile() const;
  const HardwareProfile& hardware_profile() const;

  struct State;  // the kernel's state, in sim_host.cpp

 private:
  explicit SimHost(std::unique_ptr<State> state);
  std::unique_ptr<State> s_;
};

}  // namespace vsmmu::host::sim

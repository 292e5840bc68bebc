// VirtualSmmu: the SMMUv3 a guest sees (IHI 0070), stage 1 only, whose work the host's physical SMMUs do
// through iommufd nesting. It is the guest-facing facade: the registers and queues (smmu::RegisterFile over the
// guest's RAM, every guest pointer bounds-checked by it), the lock, the interrupts; the host objects are its
// Viommus' (nesting/viommu.hpp), one per physical SMMU its devices sit behind. The guest programs it through
// SmmuMmio and its structures in guest RAM, and the vSMMU turns them into host state:
// - streams (stream_binding.cpp): a vDEVICE per device keyed by its vSID; each vSTE (GBPA while SMMUEN = 0)
//   read, checked and installed on the device's Viommu; CFGI_STE / CFGI_STE_RANGE / CFGI_ALL and SMMUEN re-read;
// - commands (command_execution.cpp): invalidation::Planner batches everything between two CMD_SYNCs into one
//   HWPT_INVALIDATE per vIOMMU; errors stop the queue as hardware does (CMDQ_CONS.ERR, GERROR.CMDQ_ERR);
// - events (event_forwarding.cpp): a vEVENTQ per vIOMMU while the guest's event queue is enabled; records land
//   in the guest's queue with the vSID, losses become the guest queue's overflow;
// - stalls (stall_forwarding.cpp): with IDR0.STALL_MODEL given, one host fault queue; its faults become the
//   guest's stall event records, the guest's CMD_RESUME / CMD_STALL_TERM its page responses.
// The coherency rule holds by construction: a device joins only if the host accepted a vIOMMU for it, which
// the kernel grants only with S2FWB or a CANWBS root complex.
//
// Thread safety: every public member may be called from any thread (one lock); interrupt handlers run after
// it is released.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <string_view>
#include <vector>

#include "invalidation/planner.hpp"
#include "nesting/guest_memory.hpp"
#include "host/handles.hpp"
#include "host/fault_queue_reader.hpp"
#include "nesting/stall_table.hpp"
#include "nesting/id_registers.hpp"
#include "nesting/migration_state.hpp"
#include "nesting/viommu.hpp"
#include "nesting/vsmmu_endpoint.hpp"
#include "smmu/event.hpp"
#include "smmu/id_features.hpp"
#include "smmu/mmio.hpp"
#include "smmu/register_file.hpp"
#include "smmu/ste.hpp"

namespace vsmmu::nesting {

// How guest invalidations reach the host.
enum class InvalidationPolicy : std::uint8_t {
  batched,      // one HWPT_INVALIDATE per vIOMMU for everything between two CMD_SYNCs, redundant ones dropped
  per_command,  // one HWPT_INVALIDATE per guest command, as QEMU's accelerated SMMUv3 does (the baseline)
};

struct VirtualSmmuConfig {
  std::string name = "vsmmu0";
  VsmmuWishes wishes;
  InvalidationPolicy policy = InvalidationPolicy::batched;
  std::uint32_t max_batch_entries = 0;    // 0: no limit but the kernel's one allocation (host::limits, 2^18)
  bool gbpa_abort_at_reset = false;       // GBPA.ABORT's reset value (IMPLEMENTATION DEFINED)
  // The work one call into the vSMMU (an MMIO access, process_events()) may do on the guest's command queue:
  // at most this many guest commands consumed and this many host calls made (0: no bound). An SMMU consumes
  // its queue asynchronously, CONS advancing over time (IHI 0070 4.1.2, 4.1.4), so one doorbell for a full
  // queue never holds the vSMMU (and the VMM thread calling it) for long: what is left is done by
  // the next accesses (a guest polling CMDQ_CONS drives it) and by process_events(), whose fd in event_fds()
  // is readable while work is left.
  std::uint32_t commands_per_access = 1024;
  std::uint32_t host_calls_per_access = 64;
};

// A device the VMM puts behind the vSMMU: a VFIO cdev path (or a sim host device name), or an open cdev fd
// (taken over), and the StreamID the guest knows it by.
struct DeviceSpec {
  std::string path;
  int fd = -1;
  std::uint32_t vsid = 0;
};

// Everything the vSMMU did, for reports and benchmarks: its host calls and their effects (ViommuStats, counted
// by its Viommus and by the vSMMU itself for binding devices), and the guest's side.
struct VirtualSmmuStats : ViommuStats {
  std::uint64_t commands = 0;             // guest commands consumed (a failing one excluded)
  std::uint64_t coalesced = 0;            // invalidations dropped as covered by a later one
  std::uint64_t syncs = 0;                // CMD_SYNCs completed
  std::uint64_t ste_reinstalls = 0;       // streams re-read after CFGI_STE*, CFGI_ALL, SMMUEN or GBPA changes
  std::uint64_t command_errors = 0;       // CERROR_ILL / CERROR_ABT raised
  std::uint64_t bad_stes = 0;             // vSTEs refused (C_BAD_STE recorded)
  std::uint64_t events = 0;               // records written to the guest's event queue
  std::uint64_t events_lost = 0;          // records lost (host vEVENTQ overflow or guest queue full)
  std::uint64_t deferred = 0;             // times an access's budget ran out with commands left for later
  std::uint64_t msis = 0;                 // MSI writes: into guest RAM or to the MSI handler
  std::uint64_t msis_aborted = 0;         //   of which went nowhere (GERROR.MSI_*_ABT_ERR)
  // Stage-1 faults (F_TRANSLATION, F_PERMISSION) at an address in the faulting device's host MSI window: its
  // MSIs, which the guest's stage 1 does not map 1:1 (each also forwarded to the guest; docs/interrupts.md).
  std::uint64_t msi_window_faults = 0;
  // Stalls (docs/virtual-smmu.md, "Stalls and I/O page faults"): fault groups the host's fault queue delivered
  // and the guest was given as stall event records; of those answered, by the guest's CMD_RESUME retry, or
  // aborted (CMD_RESUME abort/term, CMD_STALL_TERM, or by the vSMMU for a stream reconfigured or removed); and
  // fault groups answered INVALID at once without reaching the guest (STALL_MAX outstanding, the guest's event
  // queue disabled, no device for the record).
  std::uint64_t stalls = 0;
  std::uint64_t stalls_resumed = 0;
  std::uint64_t stalls_aborted = 0;
  std::uint64_t stalls_dropped = 0;
};

// The host's software MSI window of one of the vSMMU's devices (Host::reserved_regions, IOMMU_RESV_SW_MSI):
// the guest's stage 1 must map it 1:1 for the device's MSIs to reach the host's doorbell. Devices behind
// different physical SMMUs may have different windows.
struct DeviceMsiWindow {
  std::uint32_t vsid = 0;
  std::string device;          // as DeviceSpec named it
  host::IovaRange window;
};

// What the vSMMU did with one device's stream, for tests and tools.
struct StreamStatus {
  StreamState state = StreamState::blocked;
  std::optional<std::string> problem;  // why the current vSTE was refused (C_BAD_STE), if it was
};

class VirtualSmmu final : public VsmmuEndpoint, private smmu::RegisterEffects {
 public:
  // Binds the devices, derives the guest's ID registers from the first device's physical SMMU and the
  // wishes, and sets up the host objects. Fails (leaving nothing on the host) with one precise reason when a
  // device cannot nest: not coherent (neither S2FWB nor CANWBS), an SMMU that cannot honour the wishes, a
  // vSID beyond SIDSIZE or used twice.
  static Result<std::unique_ptr<VirtualSmmu>> create(GuestMemory& memory, const VirtualSmmuConfig& config,
                                                     std::vector<DeviceSpec> devices);
  ~VirtualSmmu() override;

  // ---- the guest's side
  Result<std::uint64_t> mmio_read(std::uint64_t offset, unsigned size) override;
  Result<void> mmio_write(std::uint64_t offset, std::uint64_t value, unsigned size) override;
  // Wired interrupts (eventq, gerror, cmd_sync); a VMM signals its irqfds from these.
  void set_irq_handler(smmu::Irq line, std::function<void()> handler);
  // MSIs (with the MSI wish, IDR0.MSI = 1): EVENTQ_IRQ_CFG0-2, GERROR_IRQ_CFG0-2 and CMD_SYNC CS=IRQ name an
  // address and data (IHI 0070 3.18, 4.7.3, 6.3.21-23). An address in guest RAM is written by the vSMMU itself
  // (logged as dirty, as its event records are): what Linux's MSIPOLL polls. Any other address (the guest's
  // interrupt controller, an ITS doorbell) goes to this handler as (address, data): the VMM injects the
  // interrupt. With no handler such an MSI aborts: GERROR.MSI_*_ABT_ERR, as an SMMU whose write reaches
  // nothing (IHI 0070 7.5). Called outside the vSMMU's lock, like the wired handlers.
  using MsiHandler = std::function<void(std::uint64_t address, std::uint32_t data)>;
  void set_msi_handler(MsiHandler handler);

  // One-line notices for the VMM's operator, beyond what the guest is told (today: a device whose MSIs fault in
  // the guest's stage 1, once per device; docs/interrupts.md). Called after the lock is released, as the
  // interrupt handlers are; without a handler the vSMMU logs them at warning.
  void set_notice_handler(NoticeHandler handler) override;

  // ---- the VMM's side
  // Hot-plug: the device follows the guest's STE for its vSID (GBPA while SMMUEN = 0) from the start. A failure
  // leaves the vSMMU holding what it held before; removing a physical SMMU's last device releases its vIOMMU.
  Result<void> add_device(DeviceSpec device);
  Result<void> remove_device(std::uint32_t vsid);
  // The fds to poll: the vEVENTQs, the fault queue (with stalls), and one readable while command-queue work is
  // left over from an access
  // (VirtualSmmuConfig::commands_per_access); call process_events() when one is readable.
  std::vector<int> event_fds() const override;
  // Moves every host event record and fault into the guest's event queue and goes on with command-queue work
  // left over (within one access's budget); returns how many event records were written.
  Result<std::size_t> process_events() override;

  // ---- live migration (nesting/migration.cpp, docs/migration.md). The VM's dirty log is GuestMemory::dirty().
  // Saves what a destination needs (nesting/migration_state.hpp). Finishes the guest's queued commands first,
  // and takes the host's event records not yet in the guest's event queue into the state rather than guest RAM:
  // from then on the vSMMU writes nothing into guest RAM and holds the host's further records (a later save
  // carries them too) until the guest's next MMIO access, which only a resumed source sees.
  Result<std::vector<std::byte>> save_state() override;
  // Loads a saved state into this vSMMU, which the guest must not have programmed yet: created with the
  // source's wishes and the same devices at the same vSIDs, after guest RAM is in place. Its streams are rebuilt
  // from the guest's tables, its event queues re-opened, the carried events delivered. Refused, leaving the
  // vSMMU as it was, when the ID registers differ, a device is missing or extra, or a stream that translated
  // (or bypassed) on the source cannot here.
  Result<void> load_state(std::span<const std::byte> state) override;
  // create() then load_state(): on failure nothing is left on the host.
  static Result<std::unique_ptr<VirtualSmmu>> restore(GuestMemory& memory, const VirtualSmmuConfig& config,
                                                      std::vector<DeviceSpec> devices, std::span<const std::byte> state);

  // The host's MSI window of each device that has one, by vSID: guest RAM may not overlap any (GuestMemory
  // refuses it), and the guest's firmware tables must reserve each 1:1 (`vsmmu iort gen`, `vsmmu dt gen`).
  std::vector<DeviceMsiWindow> msi_windows() const;
  const GuestIdRegisters& id_registers() const override { return ids_; }
  const std::string& name() const { return config_.name; }
  VirtualSmmuStats stats() const override;
  Result<StreamStatus> stream_status(std::uint32_t vsid) const;
  // The host objects the vSMMU holds now (devices bound, vIOMMUs, vDEVICEs, HWPTs, vEVENTQs).
  std::size_t host_objects() const;

 private:
  struct Device;  // per device: its binding, its Viommu and stream there, what the guest was told

  // `fault_queue`: the host's fault queue for the guest's stalls (none when the guest is not given stalls).
  VirtualSmmu(GuestMemory& memory, const VirtualSmmuConfig& config, const GuestIdRegisters& ids,
              host::QueueObject fault_queue);

  // RegisterEffects (mu_ held)
  void commands_published() override;
  void control_changed(smmu::Cr0 before, smmu::Cr0 after) override;
  void bypass_changed(smmu::Gbpa now) override;
  void events_consumed() override;
  bool msi_outside_memory(std::uint64_t address, std::uint32_t data) override;

  // devices and streams (stream_binding.cpp); mu_ held
  // A device bound to iommufd, with its physical SMMU's hw_info, not yet part of the vSMMU.
  struct BoundCandidate;
  static Result<BoundCandidate> bind(host::Host& host, const std::string& vsmmu_name, DeviceSpec spec,
                                     std::uint64_t& host_calls);
  Result<void> add_device_locked(DeviceSpec spec);
  Result<void> add_bound_device_locked(BoundCandidate candidate);
  Result<void> vsid_fits(std::uint32_t vsid, const std::string& what) const;
  Result<Viommu*> join_viommu(Device& dev, const host::HwInfo& hw, const std::string& what);
  void check_window_reserved(const Device& d);
  void drop_unused_viommus();
  // Re-reads the streams in `sids`; CFGI_CD_ALL goes to the host for translating streams whose vSTE did not
  // change (guest_index: the guest command that asked, for a refusal).
  std::optional<HostRefusal> reinstall_streams(const invalidation::SidRange& sids, std::uint32_t guest_index = 0);
  // Every stream (SMMUEN or GBPA changed, a migrated state loaded).
  void reinstall_all_streams();
  Result<void> reinstall(Device& dev);
  Result<void> attach(Device& dev, StreamState state, const smmu::Ste* vste);
  std::optional<std::string> check_vste(const smmu::Ste& ste) const;
  void record_bad_ste(std::uint32_t vsid);

  // command queue (command_execution.cpp); mu_ held
  // Starts one access's budget (VirtualSmmuConfig::commands_per_access, host_calls_per_access).
  void begin_access();
  bool host_budget_spent() const;
  // Consumes commands within the access's budget; leaves work_fd_ readable when some are left.
  void run_command_queue();
  void set_work_left(bool left);
  // Sends a batch to every vIOMMU it concerns; returns the first guest command a host refused.
  std::optional<HostRefusal> forward(std::span<const smmu::Command> entries,
                                     std::span<const std::uint32_t> guest_index);

  // events (event_forwarding.cpp); mu_ held
  Result<void> enable_event_queues();
  void disable_event_queues();
  std::size_t drain_host_events();
  // A stage-1 fault in the device's host MSI window: counted, and a notice the first time for the device.
  void diagnose_msi_fault(const smmu::Event& e);

  // stalls (stall_forwarding.cpp); mu_ held
  // IOMMU_FAULT_QUEUE_ALLOC for a guest given stalls (counted in host_calls); an empty object when it is not.
  static Result<host::QueueObject> open_fault_queue(host::Host& host, const VirtualSmmuConfig& config,
                                                    const GuestIdRegisters& ids, std::uint64_t& host_calls);
  // The fault queue a translating vSTE's nested HWPT gets: the vSMMU's, when the guest enabled stalls for the
  // stream (S1STALLD = 0 on a vSMMU giving stalls) and its device can stall; else none.
  std::optional<host::ObjectId> fault_queue_for(const Device& dev, const smmu::Ste& vste) const;
  // Reads the host's faults into stall records (queued for the guest's event queue); returns records written.
  std::size_t drain_faults();
  // Writes the stall records waiting for room in the guest's event queue.
  std::size_t deliver_stall_events();
  void execute_fault_response(const smmu::Command& cmd);
  // Answers a host fault group (SUCCESS: the device retries; INVALID: it aborts).
  void answer_fault(std::uint32_t cookie, bool retry, std::string_view why);
  // Every outstanding stall of the stream answered INVALID (its configuration changed, it is going away).
  void terminate_stalls(std::uint32_t vsid, std::string_view why);

  // live migration (migration.cpp); mu_ held
  // A resumed source: the records held since save_state() go into the guest's event queue.
  void release_held_events();

  void unlock_and_fire(std::unique_lock<std::mutex>& lock);
  std::string device_name(const Device& d) const;

  GuestMemory& memory_;
  host::Host& host_;
  const VirtualSmmuConfig config_;
  const GuestIdRegisters ids_;
  const smmu::IdFeatures guest_;  // ids_ decoded
  const invalidation::AdvertisedFeatures features_;
  invalidation::PlanOptions plan_options_;

  mutable std::mutex mu_;
  smmu::RegisterFile regs_;
  host::QueueObject fault_queue_;                             // before viommus_: the HWPTs using it die first
  std::optional<host::FaultQueueReader> fault_reader_;
  StallTable stalls_;
  std::deque<smmu::Event> stall_events_;                      // stall records waiting for room in the guest queue
  std::vector<std::unique_ptr<Viommu>> viommus_;              // declared before devices_: devices die first
  std::map<std::uint32_t, std::unique_ptr<Device>> devices_;  // by vSID
  std::vector<smmu::Command> cmd_buffer_;                     // reused by run_command_queue
  invalidation::Planner planner_;                             // reused by run_command_queue
  host::UniqueFd work_fd_;                                    // eventfd: readable while command work is left
  bool work_left_ = false;
  std::uint32_t commands_budget_ = 0;                         // this access's budget: commands still allowed
  std::uint64_t host_calls_limit_ = 0;                        //   and the host-call count it may not pass
  VirtualSmmuStats stats_;                                    // the Viommus count into its ViommuStats part
  std::array<std::function<void()>, 4> irq_handlers_;
  MsiHandler msi_handler_;
  std::vector<std::pair<std::uint64_t, std::uint32_t>> pending_msis_;  // for msi_handler_, fired unlocked
  NoticeHandler notice_handler_;
  std::vector<Notice> pending_notices_;                       // given to notice_handler_ by unlock_and_fire
  bool programmed_ = false;                                   // the guest has written a register
  bool holding_ = false;                                      // saved: host records are held, not written
  bool quiet_ = false;                                        // loading: streams re-read record no events
  std::vector<smmu::Event> held_events_;                      // while holding_
  std::uint64_t held_lost_ = 0;
};

}  // namespace vsmmu::nesting

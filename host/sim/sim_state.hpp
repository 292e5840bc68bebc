// The simulated kernel's state, shared by sim_host.cpp (objects, IOAS, HWPTs, attach) and sim_viommu.cpp
// (vIOMMU, vDEVICE, vEVENTQ, invalidation, events, DMA). Internal to host/sim.
#pragma once

#include <cstdint>
#include <deque>
#include <expected>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "base/try.hpp"
#include "host/sim/host_memory.hpp"
#include "host/sim/s2_domain.hpp"
#include "host/sim/sim_host.hpp"
#include "host/sim/arm_smmu_device.hpp"
#include "host/fault_records.hpp"
#include "host/sim/veventq.hpp"

namespace vsmmu::host::sim {

inline constexpr std::uint64_t kPageSize = 4096;
inline constexpr std::uint64_t kUlongMax = ~0ULL;

enum class ObjType : std::uint8_t { device, ioas, hwpt_paging, hwpt_nested, viommu, vdevice, veventq, fault };
std::string_view type_name(ObjType t);
// Whether every page of [p, p + len) is mapped readable in this process, as the kernel's pin of user pages needs
// (sim_ioas.cpp).
bool user_range_mapped(const void* p, std::uint64_t len);

// A bound VFIO device (iommufd_device). The driver holds a reference: IOMMU_DESTROY on it is EBUSY.
struct DeviceObj {
  std::size_t spec = 0;                 // index into the hardware profile's devices
  std::optional<ObjectId> attached;     // HWPT (paging or nested) it is attached to
  std::optional<ObjectId> vdevice;
  std::optional<ObjectId> resv_ioas;    // IOAS holding its reserved regions (SW MSI)
  // VFIO_DEVICE_SET_IRQS on the MSI index: each enabled vector's message (sim_msi.cpp).
  std::vector<MsiMessage> msi;
  // igroup->required_sw_msi: the ITS doorbell's page was mapped for this device (iommufd_sw_msi), so every
  // domain it attaches to gets it too (iommufd_group_setup_msi); kept until the device is unbound.
  bool required_sw_msi = false;
};

struct Reservation {
  enum class Kind : std::uint8_t { aperture, sw_msi };
  std::uint64_t start = 0, last = 0;
  Kind kind = Kind::aperture;
  ObjectId owner = 0;                   // the HWPT (aperture) or the device (SW MSI)
};

// One IOAS mapping (iopt_area + its iopt_pages): the backing memory, placed in host-physical memory.
struct Area {
  std::uint64_t iova = 0, length = 0;
  bool read = false, write = false;
  std::uint64_t pa = 0;                 // host-physical address of the first byte
  std::uint64_t page_offset = 0;        // the memory's offset in its first page (user VA or file offset)
  MappedRegion file_map;                // MAP_FILE: the memfd range, mapped by the simulated kernel
  const void* user_va = nullptr;        // IOAS_MAP: the user's memory (checked when a domain pins it)
  std::uint64_t last() const { return iova + length - 1; }
};

struct IoasObj {
  std::map<std::uint64_t, Area> areas;  // by IOVA
  std::vector<Reservation> reserved;
  std::vector<ObjectId> domains;        // paging HWPTs whose tables mirror this IOAS, oldest first
  bool huge_pages = true;               // IOMMU_OPTION_HUGE_PAGES
  // iopt->iova_alignment: no constraint until a domain exists (or large pages are off), then the smallest
  // IOMMU page.
  std::uint64_t alignment() const { return domains.empty() && huge_pages ? 1 : kPageSize; }
};

struct HwptPagingObj {
  ObjectId ioas = 0;
  std::size_t smmu = 0;
  bool auto_domain = false;             // created by attaching a device to the IOAS itself
  std::unique_ptr<S2Domain> domain;
  std::optional<ObjectId> fault;
  // hwpt_paging->present_sw_msi: the ITS doorbell's page is mapped at its SMMU's SW MSI window base (until the domain goes).
  bool present_sw_msi = false;
};

struct HwptNestedObj {
  ObjectId viommu = 0;
  smmu::Ste vste;                       // words 0 and 1 as validated (EATS cleared, V=0 zeroed)
  bool enable_ats = false;
  std::optional<ObjectId> fault;
};

struct ViommuObj {
  std::size_t smmu = 0;
  ObjectId parent = 0;
  std::uint32_t type = 0;
  std::map<std::uint64_t, ObjectId> vdevs;  // virt_id -> vDEVICE
};

struct VdeviceObj {
  ObjectId viommu = 0, dev = 0;
  std::uint64_t virt_id = 0;
};

struct VeventqObj {
  ObjectId viommu = 0;
  std::uint32_t type = 0;
  std::unique_ptr<VeventQueue> queue;
};

// One fault group a fault queue holds (struct iopf_group): arm-smmu-v3 reports every stall as its own group
// (IOMMU_FAULT_PAGE_REQUEST_LAST_PAGE, grpid = STAG), so a group is one record.
struct FaultGroup {
  uapi::iommu_hwpt_pgfault record;      // as read(2) gives it; cookie set when delivered
  ObjectId dev = 0;                     // the device whose attach handle it came through
  std::size_t smmu = 0;                 // where the CMD_RESUME goes
  std::uint32_t sid = 0;
  std::uint16_t stag = 0;
};

// IOMMUFD_OBJ_FAULT (drivers/iommu/iommufd/eventq.c): groups waiting to be read (deliver) and groups read
// and waiting for their response, by cookie (the `response` xarray, cookies allocated from 1).
struct FaultObj {
  UserChannel channel;
  int user_fd = -1;                     // the fd handed out, to clear readiness when `deliver` empties
  std::deque<FaultGroup> deliver;
  std::map<std::uint32_t, FaultGroup> response;
};

// A DMA engine's transfer that stalled (docs/sim-host.md, "Stalls"): held until the stall is answered, then
// carried on from the stalled burst to the end; kept, once finished, until dma_outcome collects it.
struct EngineAccess {
  bool write = false;
  std::uint64_t iova = 0;
  std::vector<std::byte> data;          // a write's bytes; a read's buffer
  std::optional<std::uint32_t> ssid;
  std::uint64_t done = 0;               // bytes of the transfer before the stalled burst
  std::uint64_t chunk = 0;              // the stalled burst's length
  std::uint64_t stall_id = 0;           // the SMMU's handle of the stalled burst (SmmuModel::take_stall)
  DmaResult result;                     // so far; result.stalled while held
  bool finished = false;
};

// Alternatives in ObjType order.
using Body = std::variant<DeviceObj, IoasObj, HwptPagingObj, HwptNestedObj, ViommuObj, VdeviceObj, VeventqObj, FaultObj>;

struct SimHost::State {
  KernelProfile kernel;
  HardwareProfile hw;
  mutable std::mutex mu;
  HostMemory mem;
  std::vector<std::unique_ptr<ArmSmmuDevice>> smmus;
  std::map<ObjectId, Body> objects;
  std::vector<std::optional<DeviceId>> bound;   // by device spec
  std::vector<smmu::Ste> installed;             // the physical STE of each device spec
  unsigned fail_nth = 0;
  unsigned calls = 0;
  bool fired = false;
  std::uint64_t events_forwarded = 0;
  std::uint64_t events_unhandled = 0;
  bool interrupts_deferred = false;
  std::map<std::size_t, EngineAccess> engine_access;  // by DMA engine index: stalled or uncollected transfers
  std::uint64_t stalls_aborted_by_kernel = 0;          // stall events no fault queue took (answered with abort)

  State(KernelProfile k, HardwareProfile h, std::uint64_t pa_base, std::uint64_t pa_limit, std::uint64_t its_base)
      : kernel(std::move(k)), hw(std::move(h)), mem(pa_base, pa_limit, its_base) {}

  // ---- objects
  ObjType type_of(const Body& b) const { return static_cast<ObjType>(b.index()); }
  template <class T>
  T* get(ObjectId id) {
    auto it = objects.find(id);
    if (it == objects.end()) return nullptr;
    return std::get_if<T>(&it->second);
  }
  ObjectId alloc_id() const;
  ObjectId insert(Body body);
  // fail_nth: the error to fail `call` with, if this is the injected call.
  std::optional<Error> inject(const char* call);

  const DeviceSpec& spec_of(const DeviceObj& d) const { return hw.devices[d.spec]; }
  std::size_t smmu_of_spec(std::size_t spec) const { return hw.root_complexes[hw.devices[spec].root_complex].smmu; }
  ArmSmmuDevice& smmu_of(const DeviceObj& d) { return *smmus[smmu_of_spec(d.spec)]; }
  std::string describe_device(const DeviceObj& d, ObjectId id) const;
  // Whether ATS is usable for the device: its capability, its root complex's and the SMMU's.
  bool ats_capable(const DeviceObj& d) const;

  // ---- attach (sim_host.cpp)
  Result<void> install(std::size_t spec, const smmu::Ste& ste);
  smmu::Ste abort_ste() const;
  smmu::Ste nested_ste(const HwptNestedObj& n, const DeviceObj& d);
  Result<void> do_attach(ObjectId dev_id, ObjectId hwpt_id, const char* call);
  Result<void> do_detach(ObjectId dev_id);
  // Drops an auto domain nobody is attached to.
  void put_auto_domain(ObjectId hwpt_id);
  std::size_t attached_count(ObjectId hwpt_id) const;
  ObjectId ioas_of_hwpt(ObjectId hwpt_id);
  Result<void> reserve_sw_msi(IoasObj& ioas, ObjectId ioas_id, ObjectId dev_id, const char* call);
  // find_hwpt_paging: a paging HWPT itself, a nested HWPT's nest parent (its id).
  ObjectId paging_of(ObjectId hwpt_id);
  // iommufd_sw_msi_install: maps the ITS doorbell's page into the paging HWPT's domain at its SMMU's SW MSI window base, once
  // (sim_msi.cpp).
  Result<void> install_sw_msi(ObjectId paging_id, const char* call);
  void release_reservations(IoasObj& ioas, Reservation::Kind kind, ObjectId owner);

  // ---- IOAS
  Result<std::uint64_t> map_area(ObjectId ioas_id, Area area, std::span<std::byte> backing, std::uint64_t iova,
                                 bool fixed, std::uint64_t addr_hint, const char* call);
  void unmap_area(IoasObj& ioas, std::map<std::uint64_t, Area>::iterator it);
  Result<std::unique_ptr<S2Domain>> new_domain(std::size_t smmu, IoasObj& ioas, ObjectId ioas_id, ObjectId hwpt_id,
                                               S2Domain::Options options, const char* call);
  Result<ObjectId> alloc_paging(ObjectId ioas_id, std::size_t smmu, std::uint32_t flags, bool auto_domain,
                                const char* call);
  void destroy_paging(ObjectId id);

  // ---- vIOMMU side (sim_viommu.cpp)
  InvalidateOutcome viommu_invalidate(ObjectId viommu_id, const InvalidateRequest& req);
  // arm_smmu_evtq_thread: drains every SMMU's event queue and hands each record to its vEVENTQ (or logs it).
  void handle_events();
  Result<DmaResult> dma(std::string_view engine, std::uint64_t iova, std::span<std::byte> read_into,
                        std::span<const std::byte> write_from, bool write, std::optional<std::uint32_t> ssid);

  // ---- stalls and fault queues (sim_fault.cpp)
  // Carries engine `e`'s transfer on from a.done (the burst there already tried when `first` is given).
  void run_engine(std::size_t e, EngineAccess& a, std::optional<std::expected<void, smmu::model::DmaFault>> first);
  // Carries on every transfer whose stall the SMMU resolved since, until none moves.
  void settle();
  // arm_smmu_handle_event for a stall record: to the fault queue of the device's domain, or answered abort.
  void report_stall(std::size_t smmu, const smmu::Event& ev);
  // iommufd_auto_response_faults: every group of `dev` in hwpt's fault queue answered INVALID.
  void auto_respond(ObjectId dev, ObjectId hwpt_id);
  std::optional<ObjectId> fault_of(ObjectId hwpt_id);
  // master->stall_enabled (arm_smmu_probe_device): dma-can-stall with STALL_MODEL "stall", or STALL_FORCE.
  bool stall_enabled(const DeviceObj& d);
  // The fault queue behind `fd` for a read/write(2) of `bytes` in records of `unit` bytes: EBADF (closed fd),
  // EINVAL (not a fault queue fd of this host), ESPIPE (not whole records), each naming `call`.
  Result<FaultObj*> fault_io(int fd, std::size_t bytes, std::size_t unit, const char* call, std::string_view units);
};

}  // namespace vsmmu::host::sim

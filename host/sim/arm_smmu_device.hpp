// ArmSmmuDevice: the simulated host's instance of the kernel's arm-smmu-v3 driver for one physical SMMU (Linux's
// struct arm_smmu_device, drivers/iommu/arm/arm-smmu-v3/arm-smmu-v3.h) - not the guest-side scripted driver
// smmu::driver::SmmuDriver, which it uses to bring the model up. It probes the SMMU's ID registers as Linux does
// (features, errata from the IIDR), brings the model up through its registers (stream table, command and event
// queues in host memory), installs STEs followed by CFGI_STE + CMD_SYNC, issues command lists the way
// arm_smmu_cmdq_issue_cmdlist does (a command the SMMU rejects is replaced by a CMD_SYNC and logged, as
// arm_smmu_cmdq_skip_err does), performs stage-2 TLB maintenance, and collects the event records its
// event-queue interrupt announces.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <vector>

#include "host/sim/host_memory.hpp"
#include "host/sim/profile.hpp"
#include "smmu/command.hpp"
#include "smmu/event.hpp"
#include "smmu/driver/smmu_driver.hpp"
#include "smmu/model/smmu_model.hpp"
#include "smmu/ste.hpp"
#include "smmu/table_builder.hpp"

namespace vsmmu::host::sim {

// What the driver makes of the ID registers (arm_smmu_device_hw_probe, arm_smmu_device_iidr_probe).
struct DriverFeatures {
  bool trans_s1 = false;
  bool trans_s2 = false;
  bool nesting = false;          // ARM_SMMU_FEAT_NESTING: both stages, no erratum against it
  std::string nesting_off;       // why nesting is off, for messages
  bool force_sync = false;       // ARM_SMMU_OPT_CMDQ_FORCE_SYNC (erratum 2812531)
  bool repeat_tlbi_cfgi = false; // erratum T264-SMMU-3: IOMMU_HW_INFO_ARM_SMMUV3_ERRATA_REPEAT_TLBI_CFGI
  bool s2fwb = false;            // ARM_SMMU_FEAT_S2FWB (IDR3.FWB)
  bool coherent = false;         // ARM_SMMU_FEAT_COHERENCY (IDR0.COHACC)
  bool ha = false, hd = false;   // ARM_SMMU_FEAT_HA / HD (IDR0.HTTU)
  bool range_inv = false;        // ARM_SMMU_FEAT_RANGE_INV (IDR3.RIL)
  bool ats = false;              // ARM_SMMU_FEAT_ATS
  bool stalls = false;           // ARM_SMMU_FEAT_STALLS: IDR0.STALL_MODEL "stall" or "forced"
  bool stall_force = false;      // ARM_SMMU_FEAT_STALL_FORCE: every master is stall_enabled
  unsigned vmid_bits = 8;
  unsigned ssid_bits = 0;
  unsigned asid_bits = 8;
  unsigned ias_bits = 48;        // stage-2 input size of the domains the driver builds
  unsigned oas_bits = 48;
  std::vector<std::string> errata;  // workarounds applied

  // arm_smmu_dbm_capable: dirty tracking needs HTTU dirty state and coherent table walks.
  bool dbm_capable() const { return hd && coherent; }
};

class ArmSmmuDevice {
 public:
  static Result<std::unique_ptr<ArmSmmuDevice>> probe(const SmmuSpec& spec, HostMemory& mem);
  ~ArmSmmuDevice();
  ArmSmmuDevice(const ArmSmmuDevice&) = delete;
  ArmSmmuDevice& operator=(const ArmSmmuDevice&) = delete;

  const SmmuSpec& spec() const { return spec_; }
  const DriverFeatures& features() const { return features_; }
  smmu::model::SmmuModel& model() { return *model_; }
  HostMemory& memory() { return mem_; }

  // Writes sid's STE and makes the SMMU use it: CFGI_STE + CMD_SYNC (arm_smmu_write_ste + sync).
  Result<void> install_ste(std::uint32_t sid, const smmu::Ste& ste);
  // arm_smmu_cmdq_issue_cmdlist: the commands, then a CMD_SYNC if `sync`, waiting for the SMMU to consume
  // them. A command the SMMU stops on is logged and replaced by a CMD_SYNC, and the queue restarted.
  Result<void> issue_cmdlist(std::span<const smmu::Command> cmds, bool sync);
  // arm_smmu_cmdq_batch_add/submit: any number of commands, issued in batches of 64 (63 and a sync with the
  // force-sync erratum), the last batch followed by a CMD_SYNC.
  Result<void> issue_batched(std::span<const smmu::Command> cmds);

  // Stage-2 TLB maintenance as arm_smmu_tlb_inv_range_domain does it: TLBI_S2_IPA per page or as ranges
  // (RIL), the whole VMID when that is cheaper, and TLBI_NH_ALL for a nest parent (combined stage 1+2
  // entries are not removed by TLBI_S2_IPA).
  Result<void> tlb_inv_s2_range(std::uint16_t vmid, std::uint64_t iova, std::uint64_t size, bool nest_parent);
  Result<void> tlb_inv_vmid(std::uint16_t vmid);
  // arm_smmu_page_response for a stall_enabled master: CMD_RESUME(sid, STAG) with RESP_RETRY (retry) or
  // RESP_ABORT, and no CMD_SYNC (its consumption guarantees the outcome; IHI 0070 4.7.1).
  Result<void> page_response(std::uint32_t sid, std::uint16_t stag, bool retry);

  Result<std::uint16_t> alloc_vmid();
  void free_vmid(std::uint16_t vmid);

  // The event records the event-queue interrupt announced since the last call (arm_smmu_evtq_thread).
  std::vector<smmu::Event> take_events();

  // Commands written to the queue (CMD_SYNCs included) and CMD_SYNCs, for tests and the benchmark.
  std::uint64_t commands_issued() const { return commands_; }
  std::uint64_t syncs_issued() const { return syncs_; }
  std::uint64_t command_errors() const { return command_errors_; }

 private:
  ArmSmmuDevice(const SmmuSpec& spec, HostMemory& mem) : spec_(spec), mem_(mem) {}

  SmmuSpec spec_;
  DriverFeatures features_;
  HostMemory& mem_;
  MappedRegion ram_;                  // stream table, queues
  std::uint64_t ram_pa_ = 0;
  std::optional<smmu::TablePageAllocator> ram_alloc_;
  std::unique_ptr<smmu::model::SmmuModel> model_;
  std::optional<smmu::driver::SmmuDriver> driver_;
  std::shared_ptr<std::atomic<bool>> eventq_irq_ = std::make_shared<std::atomic<bool>>(false);
  std::set<std::uint16_t> vmids_;
  std::uint64_t commands_ = 0, syncs_ = 0, command_errors_ = 0;
};

}  // namespace vsmmu::host::sim

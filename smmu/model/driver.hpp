// A minimal SMMUv3 driver for the model, doing what Linux's arm-smmu-v3 does at probe and at run time:
// allocate the stream table and queues in memory, program their base registers, enable through CR0 and
// wait for CR0ACK, invalidate everything before enabling translation, write STEs, issue commands followed
// by CMD_SYNC, and consume event records. Tests, the demo and the benchmark share it; everything goes
// through MMIO and memory, never through the model's internals.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "smmu/cd.hpp"
#include "smmu/command.hpp"
#include "smmu/error.hpp"
#include "smmu/event.hpp"
#include "smmu/memory.hpp"
#include "smmu/model/smmu_model.hpp"
#include "smmu/ste.hpp"
#include "smmu/table_builder.hpp"

namespace vsmmu::smmu::model {

struct DriverLayout {
  unsigned sid_bits = 8;       // STRTAB_BASE_CFG.LOG2SIZE
  bool two_level = false;      // STRTAB_BASE_CFG.FMT; SPLIT = 8, level-2 tables allocated on first STE
  unsigned cmdq_log2 = 8;      // CMDQ_BASE.LOG2SIZE
  unsigned eventq_log2 = 7;    // EVENTQ_BASE.LOG2SIZE
  bool record_invalid_sids = true;  // CR2.RECINVSID
  bool irqs = true;            // IRQ_CTRL: event queue and global error interrupts
};

class ModelDriver {
 public:
  static constexpr unsigned kSplit = 8;

  // Allocates the tables and queues from `alloc`, programs and enables the SMMU (queues first, then
  // CFGI_ALL + TLBI_NSNH_ALL + CMD_SYNC, then SMMUEN), as arm_smmu_device_reset does.
  static Result<ModelDriver> start(SmmuModel& smmu, PhysicalMemory& mem, TablePageAllocator& alloc,
                                   const DriverLayout& layout = {});

  // Writes sid's STE to memory (allocating its level-2 table on first use). Invalidation is the caller's.
  Result<std::uint64_t> write_ste(std::uint32_t sid, const Ste& ste);
  Result<std::uint64_t> ste_address(std::uint32_t sid) const;

  // Writes commands at PROD and publishes them with one CMDQ_PROD write; no CMD_SYNC, no checking.
  Result<void> push(std::span<const Command> cmds);
  // push(cmds + CMD_SYNC), then checks the SMMU consumed everything without a command error.
  Result<void> issue(std::span<const Command> cmds);
  Result<void> issue(const Command& cmd) { return issue(std::span(&cmd, 1)); }
  // The error the command queue stopped on, if it did (GERROR.CMDQ_ERR active): CMDQ_CONS.ERR.
  Result<std::optional<Cerror>> command_error();
  // Acknowledges a command error through GERRORN (after replacing the failed command with CMD_SYNC, as
  // Linux's arm_smmu_cmdq_skip_err does, when `skip`).
  Result<void> acknowledge_command_error(bool skip = true);

  // Reads the records between EVENTQ_CONS and EVENTQ_PROD and frees them.
  Result<std::vector<Event>> drain_events();

  std::uint64_t strtab_base() const { return strtab_; }
  std::uint64_t cmdq_base() const { return cmdq_; }
  std::uint64_t eventq_base() const { return eventq_; }
  const DriverLayout& layout() const { return layout_; }

 private:
  ModelDriver(SmmuModel& smmu, PhysicalMemory& mem, TablePageAllocator& alloc, const DriverLayout& layout)
      : smmu_(&smmu), mem_(&mem), alloc_(&alloc), layout_(layout) {}
  Result<void> enable(Cr0 cr0);

  SmmuModel* smmu_;
  PhysicalMemory* mem_;
  TablePageAllocator* alloc_;
  DriverLayout layout_;
  std::uint64_t strtab_ = 0, cmdq_ = 0, eventq_ = 0;
};

// Commands as a driver writes them (IHI 0070 4.3-4.7).
Command cmd_sync(SyncCs cs = SyncCs::none);
Command cmd_cfgi_ste(std::uint32_t sid, bool leaf = true);
Command cmd_cfgi_all();
Command cmd_cfgi_cd(std::uint32_t sid, std::uint32_t ssid, bool leaf = true);
Command cmd_tlbi_nh_asid(std::uint16_t vmid, std::uint16_t asid);
Command cmd_tlbi_nh_va(std::uint16_t vmid, std::uint16_t asid, std::uint64_t va, bool leaf = true);
Command cmd_tlbi_s12_vmall(std::uint16_t vmid);
Command cmd_tlbi_s2_ipa(std::uint16_t vmid, std::uint64_t ipa, bool leaf = true);
Command cmd_tlbi_nsnh_all();

}  // namespace vsmmu::smmu::model

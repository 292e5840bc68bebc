// A scripted SMMUv3 driver doing what Linux's arm-smmu-v3 does, over any SmmuMmio: the software SmmuModel
// (the simulated host's hardware) or the guest-facing VirtualSmmu (then `mem` is the guest's IPA space).
// Tests, the demo, the benchmarks and the e2e binary share it; it touches the SMMU only through its registers
// and the memory its structures live in.
//
// start() probes (arm_smmu_device_hw_probe) and resets (arm_smmu_device_reset): stream table linear or
// 2-level, command and event queues, CR1/CR2, CFGI_ALL and TLB invalidation, wired interrupts, SMMUEN. Every
// wait for an acknowledgement or for the command queue is a bounded poll, so an SMMU that completes
// asynchronously works and one that never does fails with the register named.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <map>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "smmu/cd.hpp"
#include "smmu/command.hpp"
#include "smmu/driver/cd_table.hpp"
#include "smmu/driver/commands.hpp"
#include "smmu/driver/features.hpp"
#include "smmu/driver/records.hpp"
#include "base/error.hpp"
#include "smmu/event.hpp"
#include "smmu/memory.hpp"
#include "smmu/mmio.hpp"
#include "smmu/registers.hpp"
#include "smmu/ste.hpp"
#include "smmu/table_builder.hpp"

namespace vsmmu::smmu::driver {

// Where an MSI goes, as the platform's MSI controller gives it (an ITS doorbell and an event ID, say).
struct MsiTarget {
  std::uint64_t address = 0;
  std::uint32_t data = 0;
};

// The driver's accesses to the SMMU's registers, each a VM exit when the SMMU is a VMM's.
struct MmioAccesses {
  std::uint64_t reads = 0;
  std::uint64_t writes = 0;
  std::uint64_t total() const { return reads + writes; }
};

// What the driver is asked for; the SMMU's ID registers cap the sizes.
struct Options {
  std::string name = "smmu";        // in messages
  unsigned sid_bits = 8;            // StreamID bits wanted; capped by IDR1.SIDSIZE
  bool force_linear = false;        // a linear stream table even when IDR0.ST_LEVEL offers 2-level
  unsigned cmdq_log2 = 8;           // capped by IDR1.CMDQS
  unsigned eventq_log2 = 7;         // capped by IDR1.EVENTQS
  bool need_stage1 = false;         // refuse an SMMU without stage 1
  bool record_invalid_sids = true;  // CR2.RECINVSID, as Linux sets it
  bool irqs = true;                 // IRQ_CTRL: event queue and global error interrupts
  // The event queue's and global errors' MSIs (arm_smmu_setup_msis): programmed into *_IRQ_CFG0-2 when the
  // SMMU has IDR0.MSI; otherwise (or without a target) the interrupts are wired.
  std::optional<MsiTarget> eventq_msi{}, gerror_msi{};
  // CMD_SYNC completion polled in memory (Linux's ARM_SMMU_OPT_MSIPOLL): each CMD_SYNC's MSI writes 0 over its
  // own queue slot, which the driver watches instead of reading CMDQ_CONS. Default as Linux decides: IDR0.MSI on
  // a coherent SMMU (IDR0.COHACC; Linux takes coherency from firmware, which is taken to agree), unless
  // disabled (its disable_msipolling). true on an SMMU without both is refused.
  std::optional<bool> msipoll{};
  std::optional<bool> gbpa_abort{}; // before SMMUEN, update GBPA.ABORT to this (Linux's disable_bypass)
  bool skip_command_errors = false; // skip failed commands while waiting, as arm_smmu_cmdq_skip_err; else fail
  std::chrono::microseconds poll_timeout{1'000'000};  // per wait (Linux's ARM_SMMU_POLL_TIMEOUT_US)
};

// A command the queue stopped on (IHI 0070 7.1): CMDQ_CONS.ERR and the command at CMDQ_CONS.RD.
struct CommandError {
  Cerror cerror = Cerror::none;
  std::uint32_t index = 0;              // CMDQ_CONS.RD (index and wrap bit)
  std::optional<Command> command;       // nullopt when the queue memory could not be read
};

// The records read from the event queue, and whether it had overflowed (IHI 0070 7.4: records were lost).
struct DrainedEvents {
  std::vector<Event> records;
  bool overflow = false;
};

// An I/O page fault handler (Linux's iopf handler, iommu_sva_handle_mm for SVA): given a stall record
// (Stall = 1: StreamID, SSV/SSID, InputAddr, RnW/InD/PnU), it resolves the fault (maps the page) and says
// whether it did.
using StallHandler = std::function<bool(const Event&)>;

// What service_events() did: the records that were not stalls, and the stalls answered.
struct ServicedEvents {
  std::vector<Event> records;  // not stalls
  bool overflow = false;
  std::uint64_t resumed = 0;   // CMD_RESUME retry: the handler resolved the fault
  std::uint64_t aborted = 0;   // CMD_RESUME abort: it did not
};

class SmmuDriver {
 public:
  // Linux's STRTAB_SPLIT: the StreamID bits a level-2 stream table resolves.
  static constexpr unsigned kStrtabSplit = 8;

  // Probes and resets the SMMU, allocating the stream table and queues from `alloc` (in `mem`).
  static Result<SmmuDriver> start(SmmuMmio& mmio, PhysicalMemory& mem, TablePageAllocator& alloc,
                                  const Options& options = {});
  // One driver per SMMU: a copy would produce into the same queues from stale state.
  SmmuDriver(SmmuDriver&&) = default;
  SmmuDriver& operator=(SmmuDriver&&) = default;
  SmmuDriver(const SmmuDriver&) = delete;
  SmmuDriver& operator=(const SmmuDriver&) = delete;

  // The SMMU behind the same registers is now another object (a migrated VM's destination vSMMU, with the
  // source's register state loaded): the driver goes on from where it was, its structures in the same memory.
  void moved_to(SmmuMmio& mmio) { mmio_ = &mmio; }

  const Features& features() const { return features_; }
  const Options& options() const { return options_; }
  // Whether CMD_SYNCs complete by MSI into their queue slot (Options::msipoll as decided at start()).
  bool msipoll() const { return msipoll_; }
  // Register accesses made since start() (its probe and reset included).
  const MmioAccesses& mmio_accesses() const { return accesses_; }
  unsigned sid_bits() const { return sid_bits_; }
  StreamTableFormat strtab_format() const { return strtab_fmt_; }
  unsigned cmdq_log2() const { return cmdq_log2_; }
  unsigned eventq_log2() const { return eventq_log2_; }
  std::uint64_t strtab_base() const { return strtab_; }
  std::uint64_t cmdq_base() const { return cmdq_; }
  std::uint64_t eventq_base() const { return eventq_; }

  // ---- stream table
  Result<std::uint64_t> ste_address(std::uint32_t sid) const;
  // Writes sid's STE (allocating its level-2 table on first use). Invalidation is the caller's.
  Result<std::uint64_t> write_ste(std::uint32_t sid, const Ste& ste);
  // write_ste + CFGI_STE + CMD_SYNC.
  Result<void> install_ste(std::uint32_t sid, const Ste& ste);
  Result<void> install_abort(std::uint32_t sid) { return install_ste(sid, abort_ste()); }
  Result<void> install_bypass(std::uint32_t sid) { return install_ste(sid, bypass_ste(features_)); }

  // ---- CD tables (in `mem`)
  // Creates sid's CD table for SSIDs below 2^ssid_bits (at most IDR1.SSIDSIZE), replacing any previous one.
  Result<CdTableRef> create_cd_table(std::uint32_t sid, unsigned ssid_bits, std::optional<CdTableFormat> fmt = {});
  CdTable* cd_table(std::uint32_t sid);
  // Writes a CD in sid's table. Invalidation (CFGI_CD) is the caller's.
  Result<std::uint64_t> write_cd(std::uint32_t sid, std::uint32_t ssid, const Cd& cd);
  // Whether the master behind sid stalls on faults (Linux's master->stall_enabled, arm_smmu_probe_device): its
  // firmware says dma-can-stall (`can_stall`) and the SMMU has stalls, or the SMMU forces them. Its CDs then
  // have S = 1 and its STE S1STALLD = 0 (attach_stage1). Returns the decision.
  bool set_master_stalls(std::uint32_t sid, bool can_stall);
  bool master_stalls(std::uint32_t sid) const { return stall_masters_.contains(sid); }
  // Stage 1 for (sid, ssid) through the tables `s1` built, with `asid`: the CD (s1_cd), a CD table when sid has
  // none (large enough for ssid), the STE (cdtable_ste), then CFGI_CD + CFGI_STE + CMD_SYNC.
  Result<void> attach_stage1(std::uint32_t sid, std::uint32_t ssid, std::uint16_t asid, const TableBuilder& s1,
                             S1Dss dss = S1Dss::substream0);

  // ---- command queue
  // Writes commands at PROD and publishes them with one CMDQ_PROD write, waiting for room when the queue is full.
  Result<void> push(std::span<const Command> cmds);
  // push(cmds + CMD_SYNC), then waits for the CMD_SYNC: its MSI in memory with MSIPOLL, else CMDQ_CONS passing it.
  // A command error fails (EIO, the error left active for inspection) unless Options::skip_command_errors.
  Result<void> issue(std::span<const Command> cmds);
  Result<void> issue(const Command& cmd) { return issue(std::span(&cmd, 1)); }
  // The error the command queue stopped on, if GERROR.CMDQ_ERR is active.
  Result<std::optional<CommandError>> command_error();
  // Acknowledges a command error through GERRORN. With `skip`, as arm_smmu_cmdq_skip_err: a CERROR_ILL command is
  // replaced by CMD_SYNC first (CERROR_ABT is fetched again, CERROR_ATC_INV_SYNC's CMD_SYNC runs again).
  Result<void> acknowledge_command_error(bool skip = true);
  std::uint64_t command_errors_skipped() const { return skipped_; }

  // ---- global errors (IHI 0070 7.5)
  Result<Gerror> active_global_errors();
  // Acknowledges the active errors among `which` (GERRORN bits made equal to GERROR's).
  Result<void> acknowledge_global_errors(Gerror which);

  // ---- event queue: the records between EVENTQ_CONS and EVENTQ_PROD, freed; an overflow is reported and
  // acknowledged (EVENTQ_CONS.OVACKFLG = EVENTQ_PROD.OVFLG), as arm_smmu_evtq_thread does.
  Result<DrainedEvents> drain_events();
  // drain_events(), with every stall record handed to `handler` and answered as Linux's iopf queue answers a
  // fault group (drivers/iommu/io-pgfault.c, arm_smmu_page_response): CMD_RESUME retry when the handler
  // resolved it, abort when not; then one CMD_SYNC.
  Result<ServicedEvents> service_events(const StallHandler& handler);
  // Detaches a stream: the abort STE, CFGI_STE, and for a stalling master CMD_STALL_TERM (no stalled transaction
  // survives its detach), then CMD_SYNC.
  Result<void> detach(std::uint32_t sid);

 private:
  SmmuDriver(SmmuMmio& mmio, PhysicalMemory& mem, TablePageAllocator& alloc, const Options& options)
      : mmio_(&mmio), mem_(&mem), alloc_(&alloc), options_(options) {}
  Result<void> reset();
  Result<void> allocate_structures();
  Result<void> write_acked(const RegisterInfo& reg, const RegisterInfo& ack_reg, std::uint32_t value);
  Result<void> write_cr0(Cr0 cr0);
  Result<void> update_gbpa(bool abort);
  Result<void> write_reg(const RegisterInfo& reg, std::uint64_t value);
  Result<void> write_regs(std::initializer_list<std::pair<RegisterInfo, std::uint64_t>> writes);
  Result<std::uint32_t> read_reg(const RegisterInfo& reg);
  template <class Done, class Expected>
  Result<std::uint32_t> poll(const RegisterInfo& reg, Done done, Expected expected);
  // push(), then a CMD_SYNC (its index in *sync_index) when with_sync.
  Result<void> push(std::span<const Command> cmds, bool with_sync, std::uint32_t* sync_index);
  // Polls CMDQ_CONS until at most `pending` of the entries before `prod` are unconsumed; returns CONS.RD.
  Result<std::uint32_t> wait_for_cons(std::uint32_t prod, std::uint32_t pending, std::string_view what);
  // MSIPOLL: polls the first word of the CMD_SYNC at `index` in memory until its MSI wrote 0
  // (__arm_smmu_cmdq_poll_until_msi). A command error (what Linux's GERROR interrupt reports) is read only
  // while the word has not changed.
  Result<void> wait_for_sync_msi(std::uint32_t index);
  // A command error met while waiting: fails unless Options::skip_command_errors, else skips it (at most one
  // per queue entry per wait). Returns whether it was skipped (false: no error).
  Result<bool> handle_command_error(std::string_view what, std::uint32_t& skipped_here);
  Result<void> setup_irqs();

  SmmuMmio* mmio_;
  PhysicalMemory* mem_;
  TablePageAllocator* alloc_;
  Options options_;
  Features features_;
  unsigned sid_bits_ = 0;
  StreamTableFormat strtab_fmt_ = StreamTableFormat::linear;
  unsigned cmdq_log2_ = 0, eventq_log2_ = 0;
  std::uint64_t strtab_ = 0, cmdq_ = 0, eventq_ = 0;
  std::map<std::uint32_t, CdTable> cd_tables_;
  std::set<std::uint32_t> stall_masters_;
  std::uint64_t skipped_ = 0;
  bool msipoll_ = false;
  // The command queue as the driver last knew it (Linux's cmdq->q.llq): PROD as it wrote it, CONS as it last
  // read it or learnt it from a CMD_SYNC's completion. CMDQ_PROD is never read back; CMDQ_CONS only when the
  // queue looks full or (without MSIPOLL) to see a CMD_SYNC pass.
  std::uint32_t prod_ = 0, cons_ = 0;
  MmioAccesses accesses_;
};

}  // namespace vsmmu::smmu::driver

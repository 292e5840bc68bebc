// The SMMUv3 programming interface (IHI 0070 chapter 6, 3.5, 7.1-7.5) shared by every SMMU this project
// implements: the software SMMU of the simulated host and the guest-facing VirtualSmmu. It holds the register
// state, decodes 4- and 8-byte MMIO accesses, reads the command queue, writes event records with overflow,
// raises global errors and signals interrupts. What an SMMU DOES with commands and configuration is its
// owner's: the owner is told through RegisterEffects.
//
// Not thread safe: the owner serialises every call (it holds its own lock) and fires the wired interrupts
// that take_pending_irqs() returns after releasing it.
#pragma once

#include <array>
#include <cstdint>
#include <span>

#include "smmu/command.hpp"
#include "base/error.hpp"
#include "smmu/event.hpp"
#include "smmu/memory.hpp"
#include "smmu/registers.hpp"

namespace vsmmu::smmu {

enum class Irq : std::uint8_t { eventq, gerror, cmd_sync, priq };

// What software's register writes ask the SMMU to do. Called with the owner's lock held, before the write
// returns (an SMMU that acts at once needs no separate ACK state: CR0ACK always equals CR0).
class RegisterEffects {
 public:
  // CMDQ_PROD written, CMDQEN set, or CMDQ_ERR acknowledged: commands may be waiting.
  virtual void commands_published() = 0;
  // CR0 changed (SMMUEN, EVENTQEN, ...).
  virtual void control_changed(Cr0 /*before*/, Cr0 /*after*/) {}
  // A GBPA write with Update = 1 took effect.
  virtual void bypass_changed(Gbpa /*now*/) {}
  // EVENTQ_CONS written: software freed records.
  virtual void events_consumed() {}
  // An MSI (IHI 0070 3.18) to an address the SMMU's memory does not take: not RAM, so a device's register such
  // as an interrupt controller's doorbell. The owner delivers it (a vSMMU hands it to its VMM) and returns
  // true; false leaves it undelivered, and the write aborts as on a bus with nothing there
  // (GERROR.MSI_*_ABT_ERR, IHI 0070 7.5), which is all an SMMU whose memory is its whole bus can do.
  virtual bool msi_outside_memory(std::uint64_t /*address*/, std::uint32_t /*data*/) { return false; }

 protected:
  ~RegisterEffects() = default;
};

struct RegisterFileCounters {
  std::uint64_t command_errors = 0;
  std::uint64_t events = 0;          // records written to the event queue
  std::uint64_t events_lost = 0;     // records discarded: queue full (overflow), disabled, or write aborted
  std::uint64_t syncs = 0;           // CMD_SYNCs completed
  std::uint64_t msis = 0;            // MSI writes made (into memory or handed to the owner)
  std::uint64_t msis_aborted = 0;    //   of which nobody took (MSI_*_ABT_ERR raised)
};

// The register state software programs and the SMMU updates, as raw register values (IHI 0070 6.3): what a
// migrating vSMMU carries to its destination. The ID registers are not in it (they are the SMMU's, fixed).
struct RegisterState {
  std::uint32_t CR0 = 0, CR1 = 0, CR2 = 0, GBPA = 0, IRQ_CTRL = 0, GERROR = 0, GERRORN = 0;
  std::uint64_t GERROR_IRQ_CFG0 = 0;
  std::uint32_t GERROR_IRQ_CFG1 = 0, GERROR_IRQ_CFG2 = 0;
  std::uint64_t STRTAB_BASE = 0;
  std::uint32_t STRTAB_BASE_CFG = 0;
  std::uint64_t CMDQ_BASE = 0;
  std::uint32_t CMDQ_PROD = 0, CMDQ_CONS = 0;
  std::uint64_t EVENTQ_BASE = 0;
  std::uint32_t EVENTQ_PROD = 0, EVENTQ_CONS = 0;
  std::uint64_t EVENTQ_IRQ_CFG0 = 0;
  std::uint32_t EVENTQ_IRQ_CFG1 = 0, EVENTQ_IRQ_CFG2 = 0;
  std::uint64_t PRIQ_BASE = 0;
  std::uint32_t PRIQ_PROD = 0, PRIQ_CONS = 0;
  std::uint64_t PRIQ_IRQ_CFG0 = 0;
  std::uint32_t PRIQ_IRQ_CFG1 = 0, PRIQ_IRQ_CFG2 = 0;
  bool operator==(const RegisterState&) const = default;
};

class RegisterFile {
 public:
  // `mem` is where the queues live (PA for a host SMMU, the guest's RAM for a vSMMU).
  RegisterFile(PhysicalMemory& mem, const IdRegisters& ids, RegisterEffects& effects, bool gbpa_abort_at_reset);

  // One MMIO access at `offset` from page 0: 4 or 8 bytes, naturally aligned, inside pages 0 and 1 (EINVAL
  // otherwise). Holes read as zero and ignore writes. An 8-byte access to two 32-bit registers acts on both,
  // low first. Returns the value read (for a write, the register's value before it).
  Result<std::uint64_t> access(std::uint64_t offset, unsigned size, const std::uint64_t* write_value);

  const IdRegisters& ids() const { return ids_; }
  // The programmed state, and setting it back all at once with no effect on the owner (no RegisterEffects
  // call, no interrupt): the owner then does what the state asks (a migrated vSMMU rebuilds its streams and
  // event queues). Values are kept to their writable fields, as writes would keep them.
  RegisterState state() const;
  void restore(const RegisterState& state);
  Cr0 cr0() const { return cr0_; }
  Cr1 cr1() const { return cr1_; }
  Cr2 cr2() const { return cr2_; }
  Gbpa gbpa() const { return gbpa_; }
  StrtabBase strtab_base() const { return strtab_base_; }
  StrtabBaseCfg strtab_base_cfg() const { return strtab_base_cfg_; }
  QueueBase eventq_base() const { return eventq_base_; }
  // Queue geometry: LOG2SIZE capped by IDR1.xQS (IHI 0070 6.3.26).
  QueueIndex cmdq_index() const;
  QueueIndex eventq_index() const;

  // ---- command queue (IHI 0070 3.5, 7.1)
  // Whether the SMMU consumes commands now: CMDQEN set and no command error waiting for GERRORN.
  bool cmdq_running() const;
  // Commands between CONS and PROD, in order (bits of PROD above the wrap bit are ignored).
  std::uint32_t cmdq_pending() const;
  // Reads up to out.size() pending commands from CONS; returns how many. Fewer than asked (and fewer than
  // pending) means the next one could not be fetched: the caller stops the queue with Cerror::abt.
  std::size_t read_commands(std::span<Command> out) const;
  // Marks n commands consumed: CONS moves past them.
  void cmdq_consume(std::uint32_t n);
  // Stops the queue at CONS with CMDQ_CONS.ERR = err and GERROR.CMDQ_ERR (IHI 0070 7.1).
  void command_error(Cerror err);
  // CMD_SYNC completion: CS=IRQ signals by MSI or the wired line; CS=SEV is an event to PEs (IHI 0070 4.7.3).
  void complete_sync(const Command& sync);

  // ---- event queue, global errors, interrupts (IHI 0070 7.2, 7.4, 7.5, 3.18)
  // Writes one record; false when it was lost (queue disabled, full: overflow, or the write aborted).
  bool record_event(const Event& event);
  bool eventq_full() const;
  // Records lost before reaching the queue (a vSMMU's host queue overflowed): the same overflow condition as
  // a full queue (IHI 0070 7.4).
  void events_lost(std::uint64_t count);
  void raise_gerror(Gerror errors);
  Gerror active_gerror() const { return Gerror::active(gerror_, gerrorn_); }
  // Wired interrupts raised since the last call (counts per Irq); the owner calls handlers outside its lock.
  std::array<unsigned, 4> take_pending_irqs() { return std::exchange(pending_irqs_, {}); }
  const RegisterFileCounters& counters() const { return counters_; }

 private:
  std::uint64_t read_register(std::uint32_t offset) const;
  void write_register(std::uint32_t offset, std::uint64_t value);
  std::uint64_t access_one(std::uint32_t offset, unsigned size, const std::uint64_t* write_value);
  std::uint64_t cmdq_address(std::uint32_t index) const;
  void signal(Irq line, IrqCfg0 msi_address, std::uint32_t msi_data, Gerror msi_abort);

  PhysicalMemory& mem_;
  const IdRegisters ids_;
  RegisterEffects& effects_;
  RegisterFileCounters counters_;

  Cr0 cr0_;
  Cr1 cr1_;
  Cr2 cr2_;
  Gbpa gbpa_;
  IrqCtrl irq_ctrl_;
  Gerror gerror_, gerrorn_;
  IrqCfg0 gerror_irq_cfg0_;
  IrqCfg1 gerror_irq_cfg1_;
  IrqCfg2 gerror_irq_cfg2_;
  StrtabBase strtab_base_;
  StrtabBaseCfg strtab_base_cfg_;
  QueueBase cmdq_base_;
  QueueProd cmdq_prod_;
  QueueCons cmdq_cons_;
  QueueBase eventq_base_;
  QueueProd eventq_prod_;
  QueueCons eventq_cons_;
  IrqCfg0 eventq_irq_cfg0_;
  IrqCfg1 eventq_irq_cfg1_;
  IrqCfg2 eventq_irq_cfg2_;
  QueueBase priq_base_;
  QueueProd priq_prod_;
  QueueCons priq_cons_;
  IrqCfg0 priq_irq_cfg0_;
  IrqCfg1 priq_irq_cfg1_;
  IrqCfg2 priq_irq_cfg2_;
  std::array<unsigned, 4> pending_irqs_{};
};

}  // namespace vsmmu::smmu

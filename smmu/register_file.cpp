// The SMMUv3 register file and queues (IHI 0070 6.3, 3.5, 7.1-7.5).
#include "smmu/register_file.hpp"

#include <algorithm>
#include <utility>

namespace vsmmu::smmu {
namespace {

constexpr const char* kWhere = "smmu.registers";

// The bits of a register that are writable state; the rest are RES0 and read as zero.
constexpr std::uint64_t kCr0Writable =
    mask_of<0>(Cr0::SMMUEN, Cr0::PRIQEN, Cr0::EVENTQEN, Cr0::CMDQEN, Cr0::ATSCHK, Cr0::VMW);
constexpr std::uint64_t kIrqCtrlWritable =
    mask_of<0>(IrqCtrl::GERROR_IRQEN, IrqCtrl::PRIQ_IRQEN, IrqCtrl::EVENTQ_IRQEN);
constexpr auto kProdWritable = static_cast<std::uint32_t>(mask_of<0>(QueueProd::WR, QueueProd::OVFLG));
constexpr auto kConsWritable = static_cast<std::uint32_t>(mask_of<0>(QueueCons::RD, QueueCons::OVACKFLG));
constexpr std::uint64_t kGbpaFields = mask_of<0>(Gbpa::MemAttr, Gbpa::MTCFG, Gbpa::ALLOCCFG, Gbpa::SHCFG,
                                                 Gbpa::PRIVCFG, Gbpa::INSTCFG, Gbpa::ABORT);

// A queue is aligned to its size, at least 32 bytes (IHI 0070 6.3.26).
std::uint64_t queue_base(QueueBase base, QueueIndex q, unsigned entry_log2) {
  const unsigned align = std::max(5U, q.log2size + entry_log2);
  return base.get(QueueBase::ADDR) & ~((1ULL << align) - 1);
}

}  // namespace

RegisterFile::RegisterFile(PhysicalMemory& mem, const IdRegisters& ids, RegisterEffects& effects,
                           bool gbpa_abort_at_reset)
    : mem_(mem), ids_(ids), effects_(effects) {
  gbpa_.set(Gbpa::SHCFG, 1).set(Gbpa::ABORT, gbpa_abort_at_reset);  // SHCFG: use incoming
}

QueueIndex RegisterFile::cmdq_index() const {
  return QueueIndex{static_cast<unsigned>(std::min(cmdq_base_.get(QueueBase::LOG2SIZE), ids_.idr1.get(Idr1::CMDQS)))};
}
QueueIndex RegisterFile::eventq_index() const {
  return QueueIndex{
      static_cast<unsigned>(std::min(eventq_base_.get(QueueBase::LOG2SIZE), ids_.idr1.get(Idr1::EVENTQS)))};
}

// ---- state -----------------------------------------------------------------------------------------

RegisterState RegisterFile::state() const {
  RegisterState s;
  s.CR0 = cr0_.value();
  s.CR1 = cr1_.value();
  s.CR2 = cr2_.value();
  s.GBPA = gbpa_.value();
  s.IRQ_CTRL = irq_ctrl_.value();
  s.GERROR = gerror_.value();
  s.GERRORN = gerrorn_.value();
  s.GERROR_IRQ_CFG0 = gerror_irq_cfg0_.value();
  s.GERROR_IRQ_CFG1 = gerror_irq_cfg1_.value();
  s.GERROR_IRQ_CFG2 = gerror_irq_cfg2_.value();
  s.STRTAB_BASE = strtab_base_.value();
  s.STRTAB_BASE_CFG = strtab_base_cfg_.value();
  s.CMDQ_BASE = cmdq_base_.value();
  s.CMDQ_PROD = cmdq_prod_.value();
  s.CMDQ_CONS = cmdq_cons_.value();
  s.EVENTQ_BASE = eventq_base_.value();
  s.EVENTQ_PROD = eventq_prod_.value();
  s.EVENTQ_CONS = eventq_cons_.value();
  s.EVENTQ_IRQ_CFG0 = eventq_irq_cfg0_.value();
  s.EVENTQ_IRQ_CFG1 = eventq_irq_cfg1_.value();
  s.EVENTQ_IRQ_CFG2 = eventq_irq_cfg2_.value();
  s.PRIQ_BASE = priq_base_.value();
  s.PRIQ_PROD = priq_prod_.value();
  s.PRIQ_CONS = priq_cons_.value();
  s.PRIQ_IRQ_CFG0 = priq_irq_cfg0_.value();
  s.PRIQ_IRQ_CFG1 = priq_irq_cfg1_.value();
  s.PRIQ_IRQ_CFG2 = priq_irq_cfg2_.value();
  return s;
}

void RegisterFile::restore(const RegisterState& s) {
  const bool pri = ids_.idr0.get(Idr0::PRI);
  cr0_ = Cr0::of(static_cast<std::uint32_t>(s.CR0 & kCr0Writable));
  if (!pri) cr0_.set(Cr0::PRIQEN, false);
  cr1_ = Cr1::of(s.CR1);
  cr2_ = Cr2::of(s.CR2);
  gbpa_ = Gbpa::of(static_cast<std::uint32_t>(s.GBPA & kGbpaFields));
  irq_ctrl_ = IrqCtrl::of(static_cast<std::uint32_t>(s.IRQ_CTRL & kIrqCtrlWritable));
  if (!pri) irq_ctrl_.set(IrqCtrl::PRIQ_IRQEN, false);
  gerror_ = Gerror::of(s.GERROR & Gerror::kErrorMask);
  gerrorn_ = Gerror::of(s.GERRORN & Gerror::kErrorMask);
  gerror_irq_cfg0_ = IrqCfg0::of(s.GERROR_IRQ_CFG0);
  gerror_irq_cfg1_ = IrqCfg1::of(s.GERROR_IRQ_CFG1);
  gerror_irq_cfg2_ = IrqCfg2::of(s.GERROR_IRQ_CFG2);
  strtab_base_ = StrtabBase::of(s.STRTAB_BASE);
  strtab_base_cfg_ = StrtabBaseCfg::of(s.STRTAB_BASE_CFG);
  cmdq_base_ = QueueBase::of(s.CMDQ_BASE);
  cmdq_prod_ = QueueProd{}.set(QueueProd::WR, QueueProd::of(s.CMDQ_PROD).get(QueueProd::WR));
  cmdq_cons_ = QueueCons::of(s.CMDQ_CONS & static_cast<std::uint32_t>(mask_of<0>(QueueCons::RD, QueueCons::ERR)));
  eventq_base_ = QueueBase::of(s.EVENTQ_BASE);
  eventq_prod_ = QueueProd::of(s.EVENTQ_PROD & kProdWritable);
  eventq_cons_ = QueueCons::of(s.EVENTQ_CONS & kConsWritable);
  eventq_irq_cfg0_ = IrqCfg0::of(s.EVENTQ_IRQ_CFG0);
  eventq_irq_cfg1_ = IrqCfg1::of(s.EVENTQ_IRQ_CFG1);
  eventq_irq_cfg2_ = IrqCfg2::of(s.EVENTQ_IRQ_CFG2);
  priq_base_ = QueueBase::of(pri ? s.PRIQ_BASE : 0);
  priq_prod_ = QueueProd::of(pri ? s.PRIQ_PROD & kProdWritable : 0);
  priq_cons_ = QueueCons::of(pri ? s.PRIQ_CONS & kConsWritable : 0);
  priq_irq_cfg0_ = IrqCfg0::of(pri ? s.PRIQ_IRQ_CFG0 : 0);
  priq_irq_cfg1_ = IrqCfg1::of(pri ? s.PRIQ_IRQ_CFG1 : 0);
  priq_irq_cfg2_ = IrqCfg2::of(pri ? s.PRIQ_IRQ_CFG2 : 0);
}

// ---- MMIO ------------------------------------------------------------------------------------------------

Result<std::uint64_t> RegisterFile::access(std::uint64_t offset, unsigned size, const std::uint64_t* write_value) {
  if (size != 4 && size != 8) return fail(EINVAL, kWhere, "MMIO access of {} bytes: only 4 and 8 are supported", size);
  if (offset % size != 0) return fail(EINVAL, kWhere, "MMIO access at {:#x} is not {}-byte aligned", offset, size);
  if (offset > kRegisterSpace - size)
    return fail(EINVAL, kWhere, "MMIO access at {:#x} is outside the SMMU's two 64KB pages", offset);
  auto off = static_cast<std::uint32_t>(offset);
  auto info = register_info(off);
  if (size == 8 && (!info || info->width != 64 || info->offset != off)) {
    // Two 32-bit registers (or holes) accessed at once: each half on its own, low first.
    std::uint64_t hi_value = write_value ? *write_value >> 32 : 0;
    std::uint64_t result = access_one(off, 4, write_value);
    return result | access_one(off + 4, 4, write_value ? &hi_value : nullptr) << 32;
  }
  return access_one(off, size, write_value);
}

// Without PRI (IDR0.PRI = 0) the PRI queue's registers are RES0 (IHI 0070 6.3.30-6.3.34, 6.3.97, 6.3.98).
static bool is_priq_register(std::uint32_t offset) {
  switch (offset) {
    case regs::PRIQ_BASE.offset:
    case regs::PRIQ_IRQ_CFG0.offset:
    case regs::PRIQ_IRQ_CFG1.offset:
    case regs::PRIQ_IRQ_CFG2.offset:
    case regs::PRIQ_PROD.offset:
    case regs::PRIQ_CONS.offset: return true;
    default: return false;
  }
}

// One access of 4 bytes, or of 8 bytes to the start of a 64-bit register. Holes are RAZ/WI.
std::uint64_t RegisterFile::access_one(std::uint32_t offset, unsigned size, const std::uint64_t* write_value) {
  auto info = register_info(offset);
  if (!info) return 0;
  if (!ids_.idr0.get(Idr0::PRI) && is_priq_register(info->offset)) return 0;
  const unsigned shift = 8 * (offset - info->offset);  // 32 for the upper half of a 64-bit register
  const std::uint64_t lane = size == 8 ? ~0ULL : 0xffffffffULL;
  std::uint64_t current = read_register(info->offset);
  if (write_value) write_register(info->offset, (current & ~(lane << shift)) | ((*write_value & lane) << shift));
  return (current >> shift) & lane;
}

// The value of a whole register (64-bit ones in full).
std::uint64_t RegisterFile::read_register(std::uint32_t offset) const {
  switch (offset) {
    case regs::IDR0.offset: return ids_.idr0.value();
    case regs::IDR1.offset: return ids_.idr1.value();
    case regs::IDR2.offset: return ids_.idr2.value();
    case regs::IDR3.offset: return ids_.idr3.value();
    case regs::IDR4.offset: return ids_.idr4.value();
    case regs::IDR5.offset: return ids_.idr5.value();
    case regs::IIDR.offset: return ids_.iidr.value();
    case regs::AIDR.offset: return ids_.aidr.value();
    case regs::CR0.offset:
    case regs::CR0ACK.offset: return cr0_.value();
    case regs::CR1.offset: return cr1_.value();
    case regs::CR2.offset: return cr2_.value();
    case regs::GBPA.offset: return gbpa_.value();
    case regs::IRQ_CTRL.offset:
    case regs::IRQ_CTRLACK.offset: return irq_ctrl_.value();
    case regs::GERROR.offset: return gerror_.value();
    case regs::GERRORN.offset: return gerrorn_.value();
    case regs::GERROR_IRQ_CFG0.offset: return gerror_irq_cfg0_.value();
    case regs::GERROR_IRQ_CFG1.offset: return gerror_irq_cfg1_.value();
    case regs::GERROR_IRQ_CFG2.offset: return gerror_irq_cfg2_.value();
    case regs::STRTAB_BASE.offset: return strtab_base_.value();
    case regs::STRTAB_BASE_CFG.offset: return strtab_base_cfg_.value();
    case regs::CMDQ_BASE.offset: return cmdq_base_.value();
    case regs::CMDQ_PROD.offset: return cmdq_prod_.value();
    case regs::CMDQ_CONS.offset: return cmdq_cons_.value();
    case regs::EVENTQ_BASE.offset: return eventq_base_.value();
    case regs::EVENTQ_IRQ_CFG0.offset: return eventq_irq_cfg0_.value();
    case regs::EVENTQ_IRQ_CFG1.offset: return eventq_irq_cfg1_.value();
    case regs::EVENTQ_IRQ_CFG2.offset: return eventq_irq_cfg2_.value();
    case regs::EVENTQ_PROD.offset: return eventq_prod_.value();
    case regs::EVENTQ_CONS.offset: return eventq_cons_.value();
    case regs::PRIQ_BASE.offset: return priq_base_.value();
    case regs::PRIQ_IRQ_CFG0.offset: return priq_irq_cfg0_.value();
    case regs::PRIQ_IRQ_CFG1.offset: return priq_irq_cfg1_.value();
    case regs::PRIQ_IRQ_CFG2.offset: return priq_irq_cfg2_.value();
    case regs::PRIQ_PROD.offset: return priq_prod_.value();
    case regs::PRIQ_CONS.offset: return priq_cons_.value();
    default: return 0;  // STATUSR (never DORMANT), AGBPA (no alternate attributes), GATOS (no ATOS)
  }
}

// A write of a whole register's new value, with its side effects. Read-only registers ignore writes.
void RegisterFile::write_register(std::uint32_t offset, std::uint64_t v) {
  const auto v32 = static_cast<std::uint32_t>(v);
  const bool smmu_enabled = cr0_.get(Cr0::SMMUEN);
  switch (offset) {
    case regs::CR0.offset: {
      const Cr0 before = cr0_;
      cr0_ = Cr0::of(static_cast<std::uint32_t>(v32 & kCr0Writable));
      if (!ids_.idr0.get(Idr0::PRI)) cr0_.set(Cr0::PRIQEN, false);  // RES0 without PRI (IHI 0070 6.3.9)
      // CR0ACK follows at once. Enabling the command queue starts consumption of what is already there.
      if (before.value() != cr0_.value()) effects_.control_changed(before, cr0_);
      if (!before.get(Cr0::CMDQEN) && cr0_.get(Cr0::CMDQEN)) effects_.commands_published();
      return;
    }
    case regs::CR1.offset:
      // CR1 and CR2 may change only while the SMMU is disabled (IHI 0070 6.3.11, 6.3.12).
      if (!smmu_enabled) cr1_ = Cr1::of(v32);
      return;
    case regs::CR2.offset:
      if (!smmu_enabled) cr2_ = Cr2::of(v32);
      return;
    case regs::GBPA.offset:
      // Only a write with Update = 1 changes the attributes; the change completes at once, so Update
      // reads back as 0 (IHI 0070 6.3.14).
      if (Gbpa::of(v32).get(Gbpa::Update)) {
        gbpa_ = Gbpa::of(static_cast<std::uint32_t>(v32 & kGbpaFields));
        effects_.bypass_changed(gbpa_);
      }
      return;
    case regs::IRQ_CTRL.offset:
      irq_ctrl_ = IrqCtrl::of(static_cast<std::uint32_t>(v32 & kIrqCtrlWritable));
      if (!ids_.idr0.get(Idr0::PRI)) irq_ctrl_.set(IrqCtrl::PRIQ_IRQEN, false);  // RES0 without PRI (6.3.16)
      return;
    case regs::GERRORN.offset: {
      const bool was_stopped = active_gerror().get(Gerror::CMDQ_ERR);
      gerrorn_ = Gerror::of(v32 & Gerror::kErrorMask);
      // Acknowledging CMDQ_ERR lets the queue run again from CONS, the failed command's slot (IHI 0070 7.1).
      if (was_stopped && !active_gerror().get(Gerror::CMDQ_ERR)) effects_.commands_published();
      return;
    }
    case regs::GERROR_IRQ_CFG0.offset: gerror_irq_cfg0_ = IrqCfg0::of(v); return;
    case regs::GERROR_IRQ_CFG1.offset: gerror_irq_cfg1_ = IrqCfg1::of(v32); return;
    case regs::GERROR_IRQ_CFG2.offset: gerror_irq_cfg2_ = IrqCfg2::of(v32); return;
    // The stream table base registers are read-only while the SMMU is enabled (IHI 0070 6.3.24).
    case regs::STRTAB_BASE.offset:
      if (!smmu_enabled) strtab_base_ = StrtabBase::of(v);
      return;
    case regs::STRTAB_BASE_CFG.offset:
      if (!smmu_enabled) strtab_base_cfg_ = StrtabBaseCfg::of(v32);
      return;
    // A queue's base and CONS (PROD for the event queue) are read-only while the queue is enabled.
    case regs::CMDQ_BASE.offset:
      if (!cr0_.get(Cr0::CMDQEN)) cmdq_base_ = QueueBase::of(v);
      return;
    case regs::CMDQ_PROD.offset:
      cmdq_prod_ = QueueProd{}.set(QueueProd::WR, QueueProd::of(v32).get(QueueProd::WR));
      effects_.commands_published();
      return;
    case regs::CMDQ_CONS.offset:
      if (!cr0_.get(Cr0::CMDQEN)) cmdq_cons_.set(QueueCons::RD, QueueCons::of(v32).get(QueueCons::RD));
      return;
    case regs::EVENTQ_BASE.offset:
      if (!cr0_.get(Cr0::EVENTQEN)) eventq_base_ = QueueBase::of(v);
      return;
    case regs::EVENTQ_IRQ_CFG0.offset: eventq_irq_cfg0_ = IrqCfg0::of(v); return;
    case regs::EVENTQ_IRQ_CFG1.offset: eventq_irq_cfg1_ = IrqCfg1::of(v32); return;
    case regs::EVENTQ_IRQ_CFG2.offset: eventq_irq_cfg2_ = IrqCfg2::of(v32); return;
    case regs::EVENTQ_PROD.offset:
      if (!cr0_.get(Cr0::EVENTQEN)) eventq_prod_ = QueueProd::of(v32 & kProdWritable);
      return;
    case regs::EVENTQ_CONS.offset:
      // Software frees records and acknowledges an overflow through CONS (IHI 0070 7.4).
      eventq_cons_ = QueueCons::of(v32 & kConsWritable);
      effects_.events_consumed();
      return;
    case regs::PRIQ_BASE.offset:
      if (!cr0_.get(Cr0::PRIQEN)) priq_base_ = QueueBase::of(v);
      return;
    case regs::PRIQ_IRQ_CFG0.offset: priq_irq_cfg0_ = IrqCfg0::of(v); return;
    case regs::PRIQ_IRQ_CFG1.offset: priq_irq_cfg1_ = IrqCfg1::of(v32); return;
    case regs::PRIQ_IRQ_CFG2.offset: priq_irq_cfg2_ = IrqCfg2::of(v32); return;
    case regs::PRIQ_PROD.offset:
      if (!cr0_.get(Cr0::PRIQEN)) priq_prod_ = QueueProd::of(v32 & kProdWritable);
      return;
    case regs::PRIQ_CONS.offset: priq_cons_ = QueueCons::of(v32 & kConsWritable); return;
    default: return;  // ID registers, ACKs, GERROR, STATUSR, AGBPA, GATOS: read-only here
  }
}

// ---- command queue -----------------------------------------------------------------------------------

bool RegisterFile::cmdq_running() const { return cr0_.get(Cr0::CMDQEN) && !active_gerror().get(Gerror::CMDQ_ERR); }

std::uint32_t RegisterFile::cmdq_pending() const {
  const QueueIndex q = cmdq_index();
  return q.count(q.advance(cmdq_prod_.get(QueueProd::WR), 0), q.advance(cmdq_cons_.get(QueueCons::RD), 0));
}

std::uint64_t RegisterFile::cmdq_address(std::uint32_t index) const {
  const QueueIndex q = cmdq_index();
  return queue_base(cmdq_base_, q, 4) + std::uint64_t{q.index(index)} * Command::bytes;
}

std::size_t RegisterFile::read_commands(std::span<Command> out) const {
  const QueueIndex q = cmdq_index();
  const std::uint32_t cons = q.advance(cmdq_cons_.get(QueueCons::RD), 0);
  const std::size_t n = std::min<std::size_t>(out.size(), cmdq_pending());
  std::size_t done = 0;
  // Contiguous runs up to the end of the queue, then from its start: one memory access per run.
  while (done < n) {
    const std::uint32_t at = q.advance(cons, static_cast<std::uint32_t>(done));
    const std::size_t run = std::min<std::size_t>(n - done, q.entries() - q.index(at));
    auto bytes = std::as_writable_bytes(out.subspan(done, run));
    if (mem_.read(cmdq_address(at), bytes)) {
      done += run;
      continue;
    }
    // Some entry of the run is unreadable: take the readable ones before it, one by one.
    for (std::size_t i = 0; i < run; ++i) {
      auto cmd = mem_.read_record<Command>(cmdq_address(q.advance(at, static_cast<std::uint32_t>(i))));
      if (!cmd) return done + i;
      out[done + i] = *cmd;
    }
    done += run;
  }
  return n;
}

void RegisterFile::cmdq_consume(std::uint32_t n) {
  const QueueIndex q = cmdq_index();
  cmdq_cons_.set(QueueCons::RD, q.advance(q.advance(cmdq_cons_.get(QueueCons::RD), 0), n));
}

void RegisterFile::command_error(Cerror err) {
  ++counters_.command_errors;
  cmdq_cons_.set(QueueCons::ERR, err);
  raise_gerror(Gerror{}.set(Gerror::CMDQ_ERR, true));
}

void RegisterFile::complete_sync(const Command& sync) {
  ++counters_.syncs;
  if (sync.get(Command::CS) != SyncCs::irq) return;
  signal(Irq::cmd_sync, IrqCfg0{}.set(IrqCfg0::ADDR, sync.get(Command::MSIAddr)), sync.get(Command::MSIData),
         Gerror{}.set(Gerror::MSI_CMDQ_ABT_ERR, true));
}

// ---- event queue, errors, interrupts --------------------------------------------------------------------

bool RegisterFile::eventq_full() const {
  const QueueIndex q = eventq_index();
  return q.full(q.advance(eventq_prod_.get(QueueProd::WR), 0), q.advance(eventq_cons_.get(QueueCons::RD), 0));
}

bool RegisterFile::record_event(const Event& event) {
  // With the queue disabled, events are discarded (IHI 0070 6.3.9 EVENTQEN).
  if (!cr0_.get(Cr0::EVENTQEN)) {
    ++counters_.events_lost;
    return false;
  }
  const QueueIndex q = eventq_index();
  const std::uint32_t prod = q.advance(eventq_prod_.get(QueueProd::WR), 0);
  if (eventq_full()) {
    events_lost(1);  // full: the record is lost
    return false;
  }
  if (!mem_.write_record(queue_base(eventq_base_, q, 5) + q.index(prod) * Event::bytes, event)) {
    raise_gerror(Gerror{}.set(Gerror::EVTQ_ABT_ERR, true));
    ++counters_.events_lost;
    return false;
  }
  eventq_prod_.set(QueueProd::WR, q.advance(prod));
  ++counters_.events;
  if (irq_ctrl_.get(IrqCtrl::EVENTQ_IRQEN))
    signal(Irq::eventq, eventq_irq_cfg0_, eventq_irq_cfg1_.get(IrqCfg1::DATA),
           Gerror{}.set(Gerror::MSI_EVTQ_ABT_ERR, true));
  return true;
}

void RegisterFile::events_lost(std::uint64_t count) {
  if (count == 0) return;
  // Entering the overflow condition toggles PROD.OVFLG so it differs from CONS.OVACKFLG; while that is
  // unacknowledged, further losses change nothing (IHI 0070 7.4).
  if (eventq_prod_.get(QueueProd::OVFLG) == eventq_cons_.get(QueueCons::OVACKFLG))
    eventq_prod_.set(QueueProd::OVFLG, !eventq_prod_.get(QueueProd::OVFLG));
  counters_.events_lost += count;
}

void RegisterFile::raise_gerror(Gerror errors) {
  // Only errors not already active toggle (IHI 0070 7.5).
  const std::uint32_t fresh = errors.value() & ~active_gerror().value() & Gerror::kErrorMask;
  if (fresh == 0) return;
  gerror_ = Gerror::of(gerror_.value() ^ fresh);
  if (irq_ctrl_.get(IrqCtrl::GERROR_IRQEN))
    signal(Irq::gerror, gerror_irq_cfg0_, gerror_irq_cfg1_.get(IrqCfg1::DATA),
           Gerror{}.set(Gerror::MSI_GERROR_ABT_ERR, true));
}

// An interrupt: an MSI when the SMMU implements them and software gave an address, else the wired line
// (IHI 0070 3.18). The MSI is a 32-bit write of the data: into memory when the address is memory (a CMD_SYNC
// completion a driver polls, Linux's MSIPOLL), else to the owner (msi_outside_memory). A write nobody takes
// aborts, a global error of its own (IHI 0070 7.5).
void RegisterFile::signal(Irq line, IrqCfg0 msi_address, std::uint32_t msi_data, Gerror msi_abort) {
  const std::uint64_t addr = msi_address.get(IrqCfg0::ADDR);
  if (ids_.idr0.get(Idr0::MSI) && addr != 0) {
    ++counters_.msis;
    if (mem_.write32(addr, msi_data) || effects_.msi_outside_memory(addr, msi_data)) return;
    ++counters_.msis_aborted;
    raise_gerror(msi_abort);
    return;
  }
  ++pending_irqs_[static_cast<std::size_t>(line)];
}

}  // namespace vsmmu::smmu

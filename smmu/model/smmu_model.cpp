// SmmuModel: construction, the register file and its side effects (IHI 0070 6.3), and the DMA entry points.
#include "smmu/model/smmu_model.hpp"

#include <algorithm>
#include <cstring>

namespace vsmmu::smmu::model {
namespace {

constexpr const char* kWhere = "smmu.model";

// The bits of a register that are writable state; the rest are RES0 and read as zero.
constexpr std::uint64_t kCr0Writable =
    mask_of<0>(Cr0::SMMUEN, Cr0::PRIQEN, Cr0::EVENTQEN, Cr0::CMDQEN, Cr0::ATSCHK, Cr0::VMW);
constexpr std::uint64_t kIrqCtrlWritable =
    mask_of<0>(IrqCtrl::GERROR_IRQEN, IrqCtrl::PRIQ_IRQEN, IrqCtrl::EVENTQ_IRQEN);
constexpr auto kProdWritable = static_cast<std::uint32_t>(mask_of<0>(QueueProd::WR, QueueProd::OVFLG));
constexpr auto kConsWritable = static_cast<std::uint32_t>(mask_of<0>(QueueCons::RD, QueueCons::OVACKFLG));
constexpr std::uint64_t kGbpaFields = mask_of<0>(Gbpa::MemAttr, Gbpa::MTCFG, Gbpa::ALLOCCFG, Gbpa::SHCFG,
                                                 Gbpa::PRIVCFG, Gbpa::INSTCFG, Gbpa::ABORT);

DmaFault bus_error(std::uint64_t iova) { return DmaFault::without_event(DmaOutcome::bus_error, iova); }

}  // namespace

ModelConfig ModelConfig::reference() {
  ModelConfig c;
  c.idr0.set(Idr0::S2P, true)
      .set(Idr0::S1P, true)
      .set(Idr0::TTF, Ttf::aarch64)
      .set(Idr0::COHACC, true)
      .set(Idr0::HTTU, Httu::access_dirty)
      .set(Idr0::ASID16, true)
      .set(Idr0::MSI, true)
      .set(Idr0::SEV, true)
      .set(Idr0::VMID16, true)
      .set(Idr0::CD2L, true)
      .set(Idr0::TTENDIAN, TtEndian::little)
      .set(Idr0::STALL_MODEL, StallModel::terminate)
      .set(Idr0::TERM_MODEL, true)
      .set(Idr0::ST_LEVEL, StLevel::two_level);
  c.idr1.set(Idr1::SIDSIZE, 16).set(Idr1::SSIDSIZE, 20).set(Idr1::EVENTQS, 19).set(Idr1::CMDQS, 19);
  c.idr3.set(Idr3::FWB, true).set(Idr3::RIL, true).set(Idr3::BBML, 2);
  c.idr5.set(Idr5::OAS, Oas::bits48).set(Idr5::GRAN4K, true).set(Idr5::GRAN16K, true).set(Idr5::GRAN64K, true);
  c.aidr.set(Aidr::ArchMinorRev, 2);  // SMMUv3.2: RIL and the TTL/TG hints
  return c;
}

Result<std::unique_ptr<SmmuModel>> SmmuModel::create(PhysicalMemory& mem, const ModelConfig& config) {
  const auto& i0 = config.idr0;
  const auto& i1 = config.idr1;
  const auto& i5 = config.idr5;
  if (!i0.get(Idr0::S1P) && !i0.get(Idr0::S2P))
    return fail(EINVAL, kWhere, "IDR0 implements neither stage 1 nor stage 2 (S1P = S2P = 0)");
  if (i0.get(Idr0::TTF) != Ttf::aarch64)
    return fail(EINVAL, kWhere, "IDR0.TTF must be AArch64 only: the model walks no VMSAv8-32 tables");
  if (i0.get(Idr0::TTENDIAN) != TtEndian::little)
    return fail(EINVAL, kWhere, "IDR0.TTENDIAN must be little-endian only: the model walks no big-endian tables");
  if (i0.get(Idr0::ST_LEVEL) != StLevel::linear && i0.get(Idr0::ST_LEVEL) != StLevel::two_level)
    return fail(EINVAL, kWhere, "IDR0.ST_LEVEL {} is reserved", i0.raw(Idr0::ST_LEVEL));
  if (i0.get(Idr0::STALL_MODEL) == StallModel::reserved) return fail(EINVAL, kWhere, "IDR0.STALL_MODEL is reserved");
  if (i1.get(Idr1::SIDSIZE) > 32) return fail(EINVAL, kWhere, "IDR1.SIDSIZE {} exceeds 32", i1.get(Idr1::SIDSIZE));
  if (i1.get(Idr1::SSIDSIZE) > 20) return fail(EINVAL, kWhere, "IDR1.SSIDSIZE {} exceeds 20", i1.get(Idr1::SSIDSIZE));
  if (i1.get(Idr1::CMDQS) > 19 || i1.get(Idr1::EVENTQS) > 19 || i1.get(Idr1::PRIQS) > 19)
    return fail(EINVAL, kWhere, "IDR1 queue sizes are at most 2^19 entries");
  if (!i5.get(Idr5::GRAN4K) && !i5.get(Idr5::GRAN16K) && !i5.get(Idr5::GRAN64K))
    return fail(EINVAL, kWhere, "IDR5 implements no translation granule");
  if (i5.oas_bits() > 52)
    return fail(EINVAL, kWhere, "IDR5.OAS of {} bits: the model implements at most 52", i5.oas_bits());
  if (i5.get(Idr5::DS) || i5.get(Idr5::D128))
    return fail(EINVAL, kWhere, "IDR5.DS / IDR5.D128: LPA2 and 128-bit descriptors are not modelled");
  if (i5.get(Idr5::VAX) != Vax::va48 && i5.get(Idr5::VAX) != Vax::va52)
    return fail(EINVAL, kWhere, "IDR5.VAX {} is not modelled", i5.raw(Idr5::VAX));
  return std::unique_ptr<SmmuModel>(new SmmuModel(mem, config));
}

SmmuModel::SmmuModel(PhysicalMemory& mem, const ModelConfig& config)
    : mem_(mem),
      config_(config),
      walker_(mem),
      tlb_(config.tlb_entries),
      config_cache_(config.cached_streams, config.cached_contexts) {
  const auto httu = config.idr0.get(Idr0::HTTU);
  caps_.oas_bits = config.idr5.oas_bits();
  caps_.gran4k = config.idr5.get(Idr5::GRAN4K);
  caps_.gran16k = config.idr5.get(Idr5::GRAN16K);
  caps_.gran64k = config.idr5.get(Idr5::GRAN64K);
  caps_.httu_access = httu != Httu::none;
  caps_.httu_dirty = httu == Httu::access_dirty || httu == Httu::access_dirty_table;
  caps_.vax = config.idr5.get(Idr5::VAX) == Vax::va52;
  caps_.stt = config.idr3.get(Idr3::STT);
  caps_.xnx = config.idr3.get(Idr3::XNX);
  gbpa_.set(Gbpa::SHCFG, 1).set(Gbpa::ABORT, config.gbpa_abort_at_reset);  // SHCFG: use incoming
  // Queue bases reset with LOG2SIZE at its maximum is common; zero is as valid and simpler to reason about.
}

// ---- registers ----------------------------------------------------------------------------------------

QueueIndex SmmuModel::cmdq_index() const {
  return QueueIndex{
      static_cast<unsigned>(std::min(cmdq_base_.get(QueueBase::LOG2SIZE), config_.idr1.get(Idr1::CMDQS)))};
}
QueueIndex SmmuModel::eventq_index() const {
  return QueueIndex{
      static_cast<unsigned>(std::min(eventq_base_.get(QueueBase::LOG2SIZE), config_.idr1.get(Idr1::EVENTQS)))};
}

bool SmmuModel::cmdq_error_active() const { return Gerror::active(gerror_, gerrorn_).get(Gerror::CMDQ_ERR); }

// The value of a whole register (64-bit ones in full).
std::uint64_t SmmuModel::read_register(std::uint32_t offset) const {
  switch (offset) {
    case regs::IDR0.offset: return config_.idr0.value();
    case regs::IDR1.offset: return config_.idr1.value();
    case regs::IDR2.offset: return config_.idr2.value();
    case regs::IDR3.offset: return config_.idr3.value();
    case regs::IDR4.offset: return config_.idr4.value();
    case regs::IDR5.offset: return config_.idr5.value();
    case regs::IIDR.offset: return config_.iidr.value();
    case regs::AIDR.offset: return config_.aidr.value();
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
void SmmuModel::write_register(std::uint32_t offset, std::uint64_t v) {
  const auto v32 = static_cast<std::uint32_t>(v);
  const bool smmu_enabled = cr0_.get(Cr0::SMMUEN);
  switch (offset) {
    case regs::CR0.offset: {
      const bool cmdq_was_enabled = cr0_.get(Cr0::CMDQEN);
      cr0_ = Cr0::of(static_cast<std::uint32_t>(v32 & kCr0Writable));
      // CR0ACK follows at once. Enabling the command queue starts consumption of what is already there.
      if (!cmdq_was_enabled && cr0_.get(Cr0::CMDQEN)) consume_commands();
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
      // Only a write with Update = 1 changes the attributes; the model completes it at once, so Update
      // reads back as 0 (IHI 0070 6.3.14).
      if (Gbpa::of(v32).get(Gbpa::Update)) gbpa_ = Gbpa::of(static_cast<std::uint32_t>(v32 & kGbpaFields));
      return;
    case regs::IRQ_CTRL.offset: irq_ctrl_ = IrqCtrl::of(static_cast<std::uint32_t>(v32 & kIrqCtrlWritable)); return;
    case regs::GERRORN.offset: {
      const bool was_stopped = cmdq_error_active();
      gerrorn_ = Gerror::of(v32 & Gerror::kErrorMask);
      // Acknowledging CMDQ_ERR lets the queue run again from CONS, the failed command's slot (IHI 0070 7.1).
      if (was_stopped && !cmdq_error_active()) consume_commands();
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
      consume_commands();
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
    case regs::PRIQ_CONS.offset:
      priq_cons_ = QueueCons::of(v32 & kConsWritable);
      return;
    default: return;  // ID registers, ACKs, GERROR, STATUSR, AGBPA, GATOS: read-only here
  }
}

// One access of 4 bytes, or of 8 bytes to the start of a 64-bit register. Holes are RAZ/WI.
std::uint64_t SmmuModel::access(std::uint32_t offset, unsigned size, const std::uint64_t* write_value) {
  auto info = register_info(offset);
  if (!info) return 0;
  const unsigned shift = 8 * (offset - info->offset);  // 32 for the upper half of a 64-bit register
  const std::uint64_t lane = size == 8 ? ~0ULL : 0xffffffffULL;
  std::uint64_t current = read_register(info->offset);
  if (write_value) write_register(info->offset, (current & ~(lane << shift)) | ((*write_value & lane) << shift));
  return (current >> shift) & lane;
}

Result<std::uint64_t> SmmuModel::mmio_read(std::uint64_t offset, unsigned size) {
  return mmio(offset, size, nullptr);
}

Result<void> SmmuModel::mmio_write(std::uint64_t offset, std::uint64_t value, unsigned size) {
  if (auto r = mmio(offset, size, &value); !r) return std::unexpected(r.error());
  return {};
}

Result<std::uint64_t> SmmuModel::mmio(std::uint64_t offset, unsigned size, const std::uint64_t* write_value) {
  if (size != 4 && size != 8) return fail(EINVAL, kWhere, "MMIO access of {} bytes: only 4 and 8 are supported", size);
  if (offset % size != 0) return fail(EINVAL, kWhere, "MMIO access at {:#x} is not {}-byte aligned", offset, size);
  if (offset > kRegisterSpace - size)
    return fail(EINVAL, kWhere, "MMIO access at {:#x} is outside the SMMU's two 64KB pages", offset);
  auto off = static_cast<std::uint32_t>(offset);
  std::unique_lock lock(mu_);
  std::uint64_t result = 0;
  auto info = register_info(off);
  if (size == 8 && (!info || info->width != 64 || info->offset != off)) {
    // Two 32-bit registers (or holes) accessed at once: each half on its own, low first.
    std::uint64_t hi_value = write_value ? *write_value >> 32 : 0;
    result = access(off, 4, write_value);
    result |= access(off + 4, 4, write_value ? &hi_value : nullptr) << 32;
  } else {
    result = access(off, size, write_value);
  }
  unlock_and_fire(lock);
  return result;
}


// ---- interrupts, introspection -------------------------------------------------------------------------

void SmmuModel::set_irq_handler(Irq line, std::function<void()> handler) {
  std::lock_guard lock(mu_);
  irq_handlers_[static_cast<std::size_t>(line)] = std::move(handler);
}

void SmmuModel::unlock_and_fire(std::unique_lock<std::mutex>& lock) {
  auto pending = std::exchange(pending_irqs_, {});
  if (std::ranges::all_of(pending, [](unsigned n) { return n == 0; })) return;
  auto handlers = irq_handlers_;
  lock.unlock();  // a handler may well read a register
  for (std::size_t line = 0; line < pending.size(); ++line)
    for (unsigned n = 0; n < pending[line]; ++n)
      if (handlers[line]) handlers[line]();
}

Counters SmmuModel::counters() const {
  std::lock_guard lock(mu_);
  Counters c = counters_;
  c.descriptor_reads = walker_.descriptor_reads();
  return c;
}

std::size_t SmmuModel::tlb_entries() const {
  std::lock_guard lock(mu_);
  return tlb_.size();
}

std::optional<bool> SmmuModel::effective_s2fwb(std::uint32_t sid) {
  std::lock_guard lock(mu_);
  Txn t;
  t.stream.sid = sid;
  auto s = stream_entry(t);  // raises no event: only finish_fault records one
  if (!s) return std::nullopt;
  return (*s)->s2fwb;
}

// ---- DMA ----------------------------------------------------------------------------------------------

std::expected<DmaTranslation, DmaFault> SmmuModel::translate(const DmaStream& stream, std::uint64_t iova, bool write) {
  std::unique_lock lock(mu_);
  Txn t{stream, write, iova};
  ++counters_.translations;
  auto r = translate_one(t);
  std::expected<DmaTranslation, DmaFault> out;
  if (r) out = *r;
  else out = std::unexpected(finish_fault(t, r.error()));
  unlock_and_fire(lock);
  return out;
}

std::expected<void, DmaFault> SmmuModel::dma_read(const DmaStream& stream, std::uint64_t iova,
                                                  std::span<std::byte> out) {
  std::unique_lock lock(mu_);
  auto pieces = translate_range(stream, iova, out.size(), false);
  unlock_and_fire(lock);
  if (!pieces) {
    // A RAZ/WI termination completes the read with zeros (IHI 0070 3.12.2).
    if (pieces.error().outcome == DmaOutcome::raz_wi) std::ranges::fill(out, std::byte{0});
    return std::unexpected(pieces.error());
  }
  if (pieces->size() == 1) {
    if (auto r = mem_.read((*pieces)[0].pa, out); !r) return std::unexpected(bus_error(iova));
    return {};
  }
  // Several pieces: gather into a scratch buffer first so that a hole at a later piece leaves `out` untouched.
  std::vector<std::byte> scratch(out.size());
  std::size_t done = 0;
  for (std::size_t i = 0; i < pieces->size(); ++i) {
    const Piece& p = (*pieces)[i];
    if (auto r = mem_.read(p.pa, std::span(scratch).subspan(done, p.bytes)); !r)
      return std::unexpected(bus_error(iova + done));
    done += p.bytes;
  }
  std::ranges::copy(scratch, out.begin());
  return {};
}

std::expected<void, DmaFault> SmmuModel::dma_write(const DmaStream& stream, std::uint64_t iova,
                                                   std::span<const std::byte> in) {
  std::unique_lock lock(mu_);
  auto pieces = translate_range(stream, iova, in.size(), true);
  unlock_and_fire(lock);
  if (!pieces) return std::unexpected(pieces.error());
  if (pieces->size() > 1) {
    // Probe every piece before writing any, so that a hole at a later piece moves no byte.
    std::vector<std::byte> probe;
    std::size_t done = 0;
    for (std::size_t i = 0; i < pieces->size(); ++i) {
      const Piece& p = (*pieces)[i];
      probe.resize(p.bytes);
      if (auto r = mem_.read(p.pa, probe); !r) return std::unexpected(bus_error(iova + done));
      done += p.bytes;
    }
  }
  std::size_t done = 0;
  for (std::size_t i = 0; i < pieces->size(); ++i) {
    const Piece& p = (*pieces)[i];
    if (auto r = mem_.write(p.pa, in.subspan(done, p.bytes)); !r)
      return std::unexpected(bus_error(iova + done));
    done += p.bytes;
  }
  return {};
}

}  // namespace vsmmu::smmu::model

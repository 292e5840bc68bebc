#include "smmu/model/driver.hpp"

namespace vsmmu::smmu::model {
namespace {

constexpr const char* kWhere = "smmu.model.driver";

Error from_bus(const BusFault& f, const char* what) {
  return Error{EFAULT, kWhere, fmt::format("{}: no memory at {:#x}", what, f.address)};
}

}  // namespace

Result<ModelDriver> ModelDriver::start(SmmuModel& smmu, PhysicalMemory& mem, TablePageAllocator& alloc,
                                       const DriverLayout& layout) {
  ModelDriver d(smmu, mem, alloc, layout);
  // Stream table: linear 2^sid_bits STEs, or a level-1 table of 2^(sid_bits - SPLIT) descriptors.
  const unsigned l1_log2 = layout.sid_bits > kSplit ? layout.sid_bits - kSplit : 0;
  const std::uint64_t strtab_bytes = layout.two_level ? std::max<std::uint64_t>(64, 8ULL << l1_log2)
                                                      : Ste::bytes << layout.sid_bits;
  const std::uint64_t cmdq_bytes = Command::bytes << layout.cmdq_log2;
  const std::uint64_t eventq_bytes = Event::bytes << layout.eventq_log2;
  auto strtab = alloc.allocate(strtab_bytes, strtab_bytes);
  if (!strtab) return std::unexpected(strtab.error());
  auto cmdq = alloc.allocate(cmdq_bytes, std::max<std::uint64_t>(32, cmdq_bytes));
  if (!cmdq) return std::unexpected(cmdq.error());
  auto eventq = alloc.allocate(eventq_bytes, std::max<std::uint64_t>(32, eventq_bytes));
  if (!eventq) return std::unexpected(eventq.error());
  d.strtab_ = *strtab;
  d.cmdq_ = *cmdq;
  d.eventq_ = *eventq;

  Cr0 cr0;
  if (auto r = d.enable(cr0); !r) return std::unexpected(r.error());
  auto write = [&](const RegisterInfo& reg, std::uint64_t v) {
    return reg.width == 64 ? smmu.write64(reg.offset, v) : smmu.write32(reg.offset, static_cast<std::uint32_t>(v));
  };
  StrtabBaseCfg cfg;
  cfg.set(StrtabBaseCfg::LOG2SIZE, layout.sid_bits)
      .set(StrtabBaseCfg::SPLIT, kSplit)
      .set(StrtabBaseCfg::FMT, layout.two_level ? StreamTableFormat::two_level : StreamTableFormat::linear);
  const std::array<std::pair<RegisterInfo, std::uint64_t>, 7> setup{{
      {regs::CR2, Cr2{}.set(Cr2::RECINVSID, layout.record_invalid_sids).set(Cr2::PTM, true).value()},
      {regs::STRTAB_BASE, StrtabBase{}.set(StrtabBase::RA, true).set(StrtabBase::ADDR, d.strtab_).value()},
      {regs::STRTAB_BASE_CFG, cfg.value()},
      {regs::CMDQ_BASE, QueueBase{}
                            .set(QueueBase::RA, true)
                            .set(QueueBase::ADDR, d.cmdq_)
                            .set(QueueBase::LOG2SIZE, layout.cmdq_log2)
                            .value()},
      {regs::CMDQ_PROD, 0},
      {regs::CMDQ_CONS, 0},
      {regs::IRQ_CTRL,
       layout.irqs ? IrqCtrl{}.set(IrqCtrl::EVENTQ_IRQEN, true).set(IrqCtrl::GERROR_IRQEN, true).value() : 0},
  }};
  for (const auto& [reg, v] : setup)
    if (auto r = write(reg, v); !r) return std::unexpected(r.error());
  cr0.set(Cr0::CMDQEN, true);
  if (auto r = d.enable(cr0); !r) return std::unexpected(r.error());
  // Nothing cached from before may survive into translation (arm_smmu_device_reset).
  const std::array flush{cmd_cfgi_all(), cmd_tlbi_nsnh_all()};
  if (auto r = d.issue(flush); !r) return std::unexpected(r.error());

  const std::array<std::pair<RegisterInfo, std::uint64_t>, 3> events{{
      {regs::EVENTQ_BASE, QueueBase{}
                              .set(QueueBase::WA, true)
                              .set(QueueBase::ADDR, d.eventq_)
                              .set(QueueBase::LOG2SIZE, layout.eventq_log2)
                              .value()},
      {regs::EVENTQ_PROD, 0},
      {regs::EVENTQ_CONS, 0},
  }};
  for (const auto& [reg, v] : events)
    if (auto r = write(reg, v); !r) return std::unexpected(r.error());
  cr0.set(Cr0::EVENTQEN, true);
  if (auto r = d.enable(cr0); !r) return std::unexpected(r.error());
  cr0.set(Cr0::SMMUEN, true);
  if (auto r = d.enable(cr0); !r) return std::unexpected(r.error());
  return d;
}

// Writes CR0 and waits for CR0ACK to match (arm_smmu_write_reg_sync).
Result<void> ModelDriver::enable(Cr0 cr0) {
  if (auto r = smmu_->write32(regs::CR0.offset, cr0.value()); !r) return r;
  for (int i = 0; i < 1000; ++i) {
    auto ack = smmu_->read32(regs::CR0ACK.offset);
    if (!ack) return std::unexpected(ack.error());
    if (*ack == cr0.value()) return {};
  }
  return fail(ETIMEDOUT, kWhere, "CR0ACK did not follow CR0 = {:#x}", cr0.value());
}

Result<std::uint64_t> ModelDriver::ste_address(std::uint32_t sid) const {
  if (std::uint64_t{sid} >> layout_.sid_bits != 0)
    return fail(ERANGE, kWhere, "SID {:#x} is outside the {}-bit stream table", sid, layout_.sid_bits);
  if (!layout_.two_level) return strtab_ + std::uint64_t{sid} * Ste::bytes;
  auto l1 = mem_->read_record<StreamTableL1>(strtab_ + (sid >> kSplit) * StreamTableL1::bytes);
  if (!l1) return std::unexpected(from_bus(l1.error(), "level-1 stream table"));
  if (l1->get(StreamTableL1::Span) == 0) return fail(ENOENT, kWhere, "SID {:#x} has no level-2 table", sid);
  return l1->get(StreamTableL1::L2Ptr) + (sid & ((1U << kSplit) - 1)) * Ste::bytes;
}

Result<std::uint64_t> ModelDriver::write_ste(std::uint32_t sid, const Ste& ste) {
  auto addr = ste_address(sid);
  if (!addr && addr.error().err == ENOENT) {
    // A level-2 table of 2^SPLIT STEs, published by its level-1 descriptor (Span = SPLIT + 1).
    const std::uint64_t bytes = Ste::bytes << kSplit;
    auto l2 = alloc_->allocate(bytes, bytes);
    if (!l2) return std::unexpected(l2.error());
    StreamTableL1 l1;
    l1.set(StreamTableL1::Span, kSplit + 1).set(StreamTableL1::L2Ptr, *l2);
    if (auto w = mem_->write_record(strtab_ + (sid >> kSplit) * StreamTableL1::bytes, l1); !w)
      return std::unexpected(from_bus(w.error(), "level-1 stream table"));
    addr = ste_address(sid);
  }
  if (!addr) return addr;
  if (auto w = mem_->write_record(*addr, ste); !w) return std::unexpected(from_bus(w.error(), "STE"));
  return addr;
}

Result<void> ModelDriver::push(std::span<const Command> cmds) {
  const QueueIndex q{layout_.cmdq_log2};
  auto prod = smmu_->read32(regs::CMDQ_PROD.offset);
  if (!prod) return std::unexpected(prod.error());
  std::uint32_t p = q.advance(QueueProd::of(*prod).get(QueueProd::WR), 0);
  for (const auto& c : cmds) {
    if (auto w = mem_->write_record(cmdq_ + q.index(p) * Command::bytes, c); !w)
      return std::unexpected(from_bus(w.error(), "command queue"));
    p = q.advance(p);
  }
  return smmu_->write32(regs::CMDQ_PROD.offset, QueueProd{}.set(QueueProd::WR, p).value());
}

Result<void> ModelDriver::issue(std::span<const Command> cmds) {
  const QueueIndex q{layout_.cmdq_log2};
  if (cmds.size() + 1 > q.entries()) return fail(E2BIG, kWhere, "{} commands do not fit the queue", cmds.size());
  std::vector<Command> batch(cmds.begin(), cmds.end());
  batch.push_back(cmd_sync());
  if (auto r = push(batch); !r) return r;
  auto err = command_error();
  if (!err) return std::unexpected(err.error());
  if (*err) return fail(EIO, kWhere, "command queue stopped with CERROR {}", static_cast<int>(**err));
  auto prod = smmu_->read32(regs::CMDQ_PROD.offset);
  auto cons = smmu_->read32(regs::CMDQ_CONS.offset);
  if (!prod || !cons) return fail(EIO, kWhere, "cannot read the command queue pointers");
  if (!q.empty(QueueProd::of(*prod).get(QueueProd::WR), QueueCons::of(*cons).get(QueueCons::RD)))
    return fail(ETIMEDOUT, kWhere, "CMD_SYNC did not complete");
  return {};
}

Result<std::optional<Cerror>> ModelDriver::command_error() {
  auto gerror = smmu_->read32(regs::GERROR.offset);
  auto gerrorn = smmu_->read32(regs::GERRORN.offset);
  auto cons = smmu_->read32(regs::CMDQ_CONS.offset);
  if (!gerror || !gerrorn || !cons) return fail(EIO, kWhere, "cannot read GERROR/GERRORN/CMDQ_CONS");
  if (!Gerror::active(Gerror::of(*gerror), Gerror::of(*gerrorn)).get(Gerror::CMDQ_ERR)) return std::nullopt;
  return QueueCons::of(*cons).get(QueueCons::ERR);
}

Result<void> ModelDriver::acknowledge_command_error(bool skip) {
  if (skip) {
    auto cons = smmu_->read32(regs::CMDQ_CONS.offset);
    if (!cons) return std::unexpected(cons.error());
    const QueueIndex q{layout_.cmdq_log2};
    const std::uint64_t at = cmdq_ + q.index(QueueCons::of(*cons).get(QueueCons::RD)) * Command::bytes;
    if (auto w = mem_->write_record(at, cmd_sync()); !w) return std::unexpected(from_bus(w.error(), "command queue"));
  }
  auto gerror = smmu_->read32(regs::GERROR.offset);
  auto gerrorn = smmu_->read32(regs::GERRORN.offset);
  if (!gerror || !gerrorn) return fail(EIO, kWhere, "cannot read GERROR/GERRORN");
  // Toggle GERRORN.CMDQ_ERR to match GERROR.
  Gerror ack = Gerror::of(*gerrorn);
  ack.set(Gerror::CMDQ_ERR, Gerror::of(*gerror).get(Gerror::CMDQ_ERR));
  return smmu_->write32(regs::GERRORN.offset, ack.value());
}

Result<std::vector<Event>> ModelDriver::drain_events() {
  const QueueIndex q{layout_.eventq_log2};
  auto prod = smmu_->read32(regs::EVENTQ_PROD.offset);
  auto cons = smmu_->read32(regs::EVENTQ_CONS.offset);
  if (!prod || !cons) return fail(EIO, kWhere, "cannot read the event queue pointers");
  const std::uint32_t p = QueueProd::of(*prod).get(QueueProd::WR);
  std::uint32_t c = QueueCons::of(*cons).get(QueueCons::RD);
  std::vector<Event> out;
  while (!q.empty(p, c)) {
    auto e = mem_->read_record<Event>(eventq_ + q.index(c) * Event::bytes);
    if (!e) return std::unexpected(from_bus(e.error(), "event queue"));
    out.push_back(*e);
    c = q.advance(c);
  }
  // Free the records and acknowledge any overflow (OVACKFLG = OVFLG), as arm_smmu_evtq_thread does.
  QueueCons next;
  next.set(QueueCons::RD, c).set(QueueCons::OVACKFLG, QueueProd::of(*prod).get(QueueProd::OVFLG));
  if (auto r = smmu_->write32(regs::EVENTQ_CONS.offset, next.value()); !r) return std::unexpected(r.error());
  return out;
}

Command cmd_sync(SyncCs cs) { return Command{}.set(Command::Opcode, Opcode::CMD_SYNC).set(Command::CS, cs); }

Command cmd_cfgi_ste(std::uint32_t sid, bool leaf) {
  return Command{}.set(Command::Opcode, Opcode::CFGI_STE).set(Command::SID, sid).set(Command::Leaf, leaf);
}

Command cmd_cfgi_all() {
  return Command{}.set(Command::Opcode, Opcode::CFGI_STE_RANGE).set(Command::Range, Command::kCfgiAllRange);
}

Command cmd_cfgi_cd(std::uint32_t sid, std::uint32_t ssid, bool leaf) {
  return Command{}
      .set(Command::Opcode, Opcode::CFGI_CD)
      .set(Command::SID, sid)
      .set(Command::SSID, ssid)
      .set(Command::Leaf, leaf);
}

Command cmd_tlbi_nh_asid(std::uint16_t vmid, std::uint16_t asid) {
  return Command{}.set(Command::Opcode, Opcode::TLBI_NH_ASID).set(Command::VMID, vmid).set(Command::ASID, asid);
}

Command cmd_tlbi_nh_va(std::uint16_t vmid, std::uint16_t asid, std::uint64_t va, bool leaf) {
  return Command{}
      .set(Command::Opcode, Opcode::TLBI_NH_VA)
      .set(Command::VMID, vmid)
      .set(Command::ASID, asid)
      .set(Command::Address, va)
      .set(Command::Leaf, leaf);
}

Command cmd_tlbi_s12_vmall(std::uint16_t vmid) {
  return Command{}.set(Command::Opcode, Opcode::TLBI_S12_VMALL).set(Command::VMID, vmid);
}

Command cmd_tlbi_s2_ipa(std::uint16_t vmid, std::uint64_t ipa, bool leaf) {
  return Command{}
      .set(Command::Opcode, Opcode::TLBI_S2_IPA)
      .set(Command::VMID, vmid)
      .set(Command::IPA, ipa)
      .set(Command::Leaf, leaf);
}

Command cmd_tlbi_nsnh_all() { return Command{}.set(Command::Opcode, Opcode::TLBI_NSNH_ALL); }

}  // namespace vsmmu::smmu::model

#include "smmu/driver/smmu_driver.hpp"

#include <algorithm>
#include <bit>
#include <thread>

#include "base/log.hpp"
#include "base/try.hpp"

namespace vsmmu::smmu::driver {
namespace {

constexpr const char* kWhere = "smmu.driver";
using Clock = std::chrono::steady_clock;

std::string_view cerror_name(Cerror e) {
  switch (e) {
    case Cerror::none: return "CERROR_NONE";
    case Cerror::ill: return "CERROR_ILL";
    case Cerror::abt: return "CERROR_ABT";
    case Cerror::atc_inv_sync: return "CERROR_ATC_INV_SYNC";
  }
  return "CERROR_?";
}

// CMDQ_BASE / EVENTQ_BASE: bit 62 is RA for the queue the SMMU reads and WA for the one it writes; Linux sets it
// for both (Q_BASE_RWA).
std::uint64_t queue_base(std::uint64_t addr, unsigned log2size) {
  return QueueBase{}.set(QueueBase::RA, true).set(QueueBase::ADDR, addr).set(QueueBase::LOG2SIZE, log2size).value();
}

std::string describe(const CommandError& e) {
  return e.command ? fmt::format("{} at index {:#x} on {:#018x} {:#018x}", cerror_name(e.cerror), e.index,
                                 e.command->dw[0], e.command->dw[1])
                   : fmt::format("{} at index {:#x} (the command is unreadable)", cerror_name(e.cerror), e.index);
}

// The probe's ID register reads, counted with the driver's other accesses.
class CountingMmio final : public SmmuMmio {
 public:
  CountingMmio(SmmuMmio& inner, MmioAccesses& counts) : inner_(inner), counts_(counts) {}
  Result<std::uint64_t> mmio_read(std::uint64_t offset, unsigned size) override {
    ++counts_.reads;
    return inner_.mmio_read(offset, size);
  }
  Result<void> mmio_write(std::uint64_t offset, std::uint64_t value, unsigned size) override {
    ++counts_.writes;
    return inner_.mmio_write(offset, value, size);
  }

 private:
  SmmuMmio& inner_;
  MmioAccesses& counts_;
};

}  // namespace

Result<SmmuDriver> SmmuDriver::start(SmmuMmio& mmio, PhysicalMemory& mem, TablePageAllocator& alloc,
                                     const Options& options) {
  SmmuDriver d(mmio, mem, alloc, options);
  VSMMU_TRY(d.reset());
  return d;
}

Result<void> SmmuDriver::allocate_structures() {
  // Stream table: linear 2^sid_bits STEs, or a level-1 table of 2^(sid_bits - SPLIT) descriptors, each
  // aligned to its size (at least 64 bytes); queues aligned to their size, at least 32 bytes (IHI 0070 6.3.24-26).
  const bool two_level = strtab_fmt_ == StreamTableFormat::two_level;
  const std::uint64_t strtab_bytes = two_level ? std::max<std::uint64_t>(64, StreamTableL1::bytes << (sid_bits_ - kStrtabSplit))
                                               : Ste::bytes << sid_bits_;
  const std::uint64_t cmdq_bytes = Command::bytes << cmdq_log2_;
  const std::uint64_t eventq_bytes = Event::bytes << eventq_log2_;
  VSMMU_TRY_ASSIGN(auto strtab, alloc_->allocate(strtab_bytes, strtab_bytes));
  VSMMU_TRY_ASSIGN(auto cmdq, alloc_->allocate(cmdq_bytes, std::max<std::uint64_t>(32, cmdq_bytes)));
  VSMMU_TRY_ASSIGN(auto eventq, alloc_->allocate(eventq_bytes, std::max<std::uint64_t>(32, eventq_bytes)));
  strtab_ = strtab;
  cmdq_ = cmdq;
  eventq_ = eventq;
  return {};
}

// arm_smmu_device_hw_probe + arm_smmu_device_reset.
Result<void> SmmuDriver::reset() {
  CountingMmio counted(*mmio_, accesses_);
  auto features = probe_features(counted, options_.need_stage1);
  if (!features) return fail(features.error(), kWhere, "{}", options_.name);
  features_ = *features;
  // ARM_SMMU_OPT_MSIPOLL: MSIs on a coherent SMMU (arm_smmu_device_hw_probe).
  const bool can_msipoll = features_.msi() && features_.id.cohacc;
  if (options_.msipoll.value_or(false) && !can_msipoll)
    return fail(ENXIO, kWhere, "{}: MSI polling asked, but the SMMU has IDR0.MSI {} and IDR0.COHACC {} (both needed)",
                options_.name, features_.msi() ? 1 : 0, features_.id.cohacc ? 1 : 0);
  msipoll_ = options_.msipoll.value_or(can_msipoll);
  sid_bits_ = std::min(options_.sid_bits, features_.sid_bits());
  // A level-2 table resolves SPLIT bits: with no more StreamIDs than that, Linux keeps the table linear.
  const bool two_level = features_.two_level_strtab() && !options_.force_linear && sid_bits_ > kStrtabSplit;
  strtab_fmt_ = two_level ? StreamTableFormat::two_level : StreamTableFormat::linear;
  cmdq_log2_ = std::min(options_.cmdq_log2, features_.cmdq_log2());
  eventq_log2_ = std::min(options_.eventq_log2, features_.eventq_log2());
  if (cmdq_log2_ == 0)
    return fail(ENXIO, kWhere, "{}: a one-entry command queue (IDR1.CMDQS = 0 or asked for) cannot hold a command "
                "and its CMD_SYNC", options_.name);
  VSMMU_TRY(allocate_structures());

  // Disable first; an SMMU left translating aborts incoming traffic meanwhile, as Linux does.
  VSMMU_TRY_ASSIGN(auto cr0, read_reg(regs::CR0));
  if (Cr0::of(cr0).get(Cr0::SMMUEN)) {
    log::warn(kWhere, "{}: already enabled (CR0 = {:#x}); resetting", options_.name, cr0);
    VSMMU_TRY(update_gbpa(true));
  }
  Cr0 enables;
  VSMMU_TRY(write_cr0(enables));

  // Tables and queues write-back cacheable, inner shareable; private TLB maintenance (no broadcast TLBIs).
  const Cr1 cr1 = Cr1{}
                      .set(Cr1::TABLE_SH, Shareability::inner)
                      .set(Cr1::TABLE_OC, Cr1Cache::wb)
                      .set(Cr1::TABLE_IC, Cr1Cache::wb)
                      .set(Cr1::QUEUE_SH, Shareability::inner)
                      .set(Cr1::QUEUE_OC, Cr1Cache::wb)
                      .set(Cr1::QUEUE_IC, Cr1Cache::wb);
  const Cr2 cr2 = Cr2{}.set(Cr2::PTM, true).set(Cr2::RECINVSID, options_.record_invalid_sids);
  const StrtabBaseCfg strtab_cfg = StrtabBaseCfg{}
                                       .set(StrtabBaseCfg::LOG2SIZE, sid_bits_)
                                       .set(StrtabBaseCfg::SPLIT, two_level ? kStrtabSplit : 0)
                                       .set(StrtabBaseCfg::FMT, strtab_fmt_);
  const auto written = write_regs({
      {regs::CR1, cr1.value()},
      {regs::CR2, cr2.value()},
      {regs::STRTAB_BASE, StrtabBase{}.set(StrtabBase::RA, true).set(StrtabBase::ADDR, strtab_).value()},
      {regs::STRTAB_BASE_CFG, strtab_cfg.value()},
      {regs::CMDQ_BASE, queue_base(cmdq_, cmdq_log2_)},
      {regs::CMDQ_PROD, 0},
      {regs::CMDQ_CONS, 0},
  });
  if (!written) return written;
  prod_ = cons_ = 0;
  VSMMU_TRY(write_cr0(enables.set(Cr0::CMDQEN, true)));

  // Nothing cached from before may survive into translation. Linux sends TLBI_NSNH_ALL whatever the stages;
  // without stage 2, TLBI_NH_ALL removes the same entries and names only the stage that exists, and EL2
  // entries exist only with IDR0.Hyp.
  std::vector<Command> flush{cmd_cfgi_all()};
  if (features_.hyp() && features_.stage1()) flush.push_back(cmd_tlbi_el2_all());
  flush.push_back(features_.stage2() ? cmd_tlbi_nsnh_all() : cmd_tlbi_nh_all());
  VSMMU_TRY(issue(flush));

  const auto eventq = write_regs({
      {regs::EVENTQ_BASE, queue_base(eventq_, eventq_log2_)},
      {regs::EVENTQ_PROD, 0},
      {regs::EVENTQ_CONS, 0},
  });
  if (!eventq) return eventq;
  VSMMU_TRY(write_cr0(enables.set(Cr0::EVENTQEN, true)));

  VSMMU_TRY(setup_irqs());

  if (options_.gbpa_abort)
    VSMMU_TRY(update_gbpa(*options_.gbpa_abort));
  return write_cr0(enables.set(Cr0::SMMUEN, true));
}

// arm_smmu_setup_irqs with arm_smmu_setup_msis: interrupts off, MSI addresses cleared (wired interrupts), the
// MSIs the platform gives programmed as arm_smmu_write_msi_msg does (CFG2: Device-nGnRE), then the ones wanted on.
Result<void> SmmuDriver::setup_irqs() {
  VSMMU_TRY(write_acked(regs::IRQ_CTRL, regs::IRQ_CTRLACK, 0));
  VSMMU_TRY(write_regs({{regs::GERROR_IRQ_CFG0, 0}, {regs::EVENTQ_IRQ_CFG0, 0}}));
  constexpr unsigned kDeviceNGnRE = 1;  // Linux's ARM_SMMU_MEMATTR_DEVICE_nGnRE (IHI 0070 6.3.23 MemAttr)
  const auto program = [&](const std::optional<MsiTarget>& target, const RegisterInfo& cfg0, const RegisterInfo& cfg1,
                           const RegisterInfo& cfg2) -> Result<void> {
    if (!target || !features_.msi()) return {};
    return write_regs({{cfg0, IrqCfg0{}.set(IrqCfg0::ADDR, target->address).value()},
                       {cfg1, IrqCfg1{}.set(IrqCfg1::DATA, target->data).value()},
                       {cfg2, IrqCfg2{}.set(IrqCfg2::MemAttr, kDeviceNGnRE).value()}});
  };
  VSMMU_TRY(program(options_.eventq_msi, regs::EVENTQ_IRQ_CFG0, regs::EVENTQ_IRQ_CFG1, regs::EVENTQ_IRQ_CFG2));
  VSMMU_TRY(program(options_.gerror_msi, regs::GERROR_IRQ_CFG0, regs::GERROR_IRQ_CFG1, regs::GERROR_IRQ_CFG2));
  const IrqCtrl irq = IrqCtrl{}.set(IrqCtrl::GERROR_IRQEN, options_.irqs).set(IrqCtrl::EVENTQ_IRQEN, options_.irqs);
  return write_acked(regs::IRQ_CTRL, regs::IRQ_CTRLACK, irq.value());
}

Result<std::uint32_t> SmmuDriver::read_reg(const RegisterInfo& reg) {
  ++accesses_.reads;
  auto v = mmio_->read32(reg.offset);
  if (!v) return fail(v.error(), kWhere, "{}: reading {}", options_.name, reg.name);
  return v;
}

Result<void> SmmuDriver::write_regs(std::initializer_list<std::pair<RegisterInfo, std::uint64_t>> writes) {
  for (const auto& [reg, v] : writes)
    VSMMU_TRY(write_reg(reg, v));
  return {};
}

Result<void> SmmuDriver::write_reg(const RegisterInfo& reg, std::uint64_t value) {
  ++accesses_.writes;
  auto r = reg.width == 64 ? mmio_->write64(reg.offset, value)
                           : mmio_->write32(reg.offset, static_cast<std::uint32_t>(value));
  if (!r) return fail(r.error(), kWhere, "{}: writing {:#x} to {}", options_.name, value, reg.name);
  return r;
}

template <class Done, class Expected>
Result<std::uint32_t> SmmuDriver::poll(const RegisterInfo& reg, Done done, Expected expected) {
  const auto deadline = Clock::now() + options_.poll_timeout;
  for (;;) {
    auto v = read_reg(reg);
    if (!v || done(*v)) return v;
    if (Clock::now() >= deadline)
      return fail(ETIMEDOUT, kWhere, "{}: {} did not become {} within {} us; it reads {:#x}", options_.name, reg.name,
                  expected(), options_.poll_timeout.count(), *v);
    std::this_thread::yield();
  }
}

// arm_smmu_write_reg_sync: the register, then wait for its ACK register to equal it.
Result<void> SmmuDriver::write_acked(const RegisterInfo& reg, const RegisterInfo& ack_reg, std::uint32_t value) {
  VSMMU_TRY(write_reg(reg, value));
  auto ack = poll(ack_reg, [&](std::uint32_t v) { return v == value; },
                  [&] { return fmt::format("{:#x} ({} as written)", value, reg.name); });
  if (!ack) return std::unexpected(ack.error());
  return {};
}

Result<void> SmmuDriver::write_cr0(Cr0 cr0) { return write_acked(regs::CR0, regs::CR0ACK, cr0.value()); }

// arm_smmu_update_gbpa: wait out any update in flight, write with Update = 1, wait for Update to clear (IHI 0070 6.3.14).
Result<void> SmmuDriver::update_gbpa(bool abort) {
  const auto idle = [](std::uint32_t v) { return !Gbpa::of(v).get(Gbpa::Update); };
  const auto expected = [] { return std::string("Update = 0"); };
  VSMMU_TRY_ASSIGN(auto gbpa, poll(regs::GBPA, idle, expected));
  VSMMU_TRY(write_reg(regs::GBPA, Gbpa::of(gbpa).set(Gbpa::ABORT, abort).set(Gbpa::Update, true).value()));
  VSMMU_TRY(poll(regs::GBPA, idle, expected));
  return {};
}

// ---------------------------------------------------------------------------------------------------------
// Stream table and CDs

Result<std::uint64_t> SmmuDriver::ste_address(std::uint32_t sid) const {
  if (std::uint64_t{sid} >> sid_bits_ != 0)
    return fail(ERANGE, kWhere, "{}: SID {:#x} is outside the {}-bit stream table", options_.name, sid, sid_bits_);
  if (strtab_fmt_ == StreamTableFormat::linear) return strtab_ + std::uint64_t{sid} * Ste::bytes;
  const std::uint64_t l1_at = strtab_ + (sid >> kStrtabSplit) * StreamTableL1::bytes;
  auto l1 = mem_->read_record<StreamTableL1>(l1_at);
  if (!l1) return fail(EFAULT, kWhere, "{}: no memory behind the level-1 STE descriptor at {:#x}", options_.name, l1_at);
  if (l1->get(StreamTableL1::Span) == 0) return fail(ENOENT, kWhere, "{}: SID {:#x} has no level-2 table", options_.name, sid);
  return l1->get(StreamTableL1::L2Ptr) + (sid & ((1U << kStrtabSplit) - 1)) * Ste::bytes;
}

Result<std::uint64_t> SmmuDriver::write_ste(std::uint32_t sid, const Ste& ste) {
  auto addr = ste_address(sid);
  if (!addr && addr.error().err == ENOENT) {
    // A level-2 table of 2^SPLIT STEs, published by its level-1 descriptor (Span = SPLIT + 1).
    const std::uint64_t bytes = Ste::bytes << kStrtabSplit;
    VSMMU_TRY_ASSIGN(auto l2, alloc_->allocate(bytes, bytes));
    const StreamTableL1 l1 = StreamTableL1{}.set(StreamTableL1::Span, kStrtabSplit + 1).set(StreamTableL1::L2Ptr, l2);
    const std::uint64_t l1_at = strtab_ + (sid >> kStrtabSplit) * StreamTableL1::bytes;
    if (!mem_->write_record(l1_at, l1))
      return fail(EFAULT, kWhere, "{}: cannot write the level-1 STE descriptor at {:#x}", options_.name, l1_at);
    addr = ste_address(sid);
  }
  if (!addr) return addr;
  if (!mem_->write_record(*addr, ste)) return fail(EFAULT, kWhere, "{}: cannot write the STE at {:#x}", options_.name, *addr);
  return addr;
}

Result<void> SmmuDriver::install_ste(std::uint32_t sid, const Ste& ste) {
  VSMMU_TRY(write_ste(sid, ste));
  return issue(cmd_cfgi_ste(sid));
}

Result<CdTableRef> SmmuDriver::create_cd_table(std::uint32_t sid, unsigned ssid_bits, std::optional<CdTableFormat> fmt) {
  if (ssid_bits > features_.ssid_bits())
    return fail(ERANGE, kWhere, "{}: {} SSID bits asked for; IDR1.SSIDSIZE is {}", options_.name, ssid_bits,
                features_.ssid_bits());
  VSMMU_TRY_ASSIGN(auto t, CdTable::create(*mem_, *alloc_, ssid_bits, features_.two_level_cd(), fmt));
  return cd_tables_.insert_or_assign(sid, std::move(t)).first->second.ref();
}

CdTable* SmmuDriver::cd_table(std::uint32_t sid) {
  auto it = cd_tables_.find(sid);
  return it == cd_tables_.end() ? nullptr : &it->second;
}

Result<std::uint64_t> SmmuDriver::write_cd(std::uint32_t sid, std::uint32_t ssid, const Cd& cd) {
  CdTable* t = cd_table(sid);
  if (!t) return fail(ENOENT, kWhere, "{}: SID {:#x} has no CD table", options_.name, sid);
  return t->write(ssid, cd);
}

// arm_smmu_make_s1_cd + arm_smmu_make_cdtable_ste, each followed by its invalidation.
bool SmmuDriver::set_master_stalls(std::uint32_t sid, bool can_stall) {
  const bool stalls = (can_stall && features_.stalls()) || features_.stall_forced();
  if (stalls) stall_masters_.insert(sid);
  else stall_masters_.erase(sid);
  return stalls;
}

Result<void> SmmuDriver::attach_stage1(std::uint32_t sid, std::uint32_t ssid, std::uint16_t asid, const TableBuilder& s1,
                                       S1Dss dss) {
  if (!features_.stage1()) return fail(EOPNOTSUPP, kWhere, "{}: no stage 1 (IDR0.S1P = 0)", options_.name);
  if (!cd_table(sid))
    VSMMU_TRY(create_cd_table(sid, static_cast<unsigned>(std::bit_width(ssid))));
  const bool stall = master_stalls(sid);
  VSMMU_TRY(write_cd(sid, ssid, s1_cd(s1, asid, features_, stall)));
  VSMMU_TRY(write_ste(sid, cdtable_ste(cd_table(sid)->ref(), features_, dss, stall)));
  return issue(std::array{cmd_cfgi_cd(sid, ssid), cmd_cfgi_ste(sid)});
}

// ---------------------------------------------------------------------------------------------------------
// Command queue

Result<void> SmmuDriver::push(std::span<const Command> cmds) { return push(cmds, false, nullptr); }

// arm_smmu_cmdq_issue_cmdlist, one thread: the commands written from the PROD the driver keeps, then one CMDQ_PROD
// write. CMDQ_CONS is read only when the queue looks full.
Result<void> SmmuDriver::push(std::span<const Command> cmds, bool with_sync, std::uint32_t* sync_index) {
  const QueueIndex q{cmdq_log2_};
  std::uint32_t p = prod_;
  const auto publish = [&]() -> Result<void> {
    VSMMU_TRY(write_reg(regs::CMDQ_PROD, QueueProd{}.set(QueueProd::WR, p).value()));
    prod_ = p;
    return {};
  };
  const auto put = [&](const Command& cmd) -> Result<void> {
    if (q.full(p, cons_)) {
      // Publish what is written and wait for the SMMU to make room (arm_smmu_cmdq_poll_until_not_full).
      VSMMU_TRY(publish());
      VSMMU_TRY(wait_for_cons(p, q.entries() - 1, "room in the command queue"));
    }
    const std::uint64_t at = cmdq_ + q.index(p) * Command::bytes;
    if (!mem_->write_record(at, cmd)) return fail(EFAULT, kWhere, "{}: cannot write the command queue at {:#x}", options_.name, at);
    p = q.advance(p);
    return {};
  };
  for (const auto& cmd : cmds)
    VSMMU_TRY(put(cmd));
  if (with_sync) {
    // arm_smmu_cmdq_build_sync_cmd: with MSIPOLL the CMD_SYNC's MSI (CS=IRQ, MSIData 0) targets its own slot.
    *sync_index = p;
    const Command sync = msipoll_ ? cmd_sync(SyncCs::irq).set(Command::MSIAddr, cmdq_ + q.index(p) * Command::bytes)
                                  : cmd_sync();
    VSMMU_TRY(put(sync));
  }
  return publish();
}

Result<void> SmmuDriver::issue(std::span<const Command> cmds) {
  const QueueIndex q{cmdq_log2_};
  std::uint32_t at = 0;
  VSMMU_TRY(push(cmds, true, &at));
  if (msipoll_) return wait_for_sync_msi(at);
  // Done once CONS is past the CMD_SYNC: nothing pushed after it is left unconsumed.
  VSMMU_TRY(wait_for_cons(q.advance(at), 0, "the CMD_SYNC"));
  return {};
}

Result<bool> SmmuDriver::handle_command_error(std::string_view what, std::uint32_t& skipped_here) {
  VSMMU_TRY_ASSIGN(auto err, command_error());
  if (!err) return false;
  if (!options_.skip_command_errors)
    return fail(EIO, kWhere, "{}: the command queue stopped waiting for {}: {}", options_.name, what, describe(*err));
  // A fetch abort is retried, so it can repeat: give up after one skip per queue entry.
  if (++skipped_here > QueueIndex{cmdq_log2_}.entries())
    return fail(EIO, kWhere, "{}: the command queue keeps stopping: {}", options_.name, describe(*err));
  log::error(kWhere, "{}: skipping the command in error: {}", options_.name, describe(*err));
  ++skipped_;
  VSMMU_TRY(acknowledge_command_error(true));
  return true;
}

Result<std::uint32_t> SmmuDriver::wait_for_cons(std::uint32_t prod, std::uint32_t pending, std::string_view what) {
  const QueueIndex q{cmdq_log2_};
  auto deadline = Clock::now() + options_.poll_timeout;
  std::uint32_t skipped_here = 0;
  for (;;) {
    auto cons = read_reg(regs::CMDQ_CONS);
    if (!cons) return cons;
    const std::uint32_t c = QueueCons::of(*cons).get(QueueCons::RD);
    cons_ = c;
    if (q.count(prod, c) <= pending) return c;
    VSMMU_TRY_ASSIGN(const bool skipped, handle_command_error(what, skipped_here));
    if (skipped) {
      deadline = Clock::now() + options_.poll_timeout;
      continue;
    }
    if (Clock::now() >= deadline)
      return fail(ETIMEDOUT, kWhere, "{}: CMDQ_CONS did not pass {} within {} us: CMDQ_CONS = {:#x}, expected {} of the "
                  "entries before PROD {:#x} left", options_.name, what, options_.poll_timeout.count(), *cons,
                  pending == 0 ? std::string("none") : fmt::format("at most {}", pending), prod);
    std::this_thread::yield();
  }
}

Result<void> SmmuDriver::wait_for_sync_msi(std::uint32_t index) {
  const QueueIndex q{cmdq_log2_};
  const std::uint64_t slot = cmdq_ + q.index(index) * Command::bytes;
  auto deadline = Clock::now() + options_.poll_timeout;
  // Linux polls only the word in memory: a command error reaches it as the global-error interrupt
  // (arm_smmu_gerror_handler -> arm_smmu_cmdq_skip_err), never as register reads in this loop. This driver has no
  // interrupt handler, so it looks at GERROR only once the CMD_SYNC has been outstanding for a while, standing in
  // for that interrupt: a CMD_SYNC that completes costs no MMIO access, however slow the SMMU.
  constexpr auto kErrorCheckAfter = std::chrono::milliseconds(10);
  auto error_check = Clock::now() + kErrorCheckAfter;
  std::uint32_t skipped_here = 0;
  for (;;) {
    auto word = mem_->read32(slot);
    if (!word) return fail(EFAULT, kWhere, "{}: cannot read the CMD_SYNC at {:#x} in the command queue", options_.name, slot);
    if (*word == 0) {
      cons_ = q.advance(index);  // everything up to the CMD_SYNC consumed, without reading CMDQ_CONS
      return {};
    }
    if (Clock::now() >= error_check) {
      error_check = Clock::now() + kErrorCheckAfter;
      VSMMU_TRY_ASSIGN(const bool skipped, handle_command_error("the CMD_SYNC", skipped_here));
      if (skipped) {
        deadline = Clock::now() + options_.poll_timeout;
        continue;
      }
    }
    if (Clock::now() >= deadline)
      return fail(ETIMEDOUT, kWhere, "{}: the CMD_SYNC at index {:#x} was not completed by its MSI within {} us: its "
                  "first word at {:#x} reads {:#x}, not 0", options_.name, index, options_.poll_timeout.count(), slot, *word);
    std::this_thread::yield();
  }
}

Result<std::optional<CommandError>> SmmuDriver::command_error() {
  auto gerror = read_reg(regs::GERROR);
  auto gerrorn = read_reg(regs::GERRORN);
  auto cons = read_reg(regs::CMDQ_CONS);
  if (!gerror || !gerrorn || !cons) return std::unexpected((!gerror ? gerror : !gerrorn ? gerrorn : cons).error());
  if (!Gerror::active(Gerror::of(*gerror), Gerror::of(*gerrorn)).get(Gerror::CMDQ_ERR)) return std::nullopt;
  CommandError e;
  e.cerror = QueueCons::of(*cons).get(QueueCons::ERR);
  e.index = QueueCons::of(*cons).get(QueueCons::RD);
  auto cmd = mem_->read_record<Command>(cmdq_ + QueueIndex{cmdq_log2_}.index(e.index) * Command::bytes);
  if (cmd) e.command = *cmd;
  return e;
}

// arm_smmu_cmdq_skip_err, then the GERRORN write of arm_smmu_gerror_handler for CMDQ_ERR alone.
Result<void> SmmuDriver::acknowledge_command_error(bool skip) {
  VSMMU_TRY_ASSIGN(auto cons, read_reg(regs::CMDQ_CONS));
  if (skip && QueueCons::of(cons).get(QueueCons::ERR) == Cerror::ill) {
    const std::uint64_t at = cmdq_ + QueueIndex{cmdq_log2_}.index(QueueCons::of(cons).get(QueueCons::RD)) * Command::bytes;
    if (!mem_->write_record(at, cmd_sync()))
      return fail(EFAULT, kWhere, "{}: cannot write the command queue at {:#x}", options_.name, at);
  }
  return acknowledge_global_errors(Gerror{}.set(Gerror::CMDQ_ERR, true));
}

Result<Gerror> SmmuDriver::active_global_errors() {
  auto gerror = read_reg(regs::GERROR);
  auto gerrorn = read_reg(regs::GERRORN);
  if (!gerror || !gerrorn) return std::unexpected((!gerror ? gerror : gerrorn).error());
  return Gerror::active(Gerror::of(*gerror), Gerror::of(*gerrorn));
}

Result<void> SmmuDriver::acknowledge_global_errors(Gerror which) {
  auto gerror = read_reg(regs::GERROR);
  auto gerrorn = read_reg(regs::GERRORN);
  if (!gerror || !gerrorn) return std::unexpected((!gerror ? gerror : gerrorn).error());
  // An error is acknowledged by making its GERRORN bit equal to GERROR's (IHI 0070 7.5).
  const std::uint32_t active = (*gerror ^ *gerrorn) & which.value() & Gerror::kErrorMask;
  return write_reg(regs::GERRORN, *gerrorn ^ active);
}

// ---------------------------------------------------------------------------------------------------------
// Event queue

Result<DrainedEvents> SmmuDriver::drain_events() {
  const QueueIndex q{eventq_log2_};
  auto prod = read_reg(regs::EVENTQ_PROD);
  auto cons = read_reg(regs::EVENTQ_CONS);
  if (!prod || !cons) return std::unexpected((!prod ? prod : cons).error());
  const QueueProd p = QueueProd::of(*prod);
  std::uint32_t c = QueueCons::of(*cons).get(QueueCons::RD);
  DrainedEvents out;
  out.overflow = p.get(QueueProd::OVFLG) != QueueCons::of(*cons).get(QueueCons::OVACKFLG);
  while (!q.empty(p.get(QueueProd::WR), c)) {
    const std::uint64_t at = eventq_ + q.index(c) * Event::bytes;
    auto e = mem_->read_record<Event>(at);
    if (!e) return fail(EFAULT, kWhere, "{}: cannot read the event queue at {:#x}", options_.name, at);
    out.records.push_back(*e);
    c = q.advance(c);
  }
  if (out.overflow) log::warn(kWhere, "{}: event queue overflow: records were lost", options_.name);
  const QueueCons next = QueueCons{}.set(QueueCons::RD, c).set(QueueCons::OVACKFLG, p.get(QueueProd::OVFLG));
  VSMMU_TRY(write_reg(regs::EVENTQ_CONS, next.value()));
  return out;
}

// arm_smmu_evtq_thread + arm_smmu_handle_evt: a stall record goes to the I/O page fault handler, which
// resolves it and answers (iopf_group_response -> arm_smmu_page_response: SUCCESS -> retry, else abort).
Result<ServicedEvents> SmmuDriver::service_events(const StallHandler& handler) {
  VSMMU_TRY_ASSIGN(auto drained, drain_events());
  ServicedEvents out;
  out.overflow = drained.overflow;
  std::vector<Command> responses;
  for (const Event& e : drained.records) {
    if (!e.get(Event::Stall)) {
      out.records.push_back(e);
      continue;
    }
    const bool resolved = handler && handler(e);
    ++(resolved ? out.resumed : out.aborted);
    responses.push_back(cmd_resume(e.get(Event::SID), e.get(Event::STAG),
                                   resolved ? ResumeAction::retry : ResumeAction::abort));
  }
  if (!responses.empty()) VSMMU_TRY(issue(responses));
  return out;
}

Result<void> SmmuDriver::detach(std::uint32_t sid) {
  VSMMU_TRY(write_ste(sid, abort_ste()));
  std::vector<Command> cmds{cmd_cfgi_ste(sid)};
  if (master_stalls(sid)) cmds.push_back(cmd_stall_term(sid));
  return issue(cmds);
}

}  // namespace vsmmu::smmu::driver

// The vSMMU's interrupts (IHI 0070 3.18): wired lines, or - with the MSI wish, IDR0.MSI = 1 - MSIs. An MSI whose
// address is guest RAM is written there by the vSMMU (what Linux's MSIPOLL polls: a CMD_SYNC's completion in its
// own queue slot, drivers/iommu/arm/arm-smmu-v3/arm-smmu-v3.c __arm_smmu_cmdq_poll_until_msi); any other address
// (the guest's interrupt controller, an ITS doorbell) goes to the VMM's MSI handler as (address, data); with no
// handler it aborts, GERROR.MSI_*_ABT_ERR (IHI 0070 7.5). The guest counts its MMIO accesses: each is a VM exit.
#include <optional>
#include <utility>
#include <vector>

#include "nesting/virtual_smmu.hpp"
#include "smmu/event.hpp"
#include "tests/sim/nesting/nesting_fixture.hpp"

namespace vsmmu::nesting::test {
namespace {

using namespace smmu;
using namespace smmu::driver;

// QEMU virt's GICv3 ITS doorbell (GITS_TRANSLATER at 0x08080000 + 0x10040): outside guest RAM (GuestHarness puts
// RAM at 1 GiB).
constexpr std::uint64_t kItsDoorbell = 0x0809'0040;
constexpr std::uint32_t kEventqData = 0x21, kGerrorData = 0x22;

VirtualSmmuConfig with_msi(bool msi) {
  VirtualSmmuConfig c;
  c.wishes.msi = msi;
  return c;
}

Options its_targets() {
  Options o;
  o.eventq_msi = MsiTarget{kItsDoorbell, kEventqData};
  o.gerror_msi = MsiTarget{kItsDoorbell, kGerrorData};
  return o;
}

class InterruptsSim : public NestingSim {
 protected:
  std::unique_ptr<GuestHarness> make_guest(bool msi, Options driver = {}) {
    auto g = make({{"nic0", -1, kNic0}}, with_msi(msi), std::move(driver));
    if (g) map_page(*g, kNic0, kAsid);
    return g;
  }
  void catch_msis(VirtualSmmu& v) {
    v.set_msi_handler([this](std::uint64_t address, std::uint32_t data) { msis.emplace_back(address, data); });
  }
  void count_wired(VirtualSmmu& v) {
    v.set_irq_handler(Irq::eventq, [this] { ++wired; });
    v.set_irq_handler(Irq::gerror, [this] { ++wired; });
  }
  static Gerror active_gerror(GuestHarness& g) {
    return Gerror::active(Gerror::of(must(g.vsmmu().read32(regs::GERROR.offset))),
                          Gerror::of(must(g.vsmmu().read32(regs::GERRORN.offset))));
  }
  // A DMA at an unmapped page: F_TRANSLATION, which the VMM moves into the guest's event queue.
  void fault(GuestHarness& g) {
    ASSERT_FALSE(dma("nic0.dma", kVa + 8 * kPage, pattern(8, 1)));
    ASSERT_TRUE(g.vsmmu().process_events());
  }

  std::vector<std::pair<std::uint64_t, std::uint32_t>> msis;
  unsigned wired = 0;
};

// Linux's MSIPOLL (arm_smmu_device_hw_probe: IDR0.MSI on a coherent SMMU; arm_smmu_cmdq_build_sync_cmd: CS=IRQ,
// MSIAddr = the CMD_SYNC's own slot, MSIData 0): the vSMMU completes the CMD_SYNC by writing 0 over the slot's
// first word in guest RAM, and the guest learns it there. An unmap - TLBI_NH_VA + CMD_SYNC - costs one MMIO access,
// the CMDQ_PROD write.
TEST_F(InterruptsSim, MsiPollCompletesTheSyncInGuestRamWithOneMmioAccessPerUnmap) {
  auto g = make_guest(true);
  ASSERT_TRUE(g);
  const auto& ids = g->vsmmu().id_registers();
  EXPECT_TRUE(ids.idr0.get(Idr0::MSI));
  EXPECT_TRUE(ids.idr0.get(Idr0::COHACC));
  ASSERT_TRUE(g->driver().msipoll());

  const auto stats = g->vsmmu().stats();
  const MmioAccesses before = g->driver().mmio_accesses();
  must(g->unmap(kAsid, kVa, kPage));
  const MmioAccesses after = g->driver().mmio_accesses();
  EXPECT_EQ(after.writes - before.writes, 1U) << "the CMDQ_PROD write";
  EXPECT_EQ(after.reads - before.reads, 0U) << "no CMDQ_CONS polling";
  EXPECT_EQ(g->vsmmu().stats().syncs, stats.syncs + 1);
  EXPECT_EQ(g->vsmmu().stats().msis, stats.msis + 1);

  // The CMD_SYNC sits just before PROD; its first word (opcode 0x46 before) is now the MSI's data, 0.
  const QueueIndex q{g->driver().cmdq_log2()};
  const std::uint32_t prod = QueueProd::of(must(g->vsmmu().read32(regs::CMDQ_PROD.offset))).get(QueueProd::WR);
  const std::uint64_t slot = g->driver().cmdq_base() + q.index(prod - 1) * Command::bytes;
  const auto cmd = g->memory().view().read_record<Command>(slot);
  ASSERT_TRUE(cmd.has_value());
  EXPECT_EQ(cmd->dw[0] & 0xffff'ffffULL, 0U);
  EXPECT_EQ(cmd->get(Command::MSIAddr), slot) << "dword 1 still names the slot";
  // The device no longer reaches the page: the TLBI did its work before the CMD_SYNC completed.
  EXPECT_FALSE(dma("nic0.dma", kVa, pattern(8, 3)));
}

// The vSMMU's own write into guest RAM is in the VM's dirty log (nesting/dirty_tracking.hpp), as its event
// records are: a migration copies the completed CMD_SYNC slot like any page the vSMMU wrote.
TEST_F(InterruptsSim, TheSyncMsiIntoGuestRamIsLoggedDirty) {
  auto g = make_guest(true);
  ASSERT_TRUE(g);
  must(g->memory().dirty().start());
  const std::uint64_t ram = 0x4000'0000, size = 64ULL << 20;  // GuestHarnessConfig's defaults
  std::vector<std::byte> bitmap(size / kPage / 8);
  (void)must(g->memory().dirty().harvest(ram, bitmap, 0));
  must(g->unmap(kAsid, kVa, kPage));  // the guest's CPU writes (PTE, command) are KVM's to log; the MSI is ours
  std::fill(bitmap.begin(), bitmap.end(), std::byte{0});
  (void)must(g->memory().dirty().harvest(ram, bitmap, 0));
  const std::uint64_t page = (g->driver().cmdq_base() - ram) / kPage;
  EXPECT_NE(bitmap[page / 8] & std::byte(1u << (page % 8)), std::byte{0}) << "the command queue's page";
}

// Without IDR0.MSI Linux polls CMDQ_CONS by MMIO (__arm_smmu_cmdq_poll_until_consumed): the unmap costs the
// CMDQ_PROD write and, the vSMMU completing the CMD_SYNC within that write, one CMDQ_CONS read.
TEST_F(InterruptsSim, WithoutMsiTheGuestPollsCmdqCons) {
  auto g = make_guest(false);
  ASSERT_TRUE(g);
  EXPECT_FALSE(g->vsmmu().id_registers().idr0.get(Idr0::MSI));
  ASSERT_FALSE(g->driver().msipoll());
  const MmioAccesses before = g->driver().mmio_accesses();
  must(g->unmap(kAsid, kVa, kPage));
  const MmioAccesses after = g->driver().mmio_accesses();
  EXPECT_EQ(after.writes - before.writes, 1U);
  EXPECT_EQ(after.reads - before.reads, 1U);
  EXPECT_EQ(g->vsmmu().stats().msis, 0U);
}

// Options::msipoll as Linux's choices: off on an SMMU with MSIs polls CMDQ_CONS (its disable_msipolling); on
// where the SMMU has no IDR0.MSI is refused at start, naming the registers (ENXIO, as a probe failure).
TEST_F(InterruptsSim, MsiPollingCanBeTurnedOffAndIsRefusedWithoutMsi) {
  Options off;
  off.msipoll = false;
  auto g = make_guest(true, off);
  ASSERT_TRUE(g);
  EXPECT_FALSE(g->driver().msipoll());
  const MmioAccesses before = g->driver().mmio_accesses();
  must(g->unmap(kAsid, kVa, kPage));
  EXPECT_EQ(g->driver().mmio_accesses().reads - before.reads, 1U);
  g.reset();  // nic0's cdev is bound by one vSMMU at a time

  GuestHarnessConfig c;
  c.devices = {{"nic0", -1, kNic0}};
  c.driver.msipoll = true;
  auto refused = GuestHarness::create(*host, c);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().err, ENXIO);
  EXPECT_NE(refused.error().to_string().find("IDR0.MSI 0"), std::string::npos) << refused.error();
}

// IHI 0070 3.18, 6.3.21-23, arm_smmu_setup_msis: the guest programs EVENTQ_IRQ_CFG0-2 with its ITS doorbell and an
// event ID; an event record then reaches the VMM's MSI handler with that address and EVENTQ_IRQ_CFG1's data, and no
// wired line fires.
TEST_F(InterruptsSim, AnEventRecordsMsiOutsideRamReachesTheHandler) {
  auto g = make_guest(true, its_targets());
  ASSERT_TRUE(g);
  catch_msis(g->vsmmu());
  count_wired(g->vsmmu());
  EXPECT_EQ(IrqCfg0::of(must(g->vsmmu().read64(regs::EVENTQ_IRQ_CFG0.offset))).get(IrqCfg0::ADDR), kItsDoorbell);
  EXPECT_EQ(must(g->vsmmu().read32(regs::EVENTQ_IRQ_CFG1.offset)), kEventqData);
  fault(*g);
  ASSERT_EQ(msis.size(), 1U);
  EXPECT_EQ(msis[0], std::make_pair(kItsDoorbell, kEventqData));
  EXPECT_EQ(wired, 0U);
  const auto ev = must(g->driver().drain_events());
  ASSERT_EQ(ev.records.size(), 1U);
  EXPECT_EQ(ev.records[0].get(Event::ID), EventId::F_TRANSLATION);
  EXPECT_EQ(active_gerror(*g).value(), 0U) << "the MSI was delivered: no abort";
}

// A global error (IHI 0070 7.5): an illegal command stops the queue with GERROR.CMDQ_ERR, whose MSI carries
// GERROR_IRQ_CFG1's data to the handler.
TEST_F(InterruptsSim, AGlobalErrorsMsiOutsideRamReachesTheHandler) {
  auto g = make_guest(true, its_targets());
  ASSERT_TRUE(g);
  catch_msis(g->vsmmu());
  count_wired(g->vsmmu());
  auto issued = g->driver().issue(cmd_tlbi_s2_ipa(0, 0x4000'0000));  // no stage 2: CERROR_ILL (IHI 0070 4.4.3)
  ASSERT_FALSE(issued);
  EXPECT_EQ(issued.error().err, EIO);
  ASSERT_EQ(msis.size(), 1U);
  EXPECT_EQ(msis[0], std::make_pair(kItsDoorbell, kGerrorData));
  EXPECT_EQ(wired, 0U);
  EXPECT_TRUE(active_gerror(*g).get(Gerror::CMDQ_ERR));
  must(g->driver().acknowledge_command_error(true));
  must(g->unmap(kAsid, kVa, kPage));  // the queue runs again, CMD_SYNCs by MSIPOLL
}

// With no MSI handler an MSI outside guest RAM reaches nothing: the architecture's answer is an aborted MSI write,
// GERROR.MSI_EVTQ_ABT_ERR, whose own MSI aborts too (MSI_GERROR_ABT_ERR) (IHI 0070 7.5). The record itself is in
// the guest's queue.
TEST_F(InterruptsSim, WithNoHandlerAnMsiOutsideRamAborts) {
  auto g = make_guest(true, its_targets());
  ASSERT_TRUE(g);
  fault(*g);
  const Gerror active = active_gerror(*g);
  EXPECT_TRUE(active.get(Gerror::MSI_EVTQ_ABT_ERR));
  EXPECT_TRUE(active.get(Gerror::MSI_GERROR_ABT_ERR));
  EXPECT_FALSE(active.get(Gerror::EVTQ_ABT_ERR)) << "the record was written";
  // The record's MSI, the GERROR MSI for MSI_EVTQ_ABT_ERR, and the one for MSI_GERROR_ABT_ERR (already active
  // when that one aborts: nothing further toggles, so nothing further is signalled).
  EXPECT_EQ(g->vsmmu().stats().msis_aborted, 3U);
  EXPECT_EQ(must(g->driver().drain_events()).records.size(), 1U);
}

// A migrated vSMMU carries EVENTQ_IRQ_CFG0-2 and GERROR_IRQ_CFG0-2 (nesting/migration.cpp, RegisterState): on the
// destination the guest's next event goes to the same doorbell with the same data, without the guest
// reprogramming anything.
TEST_F(InterruptsSim, IrqCfgRegistersSurviveSaveAndLoad) {
  auto g = make_guest(true, its_targets());
  ASSERT_TRUE(g);
  const std::array cfg{regs::EVENTQ_IRQ_CFG0, regs::EVENTQ_IRQ_CFG1, regs::EVENTQ_IRQ_CFG2,
                       regs::GERROR_IRQ_CFG0, regs::GERROR_IRQ_CFG1, regs::GERROR_IRQ_CFG2};
  std::vector<std::uint64_t> source;
  for (const auto& r : cfg) source.push_back(must(g->vsmmu().mmio_read(r.offset, r.width / 8)));
  must(g->reload([] { return std::vector<DeviceSpec>{{"nic0", -1, kNic0}}; }));
  for (std::size_t i = 0; i < cfg.size(); ++i)
    EXPECT_EQ(must(g->vsmmu().mmio_read(cfg[i].offset, cfg[i].width / 8)), source[i]) << cfg[i].name;
  EXPECT_TRUE(g->vsmmu().id_registers().idr0.get(Idr0::MSI));
  catch_msis(g->vsmmu());
  fault(*g);
  ASSERT_EQ(msis.size(), 1U);
  EXPECT_EQ(msis[0], std::make_pair(kItsDoorbell, kEventqData));
  must(g->unmap(kAsid, kVa, kPage));  // MSIPOLL goes on against the destination
}

}  // namespace
}  // namespace vsmmu::nesting::test

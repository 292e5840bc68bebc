// The guest's command queue: a command the vSMMU or the host refuses stops the queue on exactly that command
// (IHI 0070 7.1), everything before it has been executed and nothing after it, until the guest acknowledges;
// and SMMUs with the repeat-invalidation erratum get every forwarded batch twice.
#include <poll.h>

#include <fmt/format.h>

#include "nesting/virtual_smmu.hpp"
#include "tests/sim/nesting/nesting_fixture.hpp"

namespace vsmmu::nesting::test {
namespace {

using namespace smmu;
using namespace smmu::driver;

constexpr unsigned kPages = 3;

class CommandQueueSim : public NestingSim {
 protected:
  // kPages pages at kVa for `vsid`, each used once by `engine` (so the TLB holds it), then unmapped without
  // invalidation: each stays reachable through its stale TLB entry until a TLBI removes it (IHI 0070 3.17).
  void stale_pages(GuestHarness& g, std::uint32_t vsid, std::string_view engine) {
    const std::uint64_t gpa = must(g.alloc(kPages * kPage));
    must(g.map(kAsid, kVa, gpa, kPages * kPage));
    must(g.attach(vsid, kAsid));
    for (unsigned i = 0; i < kPages; ++i) ASSERT_TRUE(dma(engine, va(i), pattern(16, 1)));
    must(g.unmap(kAsid, kVa, kPages * kPage, /*invalidate=*/false));
    for (unsigned i = 0; i < kPages; ++i) ASSERT_TRUE(dma(engine, va(i), pattern(16, 2))) << "page " << i;
  }
  static std::uint64_t va(unsigned page) { return kVa + page * kPage; }

  // Pushes `cmds` + CMD_SYNC without waiting; returns CMDQ_CONS.RD before them.
  static std::uint32_t push_batch(GuestHarness& g, std::vector<Command> cmds) {
    const auto cons = QueueCons::of(must(g.vsmmu().read32(regs::CMDQ_CONS.offset))).get(QueueCons::RD);
    cmds.push_back(cmd_sync());
    must(g.driver().push(cmds));
    return cons;
  }

  // The queue stopped on the command `at` with CERROR_ILL and GERROR.CMDQ_ERR (IHI 0070 7.1, 7.5).
  static void expect_stopped_at(GuestHarness& g, std::uint32_t at, Opcode opcode) {
    const auto err = must(g.driver().command_error());
    ASSERT_TRUE(err.has_value()) << "the queue did not stop";
    EXPECT_EQ(err->cerror, Cerror::ill);
    EXPECT_EQ(err->index, at);
    ASSERT_TRUE(err->command.has_value());
    EXPECT_EQ(err->command->get(Command::Opcode), opcode);
    EXPECT_TRUE(must(g.driver().active_global_errors()).get(Gerror::CMDQ_ERR));
  }

  // After the guest acknowledges (replacing the command with CMD_SYNC, as arm_smmu_cmdq_skip_err), the queue runs
  // to PROD and no error is left.
  static void acknowledge_and_expect_drained(GuestHarness& g) {
    must(g.driver().acknowledge_command_error(/*skip=*/true));
    EXPECT_FALSE(must(g.driver().command_error()).has_value());
    const auto prod = QueueProd::of(must(g.vsmmu().read32(regs::CMDQ_PROD.offset))).get(QueueProd::WR);
    const auto cons = QueueCons::of(must(g.vsmmu().read32(regs::CMDQ_CONS.offset))).get(QueueCons::RD);
    EXPECT_EQ(cons, prod);
  }
};

// IHI 0070 4.1.3 + 7.1: a command that is illegal on this SMMU - an opcode naming stage 2 or EL2 state a
// stage-1-only SMMU (IDR0.S2P = 0, Hyp = 0) does not have, or a RES0 bit set - stops the queue with
// CMDQ_CONS.RD on it and CMDQ_CONS.ERR = CERROR_ILL. The commands before it completed (the TLBI before it took
// effect: the page faults), those after it did not run (their page is still reachable through the stale TLB
// entry) until the guest acknowledges through GERRORN; then the queue resumes.
struct IllegalCase {
  const char* name;
  Command command;
};

class IllegalCommandSim : public CommandQueueSim, public ::testing::WithParamInterface<IllegalCase> {};

TEST_P(IllegalCommandSim, StopsOnItWithWorkBeforeDoneAndAfterHeld) {
  auto g = make({{"nic0", -1, kNic0}});
  ASSERT_TRUE(g);
  stale_pages(*g, kNic0, "nic0.dma");
  const auto errors_before = g->vsmmu().stats().command_errors;

  const Command bad = GetParam().command;
  const std::uint32_t start =
      push_batch(*g, {cmd_tlbi_nh_va(0, kAsid, va(0)), bad, cmd_tlbi_nh_va(0, kAsid, va(2))});
  expect_stopped_at(*g, QueueIndex{g->driver().cmdq_log2()}.advance(start, 1), bad.get(Command::Opcode));
  EXPECT_EQ(g->vsmmu().stats().command_errors, errors_before + 1);
  EXPECT_FALSE(dma("nic0.dma", va(0), pattern(16, 3))) << "the TLBI before the illegal command took effect";
  EXPECT_TRUE(dma("nic0.dma", va(2), pattern(16, 3))) << "the TLBI after it must not run before the acknowledgement";

  acknowledge_and_expect_drained(*g);
  EXPECT_FALSE(dma("nic0.dma", va(2), pattern(16, 4))) << "after GERRORN the rest of the batch ran";
  EXPECT_TRUE(dma("nic0.dma", va(1), pattern(16, 4))) << "the illegal command itself never ran";
}

Command res0_set(Command c) {
  c.dw[1] |= 1;  // TLBI_NH_ASID defines nothing in its second word (IHI 0070 4.4.3)
  return c;
}

INSTANTIATE_TEST_SUITE_P(
    OnAStage1OnlyVsmmu, IllegalCommandSim,
    ::testing::Values(IllegalCase{"TlbiS2Ipa", cmd_tlbi_s2_ipa(0, 0x4000'0000)},
                      IllegalCase{"TlbiEl2All", cmd_tlbi_el2_all()},
                      IllegalCase{"Res0BitSet", res0_set(cmd_tlbi_nh_asid(0, kAsid + 1))},
                      // IHI 0070 4.7.3: CS = 0b11 is Reserved (the vSMMU once took it for a plain sync)
                      IllegalCase{"SyncReservedCs", cmd_sync(SyncCs::reserved)},
                      IllegalCase{"SecureStream", cmd_cfgi_ste(kNic0).set(Command::SSec, true)}),
    ByName());

// docs/kernel-rules.md (HWPT_INVALIDATE, the stricter per-opcode validation proposed upstream): a TLBI_NH_VA with a
// granule (TG) on an SMMU without range invalidation (IDR3.RIL = 0) is EIO. The vSMMU's own checks let it through
// (TG alone is not a range), so the kernel is the one to refuse it, part-way through one batch. The guest must see
// that as hardware would show an illegal command: CONS on that exact command, CERROR_ILL, the command before it
// executed (although the kernel dropped the group it was converted in), the one after it held until the
// acknowledgement. On today's upstream kernel the same batch simply completes.
TEST_F(CommandQueueSim, KernelRefusalMidBatchStopsOnThatGuestCommand) {
  for (const char* kernel : {"upstream", "strict-invalidation"}) {
    SCOPED_TRACE(kernel);
    const bool strict = std::string_view(kernel) == "strict-invalidation";
    host = make_host(kernel);
    ASSERT_TRUE(host);
    auto g = make({{"gpu0", -1, kGpu0}}, smmu1_config());
    ASSERT_TRUE(g);
    ASSERT_FALSE(g->vsmmu().id_registers().idr3.get(Idr3::RIL)) << "gpu0's SMMU has no RIL";
    stale_pages(*g, kGpu0, "gpu0.dma");

    Command with_tg = cmd_tlbi_nh_va(0, kAsid, va(1));
    with_tg.set(Command::TG, 1).set(Command::TTL, 3);  // 4KB granule, level-3 leaf
    const std::uint32_t start = push_batch(*g, {cmd_tlbi_nh_va(0, kAsid, va(0)), with_tg, cmd_tlbi_nh_va(0, kAsid, va(2))});
    EXPECT_FALSE(dma("gpu0.dma", va(0), pattern(16, 3))) << "the command before the refused one was executed";
    if (!strict) {
      EXPECT_FALSE(must(g->driver().command_error()).has_value());
      EXPECT_FALSE(dma("gpu0.dma", va(1), pattern(16, 3)));
      EXPECT_FALSE(dma("gpu0.dma", va(2), pattern(16, 3)));
      continue;
    }
    expect_stopped_at(*g, QueueIndex{g->driver().cmdq_log2()}.advance(start, 1), Opcode::TLBI_NH_VA);
    EXPECT_EQ(must(g->driver().command_error())->command->dw[1], with_tg.dw[1]);
    EXPECT_TRUE(dma("gpu0.dma", va(2), pattern(16, 3))) << "the command after the refused one waits";

    acknowledge_and_expect_drained(*g);
    EXPECT_FALSE(dma("gpu0.dma", va(2), pattern(16, 4)));
    EXPECT_TRUE(dma("gpu0.dma", va(1), pattern(16, 4))) << "the refused command was skipped, not executed";
  }
}

// IHI 0070 7.1: a host that cannot carry out an invalidation now (HWPT_INVALIDATE failing with ENOMEM, not a
// refusal of its contents) stops the queue with CERROR_ABT, which Linux's arm_smmu_cmdq_skip_err answers by
// acknowledging without skipping: the command is fetched again and this time executed.
TEST_F(CommandQueueSim, TransientHostFailureIsAbtAndTheCommandRunsOnRetry) {
  auto g = make({{"nic0", -1, kNic0}});
  ASSERT_TRUE(g);
  stale_pages(*g, kNic0, "nic0.dma");
  host->set_fail_nth(1);  // the next host call that allocates: this batch's HWPT_INVALIDATE
  const std::uint32_t start = push_batch(*g, {cmd_tlbi_nh_va(0, kAsid, va(0))});
  ASSERT_TRUE(host->fail_nth_fired());
  host->set_fail_nth(0);
  const auto err = must(g->driver().command_error());
  ASSERT_TRUE(err.has_value());
  EXPECT_EQ(err->cerror, Cerror::abt);
  EXPECT_EQ(err->index, start);
  EXPECT_TRUE(dma("nic0.dma", va(0), pattern(16, 3))) << "not executed yet: the stale entry still translates";
  must(g->driver().acknowledge_command_error(/*skip=*/true));
  EXPECT_FALSE(must(g->driver().command_error()).has_value());
  EXPECT_FALSE(dma("nic0.dma", va(0), pattern(16, 4))) << "retried after the acknowledgement, and executed";
}

// include/uapi/linux/iommufd.h (hw_info flags): an SMMU with IOMMU_HW_INFO_ARM_SMMUV3_ERRATA_REPEAT_TLBI_CFGI must
// have every TLBI/CFGI + SYNC issued twice; the vSMMU does it by repeating each HWPT_INVALIDATE. Without the erratum
// one call carries the batch.
TEST(RepeatInvalidationErratum, EveryHwptInvalidateIsIssuedTwice) {
  for (const bool erratum : {false, true}) {
    SCOPED_TRACE(erratum ? "with the erratum" : "without it");
    auto host = make_host_with_hardware(fmt::format(R"({{
      "kind": "hardware", "name": "repeat-tlbi",
      "smmus": [ {{ "name": "smmu0", "s2fwb": true, "errata": [{}] }} ],
      "root_complexes": [ {{ "name": "pcie0", "smmu": "smmu0", "canwbs": false }} ],
      "devices": [ {{ "name": "dev0", "bdf": "00:01.0", "root_complex": "pcie0" }} ],
      "dma_engines": [ {{ "name": "dev0.dma", "device": "dev0" }} ]
    }})", erratum ? R"("T264-SMMU-3")" : ""));
    ASSERT_TRUE(host);
    {
      const auto dev = must(host->bind_device("dev0"));
      EXPECT_EQ((must(host->get_hw_info(dev)).flags & host::uapi::kHwInfoArmSmmuv3ErrataRepeatTlbiCfgi) != 0, erratum);
      must(host->unbind_device(dev));
    }
    GuestHarnessConfig c;
    c.devices = {{"dev0", -1, kNic0}};
    auto g = must(GuestHarness::create(*host, c));
    ASSERT_TRUE(g);
    const std::uint64_t gpa = must(g->alloc(kPage));
    must(g->map(kAsid, kVa, gpa, kPage));
    must(g->attach(kNic0, kAsid));
    ASSERT_TRUE(must(host->dma_write("dev0.dma", kVa, pattern(16, 1))).ok());

    const auto calls = g->vsmmu().stats().invalidate_calls;
    const auto smmu_commands = must(host->smmu_counters("smmu0")).commands;
    must(g->unmap(kAsid, kVa, kPage));  // TLBI_NH_VA + CMD_SYNC
    EXPECT_EQ(g->vsmmu().stats().invalidate_calls, calls + (erratum ? 2 : 1));
    EXPECT_EQ(must(host->smmu_counters("smmu0")).commands, smmu_commands + (erratum ? 4 : 2)) << "TLBI + SYNC per call";
    EXPECT_FALSE(must(host->dma_write("dev0.dma", kVa, pattern(16, 2))).ok());
  }
}

// A guest whose stage-1 mapping is global (nG = 0; Linux writes nG = 1, other guests may not) unmaps it with
// TLBI_NH_VA and, in the same batch, TLBI_NH_ASID. NH_ASID spares global entries and NH_VA removes them
// (IHI 0070 4.4.2.2, 4.4.2.3): after the CMD_SYNC the device's next write faults, under either policy; the
// batched policy may not drop the NH_VA as "covered" by the NH_ASID.
TEST_F(CommandQueueSim, GlobalMappingUnmappedByVaAndAsidInOneBatchFaultsUnderEveryPolicy) {
  for (const auto policy : {InvalidationPolicy::batched, InvalidationPolicy::per_command}) {
    SCOPED_TRACE(policy == InvalidationPolicy::batched ? "batched" : "per_command");
    host = make_host();
    ASSERT_TRUE(host);
    VirtualSmmuConfig cfg;
    cfg.policy = policy;
    auto g = make({{"nic0", -1, kNic0}}, cfg);
    ASSERT_TRUE(g);
    const std::uint64_t gpa = must(g->alloc(kPage));
    must(g->map(kAsid, kVa, gpa, kPage, MapAttributes{.global = true}));
    must(g->attach(kNic0, kAsid));
    ASSERT_TRUE(lands(*g, "nic0.dma", kVa, gpa, 1)) << "the DMA fills the TLB with the global entry";
    must(g->unmap(kAsid, kVa, kPage, /*invalidate=*/false));
    ASSERT_TRUE(lands(*g, "nic0.dma", kVa, gpa, 2)) << "without invalidation the TLB entry still translates";
    const std::vector<Command> cmds = {cmd_tlbi_nh_va(0, kAsid, kVa), cmd_tlbi_nh_asid(0, kAsid)};
    must(g->driver().issue(cmds));  // + CMD_SYNC
    EXPECT_FALSE(dma("nic0.dma", kVa, pattern(16, 3))) << "the device still writes a page the guest unmapped";
  }
}

// IHI 0070 4.1.2, 4.1.4: an SMMU consumes its queue over time, CONS advancing. A guest fills its queue with
// 4096 CFGI_ALL and a CMD_SYNC and writes CMDQ_PROD once: that write does at most one access's work
// (VirtualSmmuConfig::commands_per_access, host_calls_per_access) and re-attaches nothing, since no vSTE changed;
// the vSMMU's work fd is readable; process_events() (the VMM's loop) finishes the rest and the CMD_SYNC
// completes, after which the fd is quiet again. One guest cannot hold the vSMMU for a whole queue.
TEST_F(CommandQueueSim, OneDoorbellDoesBoundedWorkAndTheRestFollows) {
  VirtualSmmuConfig cfg;
  cfg.commands_per_access = 256;
  cfg.host_calls_per_access = 8;
  smmu::driver::Options opts;
  opts.cmdq_log2 = 13;
  auto g = make({{"nic0", -1, kNic0}, {"nic1", -1, kNic1}}, cfg, opts);
  ASSERT_TRUE(g);
  ASSERT_GE(g->driver().cmdq_log2(), 13U);
  map_page(*g, kNic0, kAsidA);
  map_page(*g, kNic1, kAsidB);

  const VirtualSmmuStats before = g->vsmmu().stats();
  std::vector<Command> cmds(4096, cmd_cfgi_all());
  cmds.push_back(cmd_sync());
  must(g->driver().push(cmds));  // one CMDQ_PROD write
  VirtualSmmuStats after = g->vsmmu().stats();
  EXPECT_GT(after.commands, before.commands);
  EXPECT_LE(after.commands - before.commands, 256U);
  EXPECT_LE(after.host_calls - before.host_calls, 8U + 1U) << "one step may finish past the budget";
  EXPECT_EQ(after.attaches, before.attaches) << "no vSTE changed: nothing re-attached";
  const auto readable = [&] {
    std::vector<pollfd> fds;
    for (int fd : g->vsmmu().event_fds()) fds.push_back({fd, POLLIN, 0});
    return ::poll(fds.data(), fds.size(), 0) > 0;
  };
  EXPECT_TRUE(readable()) << "work is left: the VMM's poll loop must hear of it";

  int rounds = 0;
  for (; rounds < 10'000 && g->vsmmu().stats().commands - before.commands < cmds.size(); ++rounds)
    must(g->vsmmu().process_events());
  after = g->vsmmu().stats();
  EXPECT_EQ(after.commands - before.commands, cmds.size());
  EXPECT_GE(rounds, 4096 / 9) << "each round did a bounded share";
  EXPECT_EQ(after.syncs, before.syncs + 1);
  EXPECT_EQ(after.attaches, before.attaches);
  EXPECT_FALSE(must(g->driver().command_error()).has_value());
  EXPECT_FALSE(readable()) << "nothing left: the fd is quiet";
  EXPECT_TRUE(dma("nic0.dma", kVa, pattern(16, 1))) << "the streams still translate";
}

}  // namespace
}  // namespace vsmmu::nesting::test

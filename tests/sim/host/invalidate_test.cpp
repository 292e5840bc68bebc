// IOMMU_HWPT_INVALIDATE on an ARM SMMUv3 vIOMMU (drivers/iommu/iommufd/hw_pagetable.c, iommufd_hwpt_invalidate;
// drivers/iommu/arm/arm-smmu-v3/arm-smmu-v3-iommufd.c, arm_vsmmu_cache_invalidate and arm_vsmmu_convert_user_cmd;
// docs/kernel-rules.md, "HWPT_INVALIDATE on the vIOMMU"; tools/testing/selftests/iommu/iommufd.c, the invalidate
// matrix).
#include "tests/sim/host/sim_fixture.hpp"

namespace vsmmu::host::sim::test {
namespace {

using smmu::Command;
using smmu::Opcode;

class SimInvalidate : public ::testing::Test {
 protected:
  void SetUp() override {
    host = make_host(kernel_profile());
    ASSERT_TRUE(host);
    dev = must(host->bind_device("nic0"));
    ioas = must(host->ioas_alloc());
    parent = must(host->hwpt_alloc(paging_request(dev, ioas, uapi::kHwptAllocNestParent)));
    viommu = must(host->viommu_alloc(dev, parent, uapi::kViommuTypeArmSmmuv3));
    vdevice = must(host->vdevice_alloc(viommu, dev, kVsid));
    nested = must(host->hwpt_alloc(nested_request(dev, viommu, vste_config(smmu::StreamConfig::bypass))));
  }
  virtual const char* kernel_profile() const { return "upstream"; }

  InvalidateOutcome send(std::span<const Command> cmds, ObjectId id = 0) {
    return invalidate(*host, id ? id : viommu, cmds);
  }
  // A request with raw entries.
  InvalidateOutcome raw(std::span<const std::byte> data, std::uint32_t entry_len, std::uint32_t entry_num,
                        std::uint32_t data_type = uapi::kInvalidateDataViommuArmSmmuv3) {
    InvalidateRequest r;
    r.id = viommu;
    r.data = data;
    r.entry_len = entry_len;
    r.entry_num = entry_num;
    r.data_type = data_type;
    return host->hwpt_invalidate(r);
  }
  static int err(const InvalidateOutcome& o) { return o.error ? o.error->err : 0; }
  SmmuCounters counters() { return must(host->smmu_counters("smmu0")); }

  static constexpr std::uint64_t kVsid = 0x21;
  std::unique_ptr<SimHost> host;
  DeviceId dev = 0;
  ObjectId ioas = 0, parent = 0, viommu = 0, vdevice = 0, nested = 0;
};

// iommufd_hwpt_invalidate: the target must be the vIOMMU (nested HWPT EOPNOTSUPP, parent or IOAS EINVAL,
// nothing ENOENT); entry_num != 0 with a NULL pointer or entry_len 0 is EINVAL; entry_num is 0 on these.
TEST_F(SimInvalidate, TargetAndArrayChecks) {
  const std::array one{op(Opcode::TLBI_NH_ALL)};
  for (auto [id, want] : {std::pair{nested, EOPNOTSUPP}, std::pair{parent, EINVAL}, std::pair{ioas, EINVAL},
                          std::pair{ObjectId{999}, ENOENT}, std::pair{vdevice, EINVAL}}) {
    auto o = send(one, id);
    EXPECT_EQ(err(o), want) << "target " << id;
    EXPECT_EQ(o.handled, 0U);
  }
  auto bytes = entries(one);
  EXPECT_EQ(err(raw({}, 16, 1)), EINVAL) << "NULL data_uptr";
  EXPECT_EQ(err(raw(bytes, 0, 1)), EINVAL) << "entry_len 0";
  EXPECT_EQ(err(raw(bytes, 16, 0)), EINVAL) << "entry_num 0 (verified on this driver)";
  EXPECT_EQ(err(raw(bytes, 16, 1, 0)), EINVAL) << "data_type VTD_S1";
  EXPECT_EQ(err(raw(bytes, 16, 1, 7)), EINVAL) << "unknown data_type";
  std::vector<std::byte> big(8192);
  big[0] = std::byte{0x10};
  EXPECT_EQ(err(raw(big, 4097, 1)), EINVAL) << "entry_len above 4096";
  EXPECT_EQ(err(raw(bytes, 16, 2)), EFAULT) << "two entries need 32 bytes";
  EXPECT_EQ(err(raw(bytes, 16, 1)), 0);
}

// The seam's rule, the same on both backends (host.hpp invalidate_data_error): data shorter than entry_len x
// entry_num is EFAULT before anything else is looked at (the kernel backend never hands the kernel a buffer it
// would read past; to the kernel an unreadable buffer is EFAULT). An empty span is a NULL data_uptr: EINVAL
// (iommufd_hwpt_invalidate), whatever pointer the empty span holds.
TEST_F(SimInvalidate, ShortDataIsEfaultFirstAndEmptyDataIsNull) {
  const std::array one{op(Opcode::TLBI_NH_ALL)};
  auto bytes = entries(one);
  for (ObjectId target : {viommu, nested, ObjectId{999}}) {
    InvalidateRequest r;
    r.id = target;
    r.entry_num = 2;
    r.data = bytes;
    auto o = host->hwpt_invalidate(r);
    EXPECT_EQ(err(o), EFAULT) << "target " << target;
    EXPECT_EQ(o.handled, 0U);
  }
  InvalidateRequest r;
  r.id = viommu;
  r.entry_num = 1;
  r.data = std::span(bytes).first(0);  // empty, but not a null pointer
  EXPECT_EQ(err(host->hwpt_invalidate(r)), EINVAL);
}

// Linux 7.3 drivers/iommu/iommufd/hw_pagetable.c iommufd_hwpt_invalidate: with entries, entry_num above
// IOMMU_HWPT_INVALIDATE_ENTRY_NUM_MAX (1 << 19) or entry_len above PAGE_SIZE is EINVAL before the target is
// looked up (an unknown target then says EINVAL, not ENOENT). arm_vsmmu_cache_invalidate
// (arm-smmu-v3-iommufd.c) then copies the whole array into one kmalloc of entry_num x 16 bytes, which fails
// above KMALLOC_MAX_SIZE (4 MiB on arm64 with 4 KiB pages): ENOMEM for more than 1 << 18 entries, after the
// target checks and before any entry is read or issued.
TEST_F(SimInvalidate, EntryNumBoundsAreTheCoresEinvalAndTheDriversEnomem) {
  auto tlbi_all = [](std::uint32_t n) {
    std::vector<std::byte> v(std::size_t{n} * 16);
    for (std::size_t i = 0; i < v.size(); i += 16) v[i] = std::byte{0x10};  // TLBI_NH_ALL
    return v;
  };
  const auto before = counters();
  const auto core_max = tlbi_all((1U << 19) + 1);
  InvalidateRequest r;
  r.entry_num = (1U << 19) + 1;
  r.data = core_max;
  for (ObjectId target : {viommu, ObjectId{999}}) {
    r.id = target;
    auto o = host->hwpt_invalidate(r);
    EXPECT_EQ(err(o), EINVAL) << "target " << target;
    EXPECT_EQ(o.handled, 0U);
  }
  std::vector<std::byte> long_entry(4097);
  long_entry[0] = std::byte{0x10};
  r.id = 999;
  r.entry_num = 1;
  r.entry_len = 4097;
  r.data = long_entry;
  EXPECT_EQ(err(host->hwpt_invalidate(r)), EINVAL) << "entry_len above PAGE_SIZE, before the target";

  const auto driver_max = tlbi_all((1U << 18) + 1);
  r.id = viommu;
  r.entry_num = (1U << 18) + 1;
  r.entry_len = 16;
  r.data = driver_max;
  auto o = host->hwpt_invalidate(r);
  EXPECT_EQ(err(o), ENOMEM);
  EXPECT_EQ(o.handled, r.entry_num) << "entry_num comes back as given: the driver failed before reading any";
  r.data_type = 7;
  EXPECT_EQ(err(host->hwpt_invalidate(r)), ENOMEM) << "before the data type is looked at";
  r.id = nested;
  EXPECT_EQ(err(host->hwpt_invalidate(r)), EOPNOTSUPP) << "after the target";
  EXPECT_EQ(counters().commands, before.commands) << "nothing was issued";
}

// Checked on 7.2.12: entry_len 8/15/16/17/32 are accepted when the bytes past 16 are zero (a shorter entry is
// zero-extended), E2BIG otherwise; entry_len 1 works too (selftest: "entry_len sizeof+1 or 1").
TEST_F(SimInvalidate, EntryLengths) {
  for (std::uint32_t len : {1U, 8U, 15U, 16U, 17U, 32U}) {
    std::vector<std::byte> e(2 * len);
    e[0] = e[len] = std::byte{0x10};  // TLBI_NH_ALL
    auto o = raw(e, len, 2);
    EXPECT_EQ(err(o), 0) << "entry_len " << len;
    EXPECT_EQ(o.handled, 2U);
  }
  std::vector<std::byte> e(2 * 17);
  e[0] = e[17] = std::byte{0x10};
  e[17 + 16] = std::byte{1};  // the second entry's 17th byte
  auto o = raw(e, 17, 2);
  EXPECT_EQ(err(o), E2BIG);
  EXPECT_EQ(o.handled, 0U) << "the copy fails before any command is converted";
}

// arm_vsmmu_convert_user_cmd: TLBI_NH_{ALL,ASID,VA,VAA}, TLBI_NSNH_ALL, ATC_INV, CFGI_CD, CFGI_CD_ALL are
// forwarded; everything else is the VMM's job: EIO, with entry_num at the command.
TEST_F(SimInvalidate, AcceptedAndRefusedOpcodes) {
  const std::array accepted{op(Opcode::TLBI_NH_ALL), op(Opcode::TLBI_NH_ASID).set(Command::ASID, 3),
                            tlbi_nh_va(3, 0x1000), op(Opcode::TLBI_NH_VAA).set(Command::Address, 0x2000),
                            op(Opcode::TLBI_NSNH_ALL), cfgi_cd(kVsid), op(Opcode::CFGI_CD_ALL).set(Command::SID, kVsid),
                            op(Opcode::ATC_INV).set(Command::SID, kVsid).set(Command::Size, 52)};
  auto o = send(accepted);
  EXPECT_EQ(err(o), 0) << *o.error;
  EXPECT_EQ(o.handled, accepted.size());
  for (auto bad : {Opcode::CMD_SYNC, Opcode::CFGI_STE, Opcode::CFGI_STE_RANGE, Opcode::PREFETCH_CONFIG,
                   Opcode::PREFETCH_ADDR, Opcode::TLBI_EL2_ALL, Opcode::TLBI_EL2_VA, Opcode::TLBI_S12_VMALL,
                   Opcode::TLBI_S2_IPA, Opcode::RESUME, Opcode::PRI_RESP, Opcode::CFGI_VMS_PIDM}) {
    const std::array cmds{op(Opcode::TLBI_NH_ALL), op(bad)};
    auto r = send(cmds);
    EXPECT_EQ(err(r), EIO) << smmu::opcode_name(bad);
    EXPECT_EQ(r.handled, 1U) << smmu::opcode_name(bad);
  }
  std::array<std::byte, 16> undefined{};
  undefined[0] = std::byte{0xff};
  EXPECT_EQ(err(raw(undefined, 16, 1)), EIO);
  // A vSID no vDEVICE has: EIO.
  const std::array unknown{cfgi_cd(kVsid + 1)};
  EXPECT_EQ(err(send(unknown)), EIO);
}

// Partial failure (selftest: "entry_num=1"): entry_num says how far the kernel got; the commands converted in the
// current group before the bad one were not issued (arm_vsmmu_cache_invalidate in
// drivers/iommu/arm/arm-smmu-v3/arm-smmu-v3-iommufd.c).
TEST_F(SimInvalidate, PartialFailureReportsTheIndexAndDropsTheUnissuedGroup) {
  const auto before = counters();
  const std::array cmds{op(Opcode::TLBI_NH_ALL), op(Opcode::TLBI_NH_ASID), op(Opcode::TLBI_S2_IPA), op(Opcode::TLBI_NH_ALL)};
  auto o = send(cmds);
  EXPECT_EQ(err(o), EIO);
  EXPECT_EQ(o.handled, 2U);
  EXPECT_EQ(counters().commands, before.commands) << "nothing reached the SMMU: the group was never issued";
}

// The kernel issues converted commands in groups of up to 63, each followed by a CMD_SYNC
// (CMDQ_BATCH_ENTRIES - 1); an error after a full group leaves that group issued.
TEST_F(SimInvalidate, GroupsOf63EachFollowedByCmdSync) {
  std::vector<Command> cmds(130, op(Opcode::TLBI_NH_ALL));
  auto before = counters();
  auto o = send(cmds);
  ASSERT_EQ(err(o), 0);
  EXPECT_EQ(o.handled, 130U);
  auto after = counters();
  EXPECT_EQ(after.syncs - before.syncs, 3U) << "63 + 63 + 4";
  EXPECT_EQ(after.commands - before.commands, 133U);
  EXPECT_EQ(after.model.syncs - before.model.syncs, 3U) << "the model completed three CMD_SYNCs";

  cmds[64] = op(Opcode::CMD_SYNC);
  before = counters();
  o = send(cmds);
  EXPECT_EQ(err(o), EIO);
  EXPECT_EQ(o.handled, 64U);
  after = counters();
  EXPECT_EQ(after.commands - before.commands, 64U) << "the first group of 63 and its CMD_SYNC; entry 63 was not issued";
}

// A command the SMMU itself rejects (here ATC_INV on an SMMU without ATS) is skipped by the driver as
// arm_smmu_cmdq_skip_err does (replaced by a CMD_SYNC, logged): the ioctl succeeds.
TEST(SimInvalidateSkip, CommandTheSmmuRejectsIsSkippedAndTheIoctlSucceeds) {
  auto host = make_host();
  ASSERT_TRUE(host);
  const auto dev = must(host->bind_device("gpu0"));
  const auto ioas = must(host->ioas_alloc());
  const auto parent = must(host->hwpt_alloc(paging_request(dev, ioas, uapi::kHwptAllocNestParent)));
  const auto viommu = must(host->viommu_alloc(dev, parent, uapi::kViommuTypeArmSmmuv3));
  ASSERT_TRUE(host->vdevice_alloc(viommu, dev, 9));
  const auto before = must(host->smmu_counters("smmu1"));
  const std::array cmds{op(Opcode::ATC_INV).set(Command::SID, 9), op(Opcode::TLBI_NH_ALL)};
  auto o = invalidate(*host, viommu, cmds);
  EXPECT_FALSE(o.error);
  EXPECT_EQ(o.handled, 2U);
  const auto after = must(host->smmu_counters("smmu1"));
  EXPECT_EQ(after.command_errors - before.command_errors, 1U);
  EXPECT_EQ(after.model.command_errors - before.model.command_errors, 1U);
}

// The per-opcode checks in flight upstream (kernel profile "strict-invalidation"): EIO where upstream today
// passes the command through (and the SMMU may skip it).
class SimInvalidateStrict : public SimInvalidate {
  const char* kernel_profile() const override { return "strict-invalidation"; }
};

TEST_F(SimInvalidateStrict, FieldChecks) {
  Command res0 = tlbi_nh_va(1, 0x1000);
  res0.dw[0] |= 1ULL << 10;  // not a TLBI_NH_VA field
  const std::array a{op(Opcode::TLBI_NH_ALL), res0};
  auto o = send(a);
  EXPECT_EQ(err(o), EIO);
  EXPECT_EQ(o.handled, 1U);
  const std::array ttl{tlbi_nh_va(1, 0x1000).set(Command::TTL, 2)};
  EXPECT_EQ(err(send(ttl)), EIO) << "a TTL hint without a TG";
  const std::array atc{op(Opcode::ATC_INV).set(Command::SID, kVsid).set(Command::Size, 53)};
  EXPECT_EQ(err(send(atc)), EIO);
  const std::array good{tlbi_nh_va(1, 0x1000).set(Command::TG, 1).set(Command::TTL, 3), cfgi_cd(kVsid, 5)};
  EXPECT_EQ(err(send(good)), 0) << "smmu0 has RIL and 20-bit SSIDs";
}

TEST_F(SimInvalidate, UpstreamPassesTheSameFieldsThrough) {
  Command res0 = tlbi_nh_va(1, 0x1000);
  res0.dw[0] |= 1ULL << 10;
  const auto before = counters();
  const std::array a{res0, tlbi_nh_va(1, 0x1000).set(Command::TTL, 2)};
  auto o = send(a);
  EXPECT_EQ(err(o), 0);
  EXPECT_EQ(o.handled, 2U);
  // The physical SMMU judges them as every SMMU of the project does (smmu/command_legality): a RES0 bit, and a
  // TTL with TG = 0, where TTL is RES0 too (IHI 0070 4.4.1.1), are both CERROR_ILL.
  EXPECT_EQ(counters().command_errors - before.command_errors, 2U) << "the SMMU rejected both (CERROR_ILL)";
}

TEST(SimInvalidateStrictProfile, RangeFieldsNeedRilAndSsidsFitTheSmmu) {
  auto host = make_host("strict-invalidation");
  ASSERT_TRUE(host);
  const auto dev = must(host->bind_device("gpu0"));  // smmu1: no RIL, 8-bit SSIDs
  const auto ioas = must(host->ioas_alloc());
  const auto parent = must(host->hwpt_alloc(paging_request(dev, ioas, uapi::kHwptAllocNestParent)));
  const auto viommu = must(host->viommu_alloc(dev, parent, uapi::kViommuTypeArmSmmuv3));
  ASSERT_TRUE(host->vdevice_alloc(viommu, dev, 4));
  const std::array range{tlbi_nh_va(1, 0x1000).set(Command::TG, 1).set(Command::NUM, 3)};
  auto o = invalidate(*host, viommu, range);
  ASSERT_TRUE(o.error);
  EXPECT_EQ(o.error->err, EIO);
  EXPECT_NE(o.error->message.find("RIL"), std::string::npos) << *o.error;
  const std::array ssid{cfgi_cd(4, 1U << 8)};
  EXPECT_EQ(invalidate(*host, viommu, ssid).error->err, EIO) << "SSID wider than smmu1's 8 bits";
}

// The rewrites, seen through the SMMU's caches: the guest's VMID is replaced by the vIOMMU's (a bogus one
// still invalidates), TLBI_NSNH_ALL becomes TLBI_NH_ALL of that VMID, and CFGI_CD's vSID becomes the device's
// pSID (the cached CD goes; with the guest's CD now invalid the next DMA gets C_BAD_CD, forwarded with the
// vSID).
TEST(SimInvalidateRewrite, VmidAndSidReachThePhysicalSmmu) {
  constexpr std::uint64_t kVa = 0x7000'0000;
  for (int variant = 0; variant < 3; ++variant) {
    auto host = make_host();
    ASSERT_TRUE(host);
    GuestRam ram(32 << 20);
    GuestStage1 guest(ram);
    guest.map(kVa, GuestRam::kBase + 0x10'0000, 0x1000);
    NestedSetup s;
    const auto vste = guest.vste();
    build_nested(*host, ram, vste, s);
    ASSERT_TRUE(s.attachment);
    const std::array<std::byte, 8> data{std::byte{7}};
    ASSERT_TRUE(must(host->dma_write("nic0.dma", kVa, data)).ok());
    Command cmd;
    if (variant == 0) {
      ASSERT_TRUE(guest.tables.unmap(kVa, 0x1000));
      cmd = tlbi_nh_va(GuestStage1::kAsid, kVa).set(Command::VMID, 0xbeef);
    } else if (variant == 1) {
      ASSERT_TRUE(guest.tables.unmap(kVa, 0x1000));
      cmd = op(Opcode::TLBI_NSNH_ALL);
    } else {
      ASSERT_TRUE(ram.view.write_record(guest.cd_ipa, smmu::Cd{}));  // CD.V = 0
      cmd = cfgi_cd(NestedSetup::kVsid);
    }
    ASSERT_TRUE(must(host->dma_write("nic0.dma", kVa, data)).ok()) << "variant " << variant << ": still cached";
    const std::array cmds{cmd};
    auto o = invalidate(*host, s.viommu.id(), cmds);
    ASSERT_FALSE(o.error) << *o.error;
    EXPECT_FALSE(must(host->dma_write("nic0.dma", kVa, data)).ok()) << "variant " << variant << ": invalidated";
    VeventqReader reader(*host, s.veventq.fd());
    auto recs = read_events(reader);
    ASSERT_EQ(recs.size(), 1U) << "variant " << variant;
    smmu::Event ev;
    ev.dw = recs[0].evt;
    EXPECT_EQ(ev.get(smmu::Event::SID), NestedSetup::kVsid);
    EXPECT_EQ(ev.get(smmu::Event::ID), variant == 2 ? smmu::EventId::C_BAD_CD : smmu::EventId::F_TRANSLATION);
  }
}

}  // namespace
}  // namespace vsmmu::host::sim::test

// I/O page faults on the simulated host: a device whose DMA stalls on a stage-1 fault (IHI 0070 3.12.2, CD.S = 1
// and STE.S1STALLD = 0 in the guest's structures), the stall arm-smmu-v3 reports as one fault group
// (arm_smmu_handle_event -> iommu_report_device_fault) to the fault queue of the device's nested HWPT, read and
// answered through the fault fd (drivers/iommu/iommufd/eventq.c iommufd_fault_fops_read/write), the answer
// becoming CMD_RESUME retry or abort (arm_smmu_page_response), and the kernel's clean-up of unanswered faults
// (iommufd_auto_response_faults on detach and replace).
#include <poll.h>
#include <unistd.h>

#include <cstring>
#include <set>

#include "tests/sim/host/sim_fixture.hpp"

namespace vsmmu::host::sim::test {
namespace {

constexpr std::uint64_t kVa = 0x7000'0000;                       // the guest process's buffer (unmapped at first)
constexpr std::uint64_t kBuf = GuestRam::kBase + (1ULL << 20);    // the guest pages the driver maps there
constexpr std::size_t kRec = sizeof(uapi::iommu_hwpt_pgfault);

std::vector<std::byte> pattern(std::size_t n, std::uint8_t seed) {
  std::vector<std::byte> v(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = std::byte(static_cast<std::uint8_t>(seed + i * 13));
  return v;
}

class SimIopf : public ::testing::Test {
 protected:
  // The VMM's objects for one device, with a fault queue on its nested HWPT (unless `with_fault` is false).
  struct Setup {
    DeviceId dev = 0;
    ObjectId ioas = 0, parent = 0, viommu = 0, vdevice = 0, fault = 0, nested = 0;
    int fault_fd = -1;
  };

  void SetUp() override { start("upstream"); }
  void start(std::string_view kernel) {
    host = make_host(kernel, "stall");
    ASSERT_TRUE(host);
    ram = std::make_unique<GuestRam>(16 << 20);
    guest = std::make_unique<GuestStage1>(*ram);
    set_cd_stall(true);
  }
  // The guest's CD.S: its driver asks for stalls (Linux sets it for a stall_enabled master).
  void set_cd_stall(bool s) {
    auto cd = ram->view.read_record<smmu::Cd>(guest->cd_ipa);
    ASSERT_TRUE(cd);
    ASSERT_TRUE(ram->view.write_record(guest->cd_ipa, cd->set(smmu::Cd::S, s)));
  }
  Setup build(const char* device = "acc0", bool with_fault = true, bool s1stalld = false) {
    Setup s;
    s.dev = must(host->bind_device(device));
    s.ioas = must(host->ioas_alloc());
    EXPECT_EQ(must(host->ioas_map_file(s.ioas, ram->fd.get(), 0, ram->size, GuestRam::kBase, kMapRW)), GuestRam::kBase);
    s.parent = must(host->hwpt_alloc(paging_request(s.dev, s.ioas, uapi::kHwptAllocNestParent)));
    s.viommu = must(host->viommu_alloc(s.dev, s.parent, uapi::kViommuTypeArmSmmuv3));
    s.vdevice = must(host->vdevice_alloc(s.viommu, s.dev, NestedSetup::kVsid));
    if (with_fault) {
      auto f = must(host->fault_queue_alloc());
      s.fault = f.id;
      s.fault_fd = f.fd;
    }
    smmu::Ste vste;
    auto w = guest->vste();
    std::memcpy(vste.dw.data(), w.data(), 16);
    vste.set(smmu::Ste::S1STALLD, s1stalld);
    const auto words = GuestStage1::words(vste);
    auto req = nested_request(s.dev, s.viommu, words);
    if (with_fault) req.fault_id = s.fault;
    s.nested = must(host->hwpt_alloc(req));
    EXPECT_TRUE(host->attach(s.dev, s.nested));
    return s;
  }
  // The VMM's teardown, children first (the fault fd may be closed already).
  void teardown(Setup& s) {
    const auto ok = [](const Result<void>& r) { EXPECT_TRUE(r) << r.error(); };
    if (s.dev) ok(host->detach(s.dev));
    if (s.nested) ok(host->destroy(s.nested));
    if (s.fault_fd >= 0) ::close(s.fault_fd);
    if (s.fault) ok(host->destroy(s.fault));
    if (s.vdevice) ok(host->destroy(s.vdevice));
    if (s.viommu) ok(host->destroy(s.viommu));
    if (s.parent) ok(host->destroy(s.parent));
    if (s.ioas) ok(host->destroy(s.ioas));
    if (s.dev) ok(host->unbind_device(s.dev));
    s = Setup{};
  }
  void expect_nothing_left() { EXPECT_EQ(host->stats().held(), ""); }

  std::vector<uapi::iommu_hwpt_pgfault> read_faults(const Setup& s, std::size_t max = 16) {
    std::vector<std::byte> buf(max * kRec);
    auto n = host->read_fault_queue(s.fault_fd, buf);
    EXPECT_TRUE(n) << n.error();
    std::vector<uapi::iommu_hwpt_pgfault> out(n ? *n / kRec : 0);
    if (!out.empty()) std::memcpy(out.data(), buf.data(), out.size() * kRec);
    return out;
  }
  Result<std::size_t> respond(const Setup& s, std::uint32_t cookie, std::uint32_t code) {
    uapi::iommu_hwpt_page_response r{cookie, code};
    return host->write_fault_queue(s.fault_fd, std::as_bytes(std::span(&r, 1)));
  }
  bool readable(const Setup& s) {
    pollfd p{s.fault_fd, POLLIN, 0};
    return ::poll(&p, 1, 0) == 1 && (p.revents & POLLIN);
  }

  std::unique_ptr<SimHost> host;
  std::unique_ptr<GuestRam> ram;
  std::unique_ptr<GuestStage1> guest;
};

// A stall becomes one group of one record with the kernel's fields: LAST_PAGE, grpid = STAG, perm from RnW,
// addr = the faulting input address, dev_id, cookie from 1 (arm_smmu_handle_event, iommufd_compose_fault_message,
// xa_alloc of XA_FLAGS_ALLOC1); the fd is readable while a group waits (iommufd_eventq_fops_poll); the stall is
// not an event for the vEVENTQ.
TEST_F(SimIopf, StallIsOneGroupWithTheKernelsFields) {
  auto s = build();
  EXPECT_FALSE(readable(s));
  const auto data = pattern(64, 1);
  auto r = must(host->dma_write("acc0.dma", kVa + 0x10, data));
  ASSERT_TRUE(r.pending());
  EXPECT_FALSE(r.fault);
  EXPECT_EQ(r.bytes, 0U);
  EXPECT_TRUE(r.stalled->event.get(smmu::Event::Stall));
  EXPECT_TRUE(readable(s));
  auto st = host->stats();
  EXPECT_EQ(st.fault_groups, 1U);
  EXPECT_EQ(st.stalled_transactions, 1U);
  EXPECT_EQ(st.pending_dma, 1U);
  EXPECT_EQ(st.events_forwarded, 0U);
  auto f = read_faults(s);
  ASSERT_EQ(f.size(), 1U);
  EXPECT_EQ(f[0].flags, uapi::kPgfaultFlagsLastPage);
  EXPECT_EQ(f[0].dev_id, s.dev);
  EXPECT_EQ(f[0].pasid, 0U);
  EXPECT_EQ(f[0].grpid, r.stalled->stag);
  EXPECT_EQ(f[0].perm, uapi::kPgfaultPermWrite);
  EXPECT_EQ(f[0].addr, kVa + 0x10);
  EXPECT_EQ(f[0].length, 0U);
  EXPECT_EQ(f[0].cookie, 1U);
  EXPECT_FALSE(readable(s)) << "the group was read";
  EXPECT_TRUE(read_faults(s).empty()) << "nothing more: 0 bytes";
  ASSERT_TRUE(respond(s, 1, uapi::kPageResponseInvalid));
  teardown(s);
  expect_nothing_left();
}

// The guest maps the page and answers SUCCESS: CMD_RESUME(retry), the burst is translated again and the whole
// write lands (IHI 0070 3.12.2); until then the engine refuses another transfer.
TEST_F(SimIopf, SuccessAfterMappingCompletesTheWrite) {
  auto s = build();
  const auto data = pattern(3 * 4096, 2);
  guest->map(kVa, kBuf, 0x1000);  // the first page only: the second burst stalls
  auto r = must(host->dma_write("acc0.dma", kVa, data));
  ASSERT_TRUE(r.pending());
  EXPECT_EQ(r.bytes, 4096U) << "the burst before the stall landed";
  EXPECT_EQ(r.stalled->iova, kVa + 0x1000);
  EXPECT_EQ(err_of(host->dma_write("acc0.dma", kVa, data)), EBUSY);
  auto f = read_faults(s);
  ASSERT_EQ(f.size(), 1U);
  guest->map(kVa + 0x1000, kBuf + 0x1000, 0x2000);
  EXPECT_EQ(must(respond(s, f[0].cookie, uapi::kPageResponseSuccess)), 8U);
  auto done = must(host->dma_outcome("acc0.dma"));
  EXPECT_TRUE(done.ok());
  EXPECT_EQ(done.bytes, data.size());
  EXPECT_EQ(std::memcmp(ram->at(kBuf), data.data(), data.size()), 0);
  EXPECT_EQ(err_of(host->dma_outcome("acc0.dma")), ENOENT) << "collected once";
  EXPECT_EQ(host->stats().stalled_transactions, 0U);
  teardown(s);
  expect_nothing_left();
}

// A read resumed after mapping returns the guest's bytes through dma_outcome.
TEST_F(SimIopf, SuccessAfterMappingCompletesTheRead) {
  auto s = build();
  const auto data = pattern(256, 3);
  std::memcpy(ram->at(kBuf + 0x80), data.data(), data.size());
  std::vector<std::byte> out(256);
  auto r = must(host->dma_read("acc0.dma", kVa + 0x80, out));
  ASSERT_TRUE(r.pending());
  auto f = read_faults(s);
  ASSERT_EQ(f.size(), 1U);
  EXPECT_EQ(f[0].perm, uapi::kPgfaultPermRead);
  guest->map(kVa, kBuf, 0x1000);
  ASSERT_TRUE(respond(s, f[0].cookie, uapi::kPageResponseSuccess));
  auto done = must(host->dma_outcome("acc0.dma", out));
  EXPECT_TRUE(done.ok());
  EXPECT_EQ(out, data);
  teardown(s);
  expect_nothing_left();
}

// INVALID: CMD_RESUME(abort); the transfer ends with an abort and writes nothing.
TEST_F(SimIopf, InvalidAbortsTheTransfer) {
  auto s = build();
  const auto data = pattern(64, 4);
  ASSERT_TRUE(must(host->dma_write("acc0.dma", kVa, data)).pending());
  auto f = read_faults(s);
  ASSERT_EQ(f.size(), 1U);
  guest->map(kVa, kBuf, 0x1000);  // mapped, but the answer is abort
  ASSERT_TRUE(respond(s, f[0].cookie, uapi::kPageResponseInvalid));
  auto done = must(host->dma_outcome("acc0.dma"));
  ASSERT_TRUE(done.fault);
  EXPECT_EQ(done.fault->outcome, smmu::model::DmaOutcome::aborted);
  EXPECT_EQ(done.bytes, 0U);
  EXPECT_EQ(*ram->at(kBuf), std::byte{0});
  teardown(s);
  expect_nothing_left();
}

// A retry that still faults stalls again: a new group with a new STAG (IHI 0070 4.7.1, retried "as though it had
// just arrived").
TEST_F(SimIopf, RetryWithoutMappingStallsAgain) {
  auto s = build();
  const std::array<std::byte, 8> data{std::byte{9}};
  ASSERT_TRUE(must(host->dma_write("acc0.dma", kVa, data)).pending());
  auto f = read_faults(s);
  ASSERT_EQ(f.size(), 1U);
  ASSERT_TRUE(respond(s, f[0].cookie, uapi::kPageResponseSuccess));
  auto again = read_faults(s);
  ASSERT_EQ(again.size(), 1U);
  EXPECT_NE(again[0].grpid, f[0].grpid);
  EXPECT_EQ(again[0].cookie, 1U) << "cookie 1 is free again";
  EXPECT_TRUE(must(host->dma_outcome("acc0.dma")).pending());
  guest->map(kVa, kBuf, 0x1000);
  ASSERT_TRUE(respond(s, again[0].cookie, uapi::kPageResponseSuccess));
  EXPECT_TRUE(must(host->dma_outcome("acc0.dma")).ok());
  EXPECT_EQ(*ram->at(kBuf), std::byte{9});
  teardown(s);
  expect_nothing_left();
}

// iommufd_fault_fops_read/write: a count that is not whole records is ESPIPE; a buffer too small for the next
// group returns 0 and keeps it; a response whose cookie no read group awaits is EINVAL (so is one answered twice,
// and a code other than SUCCESS/INVALID); responses before a bad one are applied and counted.
TEST_F(SimIopf, ReadAndWriteRules) {
  auto s = build();
  const std::array<std::byte, 8> data{};
  ASSERT_TRUE(must(host->dma_write("acc0.dma", kVa, data)).pending());
  std::vector<std::byte> buf(2 * kRec);
  EXPECT_EQ(err_of(host->read_fault_queue(s.fault_fd, std::span(buf).first(kRec - 1))), ESPIPE);
  EXPECT_EQ(err_of(host->read_fault_queue(s.fault_fd, std::span(buf).first(kRec + 1))), ESPIPE);
  EXPECT_EQ(must(host->read_fault_queue(s.fault_fd, std::span(buf).first(0))), 0U);
  EXPECT_TRUE(readable(s)) << "nothing was taken";
  ASSERT_EQ(must(host->read_fault_queue(s.fault_fd, buf)), kRec) << "one group of one record";
  std::array<std::byte, 7> odd{};
  EXPECT_EQ(err_of(host->write_fault_queue(s.fault_fd, odd)), ESPIPE);
  EXPECT_EQ(err_of(respond(s, 2, uapi::kPageResponseSuccess)), EINVAL) << "no group has cookie 2";
  EXPECT_EQ(err_of(respond(s, 1, 2)), EINVAL) << "code 2 is neither SUCCESS nor INVALID";
  std::array<uapi::iommu_hwpt_page_response, 2> two{{{1, uapi::kPageResponseInvalid}, {1, uapi::kPageResponseInvalid}}};
  EXPECT_EQ(must(host->write_fault_queue(s.fault_fd, std::as_bytes(std::span(two)))), 8U)
      << "the first is applied, the second (the same cookie again) stops the write";
  EXPECT_EQ(err_of(respond(s, 1, uapi::kPageResponseInvalid)), EINVAL) << "answered once only";
  EXPECT_EQ(must(host->dma_outcome("acc0.dma")).fault->outcome, smmu::model::DmaOutcome::aborted);
  teardown(s);
  expect_nothing_left();
}

// Several engines of the device stall at once: each stall is its own group, read together, cookies distinct,
// answered in any order.
TEST_F(SimIopf, ManyOutstandingFaults) {
  auto s = build();
  const std::vector<std::string> engines{"acc0.dma", "acc0.q1", "acc0.q2", "acc0.q3"};
  for (std::size_t i = 0; i < engines.size(); ++i) {
    const std::array<std::byte, 4> data{std::byte(static_cast<std::uint8_t>(0x10 + i))};
    ASSERT_TRUE(must(host->dma_write(engines[i], kVa + i * 0x1000, data)).pending());
  }
  EXPECT_EQ(host->stats().stalled_transactions, engines.size());
  auto f = read_faults(s);
  ASSERT_EQ(f.size(), engines.size());
  std::set<std::uint32_t> cookies, stags;
  for (const auto& x : f) {
    cookies.insert(x.cookie);
    stags.insert(x.grpid);
  }
  EXPECT_EQ(cookies.size(), engines.size());
  EXPECT_EQ(stags.size(), engines.size());
  guest->map(kVa, kBuf, engines.size() * 0x1000);
  for (auto it = f.rbegin(); it != f.rend(); ++it) ASSERT_TRUE(respond(s, it->cookie, uapi::kPageResponseSuccess));
  for (std::size_t i = 0; i < engines.size(); ++i) {
    EXPECT_TRUE(must(host->dma_outcome(engines[i])).ok()) << engines[i];
    EXPECT_EQ(*ram->at(kBuf + i * 0x1000), std::byte(static_cast<std::uint8_t>(0x10 + i)));
  }
  teardown(s);
  expect_nothing_left();
}

// No fault queue on the domain: iommu_report_device_fault finds no iopf handler and iopf_error_response answers
// INVALID, which arm_smmu_page_response turns into CMD_RESUME(abort): the transfer fails at once.
TEST_F(SimIopf, StallWithoutAFaultQueueIsAbortedByTheKernel) {
  auto s = build("acc0", /*with_fault=*/false);
  const std::array<std::byte, 8> data{};
  auto r = must(host->dma_write("acc0.dma", kVa, data));
  EXPECT_FALSE(r.pending());
  ASSERT_TRUE(r.fault);
  EXPECT_EQ(r.fault->outcome, smmu::model::DmaOutcome::aborted);
  EXPECT_EQ(host->stats().stalls_aborted, 1U);
  EXPECT_EQ(host->stats().stalled_transactions, 0U);
  teardown(s);
  expect_nothing_left();
}

// STE.S1STALLD = 1 with CD.S = 1 makes the CD ILLEGAL (IHI 0070 5.5): C_BAD_CD and an abort; CD.S = 0 is the
// terminate model: an abort and an F_TRANSLATION event for the vEVENTQ path, no fault group.
TEST_F(SimIopf, S1StalldOrCdSClearTerminates) {
  auto s = build("acc0", true, /*s1stalld=*/true);
  const std::array<std::byte, 8> data{};
  auto r = must(host->dma_write("acc0.dma", kVa, data));
  ASSERT_TRUE(r.fault);
  EXPECT_FALSE(r.pending());
  EXPECT_EQ(r.fault->event->get(smmu::Event::ID), smmu::EventId::C_BAD_CD);
  teardown(s);
  set_cd_stall(false);
  s = build();
  r = must(host->dma_write("acc0.dma", kVa, data));
  ASSERT_TRUE(r.fault);
  EXPECT_EQ(r.fault->event->get(smmu::Event::ID), smmu::EventId::F_TRANSLATION);
  EXPECT_FALSE(r.fault->event->get(smmu::Event::Stall));
  EXPECT_EQ(host->stats().fault_groups, 0U);
  teardown(s);
  expect_nothing_left();
}

// Detaching with faults pending, read or not: iommufd_hwpt_detach_device answers them INVALID
// (iommufd_auto_response_faults): the transfers abort, the cookies are gone, nothing is left.
TEST_F(SimIopf, DetachAnswersPendingFaultsInvalid) {
  auto s = build();
  const std::array<std::byte, 4> data{};
  ASSERT_TRUE(must(host->dma_write("acc0.dma", kVa, data)).pending());
  auto f = read_faults(s);  // one read, awaiting its answer
  ASSERT_EQ(f.size(), 1U);
  ASSERT_TRUE(must(host->dma_write("acc0.q1", kVa + 0x1000, data)).pending());  // one unread
  EXPECT_EQ(host->stats().fault_groups, 2U);
  ASSERT_TRUE(host->detach(s.dev));
  EXPECT_EQ(must(host->dma_outcome("acc0.dma")).fault->outcome, smmu::model::DmaOutcome::aborted);
  EXPECT_EQ(must(host->dma_outcome("acc0.q1")).fault->outcome, smmu::model::DmaOutcome::aborted);
  EXPECT_EQ(err_of(respond(s, f[0].cookie, uapi::kPageResponseSuccess)), EINVAL);
  EXPECT_FALSE(readable(s));
  EXPECT_EQ(host->stats().fault_groups, 0U);
  EXPECT_EQ(host->stats().stalled_transactions, 0U);
  teardown(s);
  expect_nothing_left();
}

// Replacing the domain answers the old domain's faults of the device INVALID (iommufd_hwpt_replace_device).
TEST_F(SimIopf, ReplaceAnswersTheOldDomainsFaults) {
  auto s = build();
  const std::array<std::byte, 4> data{};
  ASSERT_TRUE(must(host->dma_write("acc0.dma", kVa, data)).pending());
  const auto abort_hwpt = must(host->hwpt_alloc(nested_request(s.dev, s.viommu, vste_config(smmu::StreamConfig::abort))));
  ASSERT_TRUE(host->attach(s.dev, abort_hwpt));
  EXPECT_EQ(must(host->dma_outcome("acc0.dma")).fault->outcome, smmu::model::DmaOutcome::aborted);
  EXPECT_EQ(host->stats().fault_groups, 0U);
  ASSERT_TRUE(host->detach(s.dev));
  EXPECT_TRUE(host->destroy(abort_hwpt));
  teardown(s);
  expect_nothing_left();
}

// Closing the fault fd answers nothing (iommufd_eventq_fops_release only drops its reference): the device stays
// stalled until the domain goes; unbinding the device detaches it and answers INVALID; nothing is left.
TEST_F(SimIopf, ClosedFdKeepsFaultsUntilTheDeviceGoes) {
  auto s = build();
  const std::array<std::byte, 4> data{};
  ASSERT_TRUE(must(host->dma_write("acc0.dma", kVa, data)).pending());
  ::close(s.fault_fd);
  s.fault_fd = -1;
  EXPECT_EQ(host->stats().stalled_transactions, 1U);
  EXPECT_EQ(host->stats().fault_groups, 1U);
  EXPECT_EQ(err_of(host->destroy(s.fault)), EBUSY) << "the nested HWPT still reports to it";
  ASSERT_TRUE(host->unbind_device(s.dev));
  s.dev = 0;
  s.vdevice = 0;  // closing the cdev destroys the vDEVICE too (6.17 on)
  EXPECT_EQ(must(host->dma_outcome("acc0.dma")).fault->outcome, smmu::model::DmaOutcome::aborted);
  EXPECT_EQ(host->stats().stalled_transactions, 0U);
  EXPECT_EQ(host->stats().fault_groups, 0U);
  teardown(s);
  expect_nothing_left();
}

// master->stall_enabled: acc0 has dma-can-stall behind a stall-capable SMMU; nic0 has not; the default profile's
// SMMUs are terminate-only. Upstream attaches a fault-queue HWPT to nic0 (arm_smmu_enable_iopf does nothing for
// it), and a stall it causes is aborted; the iopf-needs-stall kernel refuses the attach with EINVAL.
TEST_F(SimIopf, StallCapabilityAndAttachOfANonStallingDevice) {
  auto s = build("nic0");
  EXPECT_FALSE(must(host->device_can_stall(s.dev)));
  const std::array<std::byte, 4> data{};
  auto r = must(host->dma_write("nic0.dma", kVa, data));
  ASSERT_TRUE(r.fault);
  EXPECT_EQ(host->stats().fault_groups, 0U);
  teardown(s);
  s = build("acc0");
  EXPECT_TRUE(must(host->device_can_stall(s.dev)));
  teardown(s);
  expect_nothing_left();

  start("iopf-needs-stall");
  const auto dev = must(host->bind_device("nic0"));
  const auto ioas = must(host->ioas_alloc());
  const auto parent = must(host->hwpt_alloc(paging_request(dev, ioas, uapi::kHwptAllocNestParent)));
  const auto fault = must(host->fault_queue_alloc());
  auto req = paging_request(dev, ioas, 0);
  req.fault_id = fault.id;
  const auto hwpt = must(host->hwpt_alloc(req));
  EXPECT_EQ(err_of(host->attach(dev, hwpt)), EINVAL);
  EXPECT_TRUE(host->attach(dev, parent)) << "without a fault queue it attaches";
  EXPECT_TRUE(host->detach(dev));
  EXPECT_TRUE(host->destroy(hwpt));
  ::close(fault.fd);
  EXPECT_TRUE(host->destroy(fault.id));
  EXPECT_TRUE(host->destroy(parent));
  EXPECT_TRUE(host->destroy(ioas));
  EXPECT_TRUE(host->unbind_device(dev));
  expect_nothing_left();

  auto plain = make_host();
  const auto d = must(plain->bind_device("nic0"));
  EXPECT_FALSE(must(plain->device_can_stall(d))) << "the default profile's SMMUs cannot stall";
  EXPECT_TRUE(plain->unbind_device(d));
}

// fail_nth over the setup with a fault queue: every failure leaves nothing behind, and past the last call a
// stall is delivered and answered.
TEST_F(SimIopf, FailNthLeavesNothingBehind) {
  for (unsigned n = 1;; ++n) {
    host->set_fail_nth(n);
    Setup s;
    Result<void> r = [&]() -> Result<void> {
      VSMMU_TRY_ASSIGN(s.dev, host->bind_device("acc0"));
      VSMMU_TRY_ASSIGN(s.ioas, host->ioas_alloc());
      VSMMU_TRY(host->ioas_map_file(s.ioas, ram->fd.get(), 0, ram->size, GuestRam::kBase, kMapRW));
      VSMMU_TRY_ASSIGN(s.parent, host->hwpt_alloc(paging_request(s.dev, s.ioas, uapi::kHwptAllocNestParent)));
      VSMMU_TRY_ASSIGN(s.viommu, host->viommu_alloc(s.dev, s.parent, uapi::kViommuTypeArmSmmuv3));
      VSMMU_TRY_ASSIGN(s.vdevice, host->vdevice_alloc(s.viommu, s.dev, NestedSetup::kVsid));
      VSMMU_TRY_ASSIGN(auto f, host->fault_queue_alloc());
      s.fault = f.id;
      s.fault_fd = f.fd;
      const auto vste = guest->vste();  // the request points at these bytes: they must outlive it
      auto req = nested_request(s.dev, s.viommu, vste);
      req.fault_id = s.fault;
      VSMMU_TRY_ASSIGN(s.nested, host->hwpt_alloc(req));
      VSMMU_TRY(host->attach(s.dev, s.nested));
      return {};
    }();
    if (r) {
      EXPECT_FALSE(host->fail_nth_fired());
      const std::array<std::byte, 4> data{};
      EXPECT_TRUE(must(host->dma_write("acc0.dma", kVa, data)).pending());
      EXPECT_EQ(read_faults(s).size(), 1U);
    } else {
      EXPECT_EQ(r.error().err, ENOMEM) << r.error();
    }
    teardown(s);  // detach first: the stall is answered INVALID
    if (r) {
      EXPECT_EQ(must(host->dma_outcome("acc0.dma")).fault->outcome, smmu::model::DmaOutcome::aborted);
    }
    expect_nothing_left();
    if (r) break;
    ASSERT_LT(n, 20U);
  }
}

}  // namespace
}  // namespace vsmmu::host::sim::test

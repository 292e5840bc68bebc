// Viommu (nesting/viommu.hpp) on a fake host: the iommufd objects one physical SMMU behind a vSMMU needs, what a
// guest's vSTE becomes on the host, invalidation batches and refusals, vEVENTQs - and that every failure leaves
// nothing behind and every object goes in the order the kernel accepts.
#include <gtest/gtest.h>

#include <cstring>

#include "nesting/viommu.hpp"
#include "tests/unit/nesting/fake_host.hpp"

namespace vsmmu::nesting::test {
namespace {

using smmu::Command;
using smmu::Opcode;
using smmu::Ste;

constexpr host::DeviceId kDev = 1;       // on SMMU 0
constexpr host::DeviceId kSibling = 2;   // on SMMU 0 too
constexpr host::DeviceId kOther = 3;     // on SMMU 1

class ViommuTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ioas_ = *host_.ioas_alloc();
    dirty_ = std::make_unique<DirtyTracker>(host_, ioas_);
  }
  std::unique_ptr<Viommu> make() {
    auto v = Viommu::create(host_, stats_, *dirty_, kDev, ioas_, *host_.get_hw_info(kDev), "physical SMMU 0", "test device");
    EXPECT_TRUE(v) << v.error();
    return v ? std::move(*v) : nullptr;
  }
  static Ste translating_vste(std::uint64_t cd_table, unsigned cdmax = 0) {
    return Ste{}
        .set(Ste::V, true)
        .set(Ste::Config, smmu::StreamConfig::s1_translate)
        .set(Ste::S1ContextPtr, cd_table)
        .set(Ste::S1CDMax, cdmax);
  }
  // The vSTE words the host was given for HWPT `id`.
  std::array<std::uint64_t, 2> vste_of(host::ObjectId id) {
    std::array<std::uint64_t, 2> w{};
    std::memcpy(w.data(), host_.objects.at(id).data.data(), 16);
    return w;
  }

  FakeHost host_;
  host::ObjectId ioas_ = 0;
  ViommuStats stats_;  // what the Viommus under test count (a vSMMU's, in the product)
  std::unique_ptr<DirtyTracker> dirty_;  // the VM's dirty log the nest parents register with
};

// The nest parent is a paging HWPT on the guest's IOAS with NEST_PARENT; the vIOMMU sits on it; the abort and
// bypass HWPTs are nested HWPTs of the vSTEs {V, Config=abort} and {V, Config=bypass}.
TEST_F(ViommuTest, CreateAllocatesParentViommuAbortAndBypassAndReleasesThemChildFirst) {
  {
    auto v = make();
    ASSERT_TRUE(v);
    EXPECT_EQ(v->host_objects(), 4U);
    EXPECT_EQ(stats_.host_calls, 4U) << "nest parent, vIOMMU, abort HWPT, bypass HWPT";
    EXPECT_EQ(host_.count("hwpt"), 1U);
    EXPECT_EQ(host_.count("viommu"), 1U);
    EXPECT_EQ(host_.count("nested"), 2U);
    for (const auto& [id, o] : host_.objects)
      if (o.kind == "hwpt") {
        EXPECT_EQ(o.parent, std::optional<host::ObjectId>(ioas_));
        EXPECT_EQ(o.flags, host::uapi::kHwptAllocNestParent);
      }
  }
  EXPECT_TRUE(host_.destroy_errors.empty()) << host_.destroy_errors.front();
  EXPECT_EQ(host_.objects.size(), 1U) << "only the IOAS is left";
}

TEST_F(ViommuTest, CreateThatFailsAtAnyStepLeavesNothingOnTheHost) {
  for (const char* call : {"hwpt_alloc", "viommu_alloc"})
    for (int nth = 0; nth < 3; ++nth) {
      host_.fail_call = call;
      host_.fail_after = nth;
      const auto before = stats_.host_calls;
      auto v = Viommu::create(host_, stats_, *dirty_, kDev, ioas_, *host_.get_hw_info(kDev), "p", "test device");
      const bool failed = host_.fail_call.empty();
      host_.fail_call.clear();
      if (!failed) continue;  // fewer such calls than nth
      ASSERT_FALSE(v) << call << " #" << nth;
      EXPECT_EQ(v.error().err, ENOMEM);
      EXPECT_NE(v.error().to_string().find("test device"), std::string::npos) << v.error();
      EXPECT_EQ(host_.objects.size(), 1U) << call << " #" << nth;
      EXPECT_GT(stats_.host_calls, before) << "the calls a failed creation made are counted";
      EXPECT_TRUE(host_.destroy_errors.empty());
    }
}

// A refused vIOMMU is the kernel's coherency rule (neither S2FWB nor CANWBS): the message keeps the kernel's.
TEST_F(ViommuTest, AVIommuTheKernelRefusesIsCannotNestWithTheKernelsReason) {
  host_.coherent_smmus = {1};
  auto v = Viommu::create(host_, stats_, *dirty_, kDev, ioas_, *host_.get_hw_info(kDev), "p", "vsmmu0 device nic0");
  ASSERT_FALSE(v);
  EXPECT_EQ(v.error().err, EOPNOTSUPP);
  EXPECT_EQ(v.error().to_string(),
            "vsmmu: vsmmu0 device nic0: cannot nest: IOMMU_VIOMMU_ALLOC: neither S2FWB nor CANWBS (EOPNOTSUPP, errno 95)");
  EXPECT_EQ(host_.objects.size(), 1U);
}

TEST_F(ViommuTest, AcceptsTheDevicesOfItsOwnSmmuOnlyAndReleasesTheProbe) {
  auto v = make();
  ASSERT_TRUE(v);
  const auto before = host_.objects.size();
  auto same = v->accepts(kSibling, "sibling");
  ASSERT_TRUE(same) << same.error();
  EXPECT_TRUE(*same);
  auto other = v->accepts(kOther, "other");
  ASSERT_TRUE(other) << other.error();
  EXPECT_FALSE(*other) << "EINVAL: the nest parent belongs to another SMMU";
  EXPECT_EQ(host_.objects.size(), before);
  host_.fail_call = "viommu_alloc";
  host_.fail_errno = EOPNOTSUPP;
  auto refused = v->accepts(kSibling, "sibling");
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().err, EOPNOTSUPP);
}

TEST_F(ViommuTest, AbortAndBypassAttachTheirHwptsOnceEach) {
  auto v = make();
  auto s = v->open_stream(kDev, 0x10, "dev");
  ASSERT_TRUE(s) << s.error();
  EXPECT_EQ(s->state, StreamState::blocked);
  auto r = v->install(*s, StreamState::bypass, nullptr, false);
  ASSERT_TRUE(r && *r);
  const auto bypass = host_.attached.at(kDev);
  EXPECT_EQ(vste_of(bypass)[0], Ste{}.set(Ste::V, true).set(Ste::Config, smmu::StreamConfig::bypass).dw[0]);
  r = v->install(*s, StreamState::bypass, nullptr, false);
  ASSERT_TRUE(r);
  EXPECT_FALSE(*r) << "already bypassing: nothing to do on the host";
  EXPECT_EQ(stats_.attaches, 1U);
  EXPECT_EQ(stats_.ste_unchanged, 1U);
  r = v->install(*s, StreamState::abort, nullptr, false);
  ASSERT_TRUE(r && *r);
  EXPECT_NE(host_.attached.at(kDev), bypass);
  EXPECT_EQ(s->state, StreamState::abort);
}

// The host takes only STRTAB_STE_{0,1}_NESTING_ALLOWED (arm-smmu-v3-iommufd.c arm_smmu_validate_vste); S1Fmt
// and S1DSS are ignored without substreams (IHI 0070 5.2), so streams differing only there share a nested HWPT.
TEST_F(ViommuTest, TranslatingStreamsWithEqualVstesShareOneNestedHwptOfTheAllowedBitsOnly) {
  auto v = make();
  auto a = v->open_stream(kDev, 0x10, "a");
  auto b = v->open_stream(kSibling, 0x11, "b");
  ASSERT_TRUE(a && b);
  Ste va = translating_vste(0x8000'0000);
  va.set(Ste::S2FWB, true).set(Ste::MEV, true).set(Ste::EATS, smmu::Eats::translate);  // not the guest's to set
  Ste vb = translating_vste(0x8000'0000);
  vb.set(Ste::S1DSS, smmu::S1Dss::bypass);  // ignored: S1CDMax = 0
  ASSERT_TRUE(v->install(*a, StreamState::translate, &va, false));
  ASSERT_TRUE(v->install(*b, StreamState::translate, &vb, false));
  EXPECT_EQ(host_.attached.at(kDev), host_.attached.at(kSibling));
  EXPECT_EQ(stats_.hwpt_allocs, 1U);
  EXPECT_EQ(stats_.hwpt_shared, 1U);
  const auto words = vste_of(host_.attached.at(kDev));
  EXPECT_EQ(words[0] & ~smmu::kNestingAllowedWord0, 0U);
  EXPECT_EQ(words[1], 0U) << "S2FWB, MEV, EATS (no ATS) and S1DSS dropped";
  EXPECT_EQ(v->host_objects(), 5U);
}

// A stream whose faults stall gets a nested HWPT allocated with the fault queue (IOMMU_HWPT_FAULT_ID_VALID,
// include/uapi/linux/iommufd.h); equal vSTEs share a HWPT only when both stall or neither does, and a stream
// moving between the two is a host change (a replace).
TEST_F(ViommuTest, AStallingStreamsNestedHwptCarriesTheFaultQueueAndSharesOnlyWithStallingOnes) {
  constexpr host::ObjectId kFaultQueue = 77;
  auto v = make();
  auto a = v->open_stream(kDev, 0x10, "a");
  auto b = v->open_stream(kSibling, 0x11, "b");
  ASSERT_TRUE(a && b);
  const Ste vste = translating_vste(0x8000'0000);
  ASSERT_TRUE(v->install(*a, StreamState::translate, &vste, false, kFaultQueue));
  ASSERT_TRUE(v->install(*b, StreamState::translate, &vste, false));
  EXPECT_NE(host_.attached.at(kDev), host_.attached.at(kSibling));
  EXPECT_EQ(host_.objects.at(host_.attached.at(kDev)).fault_id, kFaultQueue);
  EXPECT_FALSE(host_.objects.at(host_.attached.at(kSibling)).fault_id);
  EXPECT_EQ(stats_.hwpt_allocs, 2U);
  EXPECT_FALSE(v->unchanged(*b, StreamState::translate, &vste, false, kFaultQueue));
  auto moved = v->install(*b, StreamState::translate, &vste, false, kFaultQueue);
  ASSERT_TRUE(moved && *moved);
  EXPECT_EQ(host_.attached.at(kDev), host_.attached.at(kSibling)) << "both stall now: one HWPT";
  EXPECT_EQ(stats_.hwpt_shared, 1U);
  EXPECT_TRUE(v->unchanged(*b, StreamState::translate, &vste, false, kFaultQueue));
}

TEST_F(ViommuTest, EatsReachesTheHostOnlyWhenTheVsmmuHasAts) {
  auto v = make();
  auto s = v->open_stream(kDev, 0x10, "a");
  Ste vste = translating_vste(0x8000'0000);
  vste.set(Ste::EATS, smmu::Eats::translate);
  ASSERT_TRUE(v->install(*s, StreamState::translate, &vste, true));
  Ste given{};
  given.dw[1] = vste_of(host_.attached.at(kDev))[1];
  EXPECT_EQ(given.get(Ste::EATS), smmu::Eats::translate);
}

// The same vSTE again changes nothing on the host (the kernel returns early for a domain replaced by itself):
// install says so, and its caller owes the CDs a CFGI_CD_ALL.
TEST_F(ViommuTest, TheSameVsteAgainIsNoHostChange) {
  auto v = make();
  auto s = v->open_stream(kDev, 0x10, "a");
  const Ste vste = translating_vste(0x8000'0000);
  auto first = v->install(*s, StreamState::translate, &vste, false);
  ASSERT_TRUE(first && *first);
  const auto attaches = stats_.attaches;
  auto again = v->install(*s, StreamState::translate, &vste, false);
  ASSERT_TRUE(again);
  EXPECT_FALSE(*again);
  EXPECT_EQ(stats_.attaches, attaches);
  // A new vSTE replaces the old one; the old nested HWPT, no longer used, is released.
  const Ste moved = translating_vste(0x8001'0000);
  ASSERT_TRUE(v->install(*s, StreamState::translate, &moved, false));
  EXPECT_EQ(host_.count("nested"), 3U) << "abort, bypass and the new one";
}

TEST_F(ViommuTest, AVsteTheHostRefusesLeavesTheStreamAsItWas) {
  auto v = make();
  auto s = v->open_stream(kDev, 0x10, "a");
  ASSERT_TRUE(v->install(*s, StreamState::bypass, nullptr, false));
  host_.fail_call = "hwpt_alloc";
  host_.fail_errno = EIO;
  const Ste vste = translating_vste(0x8000'0000);
  auto r = v->install(*s, StreamState::translate, &vste, false);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().err, EIO);
  EXPECT_NE(r.error().message.find("the host refused the vSTE"), std::string::npos) << r.error();
  EXPECT_EQ(s->state, StreamState::bypass);
}

TEST_F(ViommuTest, AnAttachThatFailsAbortsTheStreamAndWithoutAbortTheDeviceIsDetached) {
  auto v = make();
  auto s = v->open_stream(kDev, 0x10, "a");
  host_.fail_call = "attach";  // the bypass attach fails; the abort one then succeeds
  auto r = v->install(*s, StreamState::bypass, nullptr, false);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("attaching the bypass HWPT failed"), std::string::npos) << r.error();
  EXPECT_EQ(s->state, StreamState::abort);

  auto b = v->open_stream(kSibling, 0x11, "b");
  host_.fail_call = "attach";  // even the abort HWPT cannot be attached
  r = v->install(*b, StreamState::abort, nullptr, false);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("no HWPT could be attached"), std::string::npos) << r.error();
  EXPECT_EQ(b->state, StreamState::blocked);
  EXPECT_FALSE(host_.attached.contains(kSibling)) << "detached: the device blocks DMA";
}

TEST_F(ViommuTest, StreamsGoBeforeTheirViommuInTheKernelsOrder) {
  {
    auto v = make();
    auto s = v->open_stream(kDev, 0x10, "a");
    const Ste vste = translating_vste(0x8000'0000);
    ASSERT_TRUE(v->install(*s, StreamState::translate, &vste, false));
    ASSERT_TRUE(v->enable_events(64, "test"));
    // s (declared after v) is destroyed first: detach, nested HWPT, vDEVICE; then the Viommu.
  }
  EXPECT_TRUE(host_.destroy_errors.empty()) << host_.destroy_errors.front();
  EXPECT_EQ(host_.objects.size(), 1U);
  EXPECT_TRUE(host_.attached.empty());
}

Command tlbi_va(std::uint16_t asid, std::uint64_t va) {
  return Command{}.set(Command::Opcode, Opcode::TLBI_NH_VA).set(Command::ASID, asid).set(Command::Address, va >> 12);
}

TEST_F(ViommuTest, ABatchIsOneInvalidateOnTheViommuAndAnEmptyOneNone) {
  auto v = make();
  InvalidationBatch batch;
  EXPECT_FALSE(v->invalidate(batch));
  EXPECT_TRUE(host_.invalidations.empty()) << "the kernel refuses entry_num = 0";
  batch.add(tlbi_va(1, 0x1000), 0);
  batch.add(tlbi_va(1, 0x2000), 3);
  EXPECT_FALSE(v->invalidate(batch));
  ASSERT_EQ(host_.invalidations.size(), 1U);
  EXPECT_EQ(host_.objects.at(host_.invalidations[0].viommu).kind, "viommu");
  EXPECT_EQ(host_.invalidations[0].words.size(), 4U);
  EXPECT_EQ(host_.invalidations[0].words[2], batch.entries[1].dw[0]);
  EXPECT_EQ(stats_.forwarded, 2U);
}

TEST_F(ViommuTest, TheRepeatErratumSendsEveryBatchTwice) {
  host_.hw_flags = host::uapi::kHwInfoArmSmmuv3ErrataRepeatTlbiCfgi;
  auto v = make();
  InvalidationBatch batch;
  batch.add(tlbi_va(1, 0x1000), 0);
  EXPECT_FALSE(v->invalidate(batch));
  EXPECT_EQ(host_.invalidations.size(), 2U);
}

// The kernel stops at the entry it refuses and says how many it handled: that entry's guest command is named.
TEST_F(ViommuTest, ARefusedEntryNamesItsGuestCommandAndTheHostsErrno) {
  auto v = make();
  InvalidationBatch batch;
  for (std::uint32_t i = 0; i < 4; ++i) batch.add(tlbi_va(1, 0x1000 * (i + 1)), 10 + i);
  host_.refuse_entry = 2;
  auto bad = v->invalidate(batch);
  ASSERT_TRUE(bad);
  EXPECT_EQ(bad->guest_index, 12U);
  EXPECT_EQ(bad->err, EINVAL);
  EXPECT_EQ(stats_.forwarded, 2U);
}

TEST_F(ViommuTest, EventsFlowWhileEnabledAndTheVeventqGoesWithDisable) {
  auto v = make();
  std::vector<host::VeventqRecord> records;
  auto none = v->read_events(records);
  ASSERT_TRUE(none);
  EXPECT_EQ(*none, 0U) << "no vEVENTQ, no events";
  ASSERT_TRUE(v->enable_events(128, "test"));
  EXPECT_TRUE(v->events_enabled());
  EXPECT_GE(v->event_fd(), 0);
  EXPECT_EQ(host_.count("veventq"), 1U);
  for (const auto& [id, o] : host_.objects) {
    if (o.kind == "veventq") {
      EXPECT_EQ(o.flags, 128U) << "the depth asked for";
    }
  }
  host_.pending_events.push_back({0x10'0000'0010ULL, 2, 3, 4});
  auto n = v->read_events(records);
  ASSERT_TRUE(n) << n.error();
  ASSERT_EQ(*n, 1U);
  EXPECT_EQ(records[0].evt[0], 0x10'0000'0010ULL);
  EXPECT_EQ(v->host_objects(), 5U);
  v->disable_events();
  EXPECT_FALSE(v->events_enabled());
  EXPECT_EQ(host_.count("veventq"), 0U);
  EXPECT_EQ(v->host_objects(), 4U);
}

}  // namespace
}  // namespace vsmmu::nesting::test

// The e2e tier's main flow (tests/e2e/nested_dma_flow.hpp) on the simulated host's "qemu-virt" profile: the
// same steps the guest program e2e_vsmmu runs on the real arm-smmu-v3 + iommufd driver with QEMU's SMMUv3 and
// edu, step 6's MSIs included, with a simulated DMA engine and the sim host's MSIs in edu's place. Where the two differ, the simulator is wrong (docs/e2e.md).
#include <gtest/gtest.h>

#include <fmt/format.h>

#include <algorithm>
#include <cstdlib>
#include <optional>
#include <string>
#include <vector>

#include "base/try.hpp"
#include "host/sim/sim_host.hpp"
#include "tests/e2e/nested_dma_flow.hpp"

namespace vsmmu::e2e {
namespace {

using host::sim::SimHost;

// edu's model: a 4 KiB buffer, filled from RAM by a DMA read and written back by a DMA write. A blocked transfer
// is no error: as on edu, only memory and the event queue tell. Its MSI is the sim host's (docs/sim-host.md,
// "MSIs"): one vector enabled as VFIO_DEVICE_SET_IRQS does, raised as edu's write of 0x60 sends it (one 4-byte
// write of the data to the address through the SMMU); it arrived when the ITS took it, where e2e_vsmmu's
// eventfd fires.
class SimEdu final : public CopyDevice, public MsiSource {
 public:
  SimEdu(SimHost& host, std::string device, std::string engine)
      : host_(host), device_(std::move(device)), engine_(std::move(engine)) {}
  Result<void> prepare() override { return {}; }
  Result<void> to_device(std::uint64_t iova, std::uint64_t len) override {
    VSMMU_TRY(host_.dma_read(engine_, iova, std::span(buffer_).first(len)));
    return {};
  }
  Result<void> from_device(std::uint64_t iova, std::uint64_t len) override {
    VSMMU_TRY(host_.dma_write(engine_, iova, std::span(buffer_).first(len)));
    return {};
  }

  Result<void> enable_msi() override {
    VSMMU_TRY_ASSIGN(auto messages, host_.enable_msi(device_, 1));
    message_ = messages.at(0);
    return {};
  }
  Result<std::uint64_t> msi_address() override {
    if (!message_) return fail(EINVAL, "SimEdu", "{}: MSI is not enabled", device_);
    return message_->address;
  }
  // Synchronous on the sim host: nothing to wait for.
  Result<bool> raise_and_wait(std::chrono::milliseconds /*wait*/) override {
    const std::uint64_t before = host_.msis_delivered();
    VSMMU_TRY_ASSIGN(auto out, host_.raise_msi(engine_, 0));
    return out.delivered && host_.msis_delivered() == before + 1;
  }
  Result<void> disable_msi() override {
    if (!message_) return {};
    message_.reset();
    return host_.disable_msi(device_);
  }

 private:
  SimHost& host_;
  std::string device_, engine_;
  std::vector<std::byte> buffer_ = std::vector<std::byte>(kBufferBytes);
  std::optional<host::sim::MsiMessage> message_;  // while MSI is on
};

std::unique_ptr<SimHost> qemu_virt() {
  auto k = host::sim::embedded_kernel_profile("upstream");
  auto h = host::sim::embedded_hardware_profile("qemu-virt");
  EXPECT_TRUE(k) << k.error();
  EXPECT_TRUE(h) << h.error();
  if (!k || !h) return nullptr;
  auto s = SimHost::create(std::move(*k), std::move(*h));
  EXPECT_TRUE(s) << s.error();
  return s ? std::move(*s) : nullptr;
}

// Every check the e2e program makes on the real driver holds on the simulated one, and the teardown leaves
// nothing on the host.
TEST(QemuVirtFlow, TheE2eFlowPassesOnTheSimulatedQemuSmmu) {
  auto host = qemu_virt();
  ASSERT_TRUE(host);
  SimEdu edu(*host, "edu", "edu.dma");
  FlowOptions o;
  o.bind = [] { return nesting::DeviceSpec{"edu", -1, 0x10}; };
  o.path = "edu";
  o.msi = &edu;
  o.msi_blocked_wait = std::chrono::milliseconds(0);  // the sim host's MSI is synchronous: nothing comes later
  o.event_wait = std::chrono::milliseconds(100);
  o.host_objects = [&]() -> std::optional<std::size_t> { return host->stats().objects; };
  std::vector<std::string> lines;
  Report report([&](const StepResult& s) { lines.push_back(format_step(s)); });
  run_nested_dma_flow(*host, edu, o, report);
  for (const auto& s : report.steps()) EXPECT_TRUE(s.ok) << format_step(s);
  // The flow ran to its end: every part of it reported.
  for (const char* step : {"GET_HW_INFO: the physical SMMU", "guest ID registers derived from GET_HW_INFO",
                           "the pattern landed at B's GPA", "dirty tracking starts conservative",
                           "the conservative mode says why and what it costs", "one harvest: every page of guest RAM dirty",
                           "save_state, teardown, restore onto a fresh vSMMU", "teardown left only the IOAS on the host",
                           "restored: the pattern landed through the guest's stage 1",
                           "restored: the TLBI reached the host in one HWPT_INVALIDATE", "the DMA to unmapped B was blocked",
                           "F_TRANSLATION reached the guest", "the guest read C_BAD_STE with its vSID",
                           "the device's DMA was blocked", "CMDQ_CONS.ERR = CERROR_ILL at index 2",
                           "the command after it ran once the queue resumed",
                           "the host's MSI window (Host::reserved_regions)",
                           "the vSMMU holds the same MSI window for the device",
                           "the kernel reserved the window in the guest's IOAS",
                           "the host put the device's MSI address in the window",
                           "the MSI went through the guest's stage 1 and arrived", "without the 1:1 map the MSI is blocked",
                           "F_TRANSLATION at the MSI address reached the guest", "the vSMMU counted an MSI-window fault",
                           "the vSMMU told the VMM once: the guest's stage 1 lacks the host's MSI window",
                           "a second blocked MSI: counted, no second notice", "with the 1:1 map back the MSI arrives again",
                           "second vSMMU: the stream translates"})
    EXPECT_TRUE(std::ranges::any_of(report.steps(), [&](const StepResult& s) { return s.name == step; })) << step;
  EXPECT_EQ(report.failures(), 0U);
  EXPECT_EQ(host->stats().held(), "");
  // The flow's lines, as e2e_vsmmu prints them in the guest: on failure, or with VSMMU_FLOW_VERBOSE set.
  if (HasFailure() || std::getenv("VSMMU_FLOW_VERBOSE"))
    for (const auto& l : lines) fmt::print("{}\n", l);
}

// QEMU's DMA helpers go on after a fault in 4-byte pieces, each translated on its own (the e2e run: one blocked
// 4 KiB transfer raised 1024 F_TRANSLATION records). The profile's edu engine does the same (fault_retry_bytes 4):
// an 8 KiB write whose second page has no stage-1 mapping lands its first page and records one fault per piece
// of the second (IHI 0070 7.3.12: one F_TRANSLATION per faulting transaction).
TEST(QemuVirtFlow, EduGoesOnAfterAFaultInFourBytePiecesAsQemuDoes) {
  auto host = qemu_virt();
  ASSERT_TRUE(host);
  testkit::GuestHarnessConfig c;
  c.vsmmu.wishes.ipa_bits = 40;
  c.devices = {{"edu", -1, 0x10}};
  auto g = testkit::GuestHarness::create(*host, c);
  ASSERT_TRUE(g) << g.error();
  auto page = (*g)->alloc(0x2000);
  ASSERT_TRUE(page);
  constexpr std::uint64_t kVa = 0x20'0000;
  ASSERT_TRUE((*g)->map(1, kVa, *page, 0x1000));
  ASSERT_TRUE((*g)->attach(0x10, 1));
  const auto before = host->smmu_counters("smmuv3");
  ASSERT_TRUE(before);
  std::vector<std::byte> data(0x2000, std::byte{0x3c});
  auto r = host->dma_write("edu.dma", kVa, data);
  ASSERT_TRUE(r) << r.error();
  EXPECT_FALSE(r->ok());
  EXPECT_EQ(r->bytes, 0x1000U) << "the mapped page landed";
  EXPECT_TRUE(std::ranges::all_of((*g)->bytes(*page, 0x1000), [](std::byte b) { return b == std::byte{0x3c}; }));
  EXPECT_TRUE(std::ranges::all_of((*g)->bytes(*page + 0x1000, 0x1000), [](std::byte b) { return b == std::byte{0}; }));
  const auto after = host->smmu_counters("smmuv3");
  ASSERT_TRUE(after);
  EXPECT_EQ(after->model.events + after->model.events_lost - before->model.events - before->model.events_lost, 1024U)
      << "one record per 4-byte piece of the unmapped page";
}

}  // namespace
}  // namespace vsmmu::e2e

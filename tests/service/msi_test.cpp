// The vSMMU's MSIs through vsmmud (docs/protocol.md "MSI (13)"): with kFeatureMsi granted and the MSI wish, a
// guest's EVENTQ/GERROR MSIs aimed at its interrupt controller reach the VMM as MSI messages (REPLY|ASYNC, tag 0)
// carrying the address and data the guest programmed (IHI 0070 3.18, 6.3.21-23); CMD_SYNC completions into guest
// RAM are the daemon's own writes, which the guest polls (Linux's MSIPOLL) with one MMIO access per CMD_SYNC.
#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <thread>
#include <utility>
#include <vector>

#include "service/client/client.hpp"
#include "service/client/remote_vsmmu.hpp"
#include "service/protocol.hpp"
#include "smmu/driver/commands.hpp"
#include "smmu/registers.hpp"
#include "testing/guest_harness.hpp"
#include "testing/memfd_ram.hpp"
#include "tests/service/daemon_fixture.hpp"

namespace vsmmu::servicetest {
namespace {

using namespace vsmmu::service;

constexpr std::uint64_t kRamGpa = 0x4000'0000, kRamSize = 32ULL << 20;
constexpr std::uint64_t kVa = 0x7f00'0000'0000ULL;
constexpr std::uint32_t kNic0 = 0x10;
constexpr std::uint64_t kItsDoorbell = 0x0809'0040;  // QEMU virt's GITS_TRANSLATER: outside guest RAM
constexpr std::uint32_t kEventqData = 0x21, kGerrorData = 0x22;

std::unique_ptr<Client> connect(const Daemon& d, std::uint64_t features = kKnownFeatures) {
  HelloRequest offer = Client::default_offer();
  offer.features = features;
  auto c = Client::connect(d.socket(), offer, std::chrono::seconds(10));
  EXPECT_TRUE(c) << c.error();
  return c ? std::move(*c) : nullptr;
}

VsmmuOptions msi_wish() {
  VsmmuOptions o;
  o.wishes.present = kWishMsi;
  o.wishes.msi = 1;
  return o;
}

TEST(VsmmudMsi, TheGuestsMsisReachTheClientAsMessages) {
  Daemon d;
  auto client = connect(d);
  ASSERT_TRUE(client);
  ASSERT_TRUE(client->msis()) << "kFeatureMsi offered and granted";
  auto ram = testkit::MemfdRam::create(kRamGpa, kRamSize, "test-ram");
  ASSERT_TRUE(ram) << ram.error();
  ASSERT_TRUE(client->add_region(kRamGpa, kRamSize, (*ram)->fd(), 0));
  auto remote = RemoteVsmmu::create(*client, msi_wish(), {kNic0, "nic0", -1});
  ASSERT_TRUE(remote) << remote.error();
  RemoteVsmmu& v = **remote;
  EXPECT_TRUE(v.id_registers().idr0.get(smmu::Idr0::MSI));
  std::vector<std::pair<std::uint64_t, std::uint32_t>> msis;
  v.set_msi_handler([&](std::uint64_t address, std::uint32_t data) { msis.emplace_back(address, data); });

  testkit::GuestHarnessConfig config;
  config.table_pool_size = 8ULL << 20;
  config.driver.eventq_msi = smmu::driver::MsiTarget{kItsDoorbell, kEventqData};
  config.driver.gerror_msi = smmu::driver::MsiTarget{kItsDoorbell, kGerrorData};
  auto guest = testkit::GuestHarness::create_remote(std::move(*remote), (*ram)->view(), kRamGpa, kRamSize, config);
  ASSERT_TRUE(guest) << guest.error();
  testkit::GuestHarness& g = **guest;
  ASSERT_TRUE(g.driver().msipoll());
  auto buf = g.alloc(0x1000);
  ASSERT_TRUE(buf);
  ASSERT_TRUE(g.map(1, kVa, *buf, 0x1000));
  ASSERT_TRUE(g.attach(kNic0, 1));

  // MSIPOLL through the daemon: the unmap's CMD_SYNC completes in guest RAM, one MMIO access (CMDQ_PROD).
  const auto before = g.driver().mmio_accesses();
  ASSERT_TRUE(g.unmap(1, kVa, 0x1000));
  EXPECT_EQ(g.driver().mmio_accesses().total() - before.total(), 1U);
  EXPECT_TRUE(client->take_msis().empty()) << "an MSI into guest RAM is no message";

  // A fault: the daemon writes the record and the event queue's MSI goes to the client.
  SimDma dma;
  dma.engine = "nic0.dma";
  dma.iova = kVa;
  const std::byte data[8]{};
  dma.data = data;
  auto r = client->sim_dma(dma);
  ASSERT_TRUE(r) << r.error();
  EXPECT_EQ(r->reply.faulted, 1U);
  for (int i = 0; i < 500 && msis.empty(); ++i) {
    ASSERT_TRUE(g.endpoint().process_events());
    if (msis.empty()) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_EQ(msis.size(), 1U);
  EXPECT_EQ(msis[0], std::make_pair(kItsDoorbell, kEventqData));
  EXPECT_EQ(g.events()->records.size(), 1U);

  // A global error raised by a request: its MSI is sent before that request's reply, so the client holds it as
  // soon as the guest's CMDQ_PROD write (and the reads after it) returned.
  auto issued = g.driver().issue(smmu::driver::cmd_tlbi_s2_ipa(0, 0x4000'0000));  // CERROR_ILL: no stage 2
  ASSERT_FALSE(issued);
  const auto taken = client->take_msis(0, 16);
  ASSERT_EQ(taken.size(), 1U);
  EXPECT_EQ(taken[0].vsmmu, static_cast<const RemoteVsmmu&>(g.endpoint()).handle());
  EXPECT_EQ(taken[0].address, kItsDoorbell);
  EXPECT_EQ(taken[0].data, kGerrorData);
  EXPECT_EQ(taken[0].dropped, 0U);
}

// Without kFeatureMsi the MSI wish is refused (the guest's interrupts could reach nobody) and a vSMMU without it
// sends no MSI message: its interrupts are wired (SET_IRQ eventfds).
TEST(VsmmudMsi, WithoutTheFeatureTheWishIsRefusedAndNothingIsSent) {
  Daemon d;
  auto client = connect(d, kKnownFeatures & ~kFeatureMsi);
  ASSERT_TRUE(client);
  EXPECT_FALSE(client->msis());
  auto ram = testkit::MemfdRam::create(kRamGpa, kRamSize, "test-ram");
  ASSERT_TRUE(ram) << ram.error();
  ASSERT_TRUE(client->add_region(kRamGpa, kRamSize, (*ram)->fd(), 0));
  auto refused = client->create_vsmmu(msi_wish(), {kNic0, "nic0", -1});
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().err, EOPNOTSUPP);
  EXPECT_NE(refused.error().to_string().find("wishes.msi"), std::string::npos) << refused.error();

  auto created = client->create_vsmmu({}, {kNic0, "nic0", -1});
  ASSERT_TRUE(created) << created.error();
  EXPECT_FALSE(smmu::Idr0::of(created->idr[0]).get(smmu::Idr0::MSI));
  // The guest aims its event queue's MSI at a doorbell anyway: without IDR0.MSI the registers are inert.
  ASSERT_TRUE(client->mmio_write(created->handle, smmu::regs::EVENTQ_IRQ_CFG0.offset, kItsDoorbell, 8, false));
  ASSERT_TRUE(client->mmio_write(created->handle, smmu::regs::IRQ_CTRL.offset, 0x5, 4, false));
  ASSERT_TRUE(client->mmio_read(created->handle, 0, 4));
  EXPECT_TRUE(client->take_msis().empty());
}

// The MSI wish's "auto" (docs/protocol.md "CREATE_VSMMU"): on exactly for a VMM that declares kCreateMsiDelivery,
// a promise that needs kFeatureMsi; a stated wish wins. The other fields left on auto follow the device's physical
// SMMU: gpu0's smmu1 has a 44-bit OAS, which its guest gets without asking.
TEST(VsmmudMsi, MsiDeliveryTurnsTheAutoMsiOnAndTheRestFollowsTheHost) {
  Daemon d;
  auto client = connect(d);
  ASSERT_TRUE(client);
  auto ram = testkit::MemfdRam::create(kRamGpa, kRamSize, "test-ram");
  ASSERT_TRUE(ram) << ram.error();
  ASSERT_TRUE(client->add_region(kRamGpa, kRamSize, (*ram)->fd(), 0));
  auto silent = client->create_vsmmu({}, {kNic0, "nic0", -1});
  ASSERT_TRUE(silent) << silent.error();
  EXPECT_FALSE(smmu::Idr0::of(silent->idr[0]).get(smmu::Idr0::MSI)) << "no promise to deliver: wired";
  EXPECT_EQ(smmu::Idr5::of(silent->idr[5]).get(smmu::Idr5::OAS), smmu::Oas::bits48);
  VsmmuOptions delivering;
  delivering.msi_delivery = true;
  auto on = client->create_vsmmu(delivering, {0x18, "nic1", -1});
  ASSERT_TRUE(on) << on.error();
  EXPECT_TRUE(smmu::Idr0::of(on->idr[0]).get(smmu::Idr0::MSI));
  VsmmuOptions declined = delivering;
  declined.wishes.present = kWishMsi;
  declined.wishes.msi = 0;
  auto off = client->create_vsmmu(declined, {0x20, "gpu0", -1});
  ASSERT_TRUE(off) << off.error();
  EXPECT_FALSE(smmu::Idr0::of(off->idr[0]).get(smmu::Idr0::MSI));
  EXPECT_EQ(smmu::Idr5::of(off->idr[5]).get(smmu::Idr5::OAS), smmu::Oas::bits44);

  Daemon plain;
  auto without = connect(plain, kKnownFeatures & ~kFeatureMsi);
  ASSERT_TRUE(without);
  ASSERT_TRUE(without->add_region(kRamGpa, kRamSize, (*ram)->fd(), 0));
  auto refused = without->create_vsmmu(delivering, {kNic0, "nic0", -1});
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().err, EOPNOTSUPP);
  EXPECT_NE(refused.error().to_string().find("body.flags: kCreateMsiDelivery needs kFeatureMsi"), std::string::npos)
      << refused.error();
}

// MSI and NOTICE are the daemon's messages: a client that sends op 13 or 14 is refused (EINVAL, "header.op") and
// the connection goes on.
TEST(VsmmudMsi, AClientSendingMsiOrNoticeIsRefused) {
  Daemon d;
  auto fd = d.raw_connect();
  ASSERT_TRUE(fd);
  const RawReply hello = roundtrip(fd.get(), hello_packet(kFeatureMsi));
  ASSERT_EQ(hello.header.status, 0);
  const auto refused = [&](std::uint64_t tag, std::vector<std::byte> packet, const char* reason) {
    const RawReply r = roundtrip(fd.get(), packet);
    EXPECT_EQ(r.header.status, EINVAL);
    EXPECT_EQ(r.header.tag, tag);
    EXPECT_EQ(r.refusal.field, "header.op");
    EXPECT_NE(r.refusal.reason.find(reason), std::string::npos) << r.refusal.reason;
  };
  Header h;
  h.op = static_cast<std::uint16_t>(Op::msi);
  h.tag = 2;
  refused(2, build(h, MsiMessage{}), "MSI (13) is a message the daemon sends");
  h.op = static_cast<std::uint16_t>(Op::notice);
  h.tag = 4;
  refused(4, build(h, NoticeMessage{}), "NOTICE (14) is a message the daemon sends");
  Header stats;
  stats.op = static_cast<std::uint16_t>(Op::stats);
  stats.tag = 3;
  EXPECT_EQ(roundtrip(fd.get(), build(stats, StatsRequest{})).header.status, 0);
}

}  // namespace
}  // namespace vsmmu::servicetest

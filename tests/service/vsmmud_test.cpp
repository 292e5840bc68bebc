// vsmmud as a VMM meets it: a real daemon process over a real socket (docs/protocol.md). What every client
// may rely on: its work is done in order and completely, a malformed request is answered with an error
// naming the op, the field and the reason and never hurts the connection or the others, and whatever a
// client made is released when it goes - by closing, by being killed, or by the daemon's SIGTERM.
#include <gtest/gtest.h>

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include <cstring>
#include <memory>
#include <thread>

#include <fmt/format.h>

#include "service/client/client.hpp"
#include "service/client/remote_vsmmu.hpp"
#include "service/packet_io.hpp"
#include "service/protocol.hpp"
#include "smmu/registers.hpp"
#include "testing/guest_harness.hpp"
#include "testing/memfd_ram.hpp"
#include "tests/service/daemon_fixture.hpp"

namespace vsmmu::servicetest {
namespace {

using namespace vsmmu::service;

constexpr std::uint64_t kRamGpa = 0x4000'0000, kRamSize = 32ULL << 20;
constexpr std::uint64_t kVa = 0x7f00'0000'0000ULL;

// Guest RAM a VMM owns: a memfd, mapped here, sent to the daemon.
struct Ram {
  std::unique_ptr<testkit::MemfdRam> ram;
  Ram() {
    auto r = testkit::MemfdRam::create(kRamGpa, kRamSize, "test-ram");
    EXPECT_TRUE(r) << r.error();
    if (r) ram = std::move(*r);
  }
  int fd() const { return ram->fd(); }
  smmu::RegionMemory& view() { return ram->view(); }
};

std::unique_ptr<Client> connect(const Daemon& d) {
  auto c = Client::connect(d.socket(), Client::default_offer(), std::chrono::seconds(10));
  EXPECT_TRUE(c) << c.error();
  return c ? std::move(*c) : nullptr;
}

// The daemon's own count of live host objects (the simulated host's), once it settles at `want`.
std::uint64_t settled_host_objects(const Daemon& d, std::uint64_t want) {
  auto probe = connect(d);
  if (!probe) return ~0ULL;
  std::uint64_t n = ~0ULL;
  for (int i = 0; i < 300; ++i) {
    auto s = probe->daemon_stats();
    if (!s) return ~0ULL;
    n = s->host_live_objects;
    if (n == want && s->clients == 1) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return n;
}

// A guest inside the daemon's vSMMU `remote`, its device at `vsid` attached to a stage 1 that maps one buffer
// page at kVa (and nothing else); the page's GPA in `buf`.
std::unique_ptr<testkit::GuestHarness> guest_with_buffer(std::unique_ptr<RemoteVsmmu> remote, Ram& ram,
                                                         std::uint32_t vsid, std::uint64_t& buf) {
  testkit::GuestHarnessConfig config;
  config.table_pool_size = 8ULL << 20;
  auto guest = testkit::GuestHarness::create_remote(std::move(remote), ram.view(), kRamGpa, kRamSize, config);
  EXPECT_TRUE(guest) << guest.error();
  if (!guest) return nullptr;
  auto b = (*guest)->alloc(0x1000);
  EXPECT_TRUE(b);
  if (!b || !(*guest)->map(1, kVa, *b, 0x1000) || !(*guest)->attach(vsid, 1)) return nullptr;
  buf = *b;
  return std::move(*guest);
}

// A guest inside a vSMMU of the daemon, DMA through both stages by the simulated device, bytes checked.
void guest_dma(Client& client, Ram& ram, const char* device, const char* engine, std::uint32_t vsid) {
  ASSERT_TRUE(client.add_region(kRamGpa, kRamSize, ram.fd(), 0));
  VsmmuOptions options;
  options.name = std::string("vsmmu-") + device;
  auto remote = RemoteVsmmu::create(client, options, {vsid, device, -1});
  ASSERT_TRUE(remote) << remote.error();
  std::uint64_t buf = 0;
  auto guest = guest_with_buffer(std::move(*remote), ram, vsid, buf);
  ASSERT_TRUE(guest);
  const std::string text = fmt::format("DMA by {} through vsmmud", device);
  SimDma dma;
  dma.engine = engine;
  dma.iova = kVa + 0x80;
  dma.data = std::as_bytes(std::span(text));
  auto r = client.sim_dma(dma);
  ASSERT_TRUE(r) << r.error();
  EXPECT_EQ(r->reply.faulted, 0u);
  EXPECT_EQ(std::memcmp(guest->bytes(buf + 0x80, text.size()).data(), text.data(), text.size()), 0);
}

// ---- the socket

// docs/protocol.md "Transport": the socket is the daemon user's alone.
TEST(Vsmmud, SocketIsMode0600) {
  Daemon d;
  ASSERT_TRUE(d.listening());
  struct stat st{};
  ASSERT_EQ(::stat(d.socket().c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 0777, 0600u);
}

// ---- the main flow

// The README's first command: `vsmmu demo` against a daemon over its socket (--connect), readable as JSON.
TEST(Vsmmud, DemoRunsAgainstARunningDaemon) {
  Daemon d;
  const std::string cmd = fmt::format("{} demo --connect {} --json", VSMMU_PATH, d.socket());
  FILE* p = ::popen(cmd.c_str(), "r");
  ASSERT_NE(p, nullptr);
  std::string out;
  char buf[4096];
  while (std::size_t n = std::fread(buf, 1, sizeof buf, p)) out.append(buf, n);
  const int status = ::pclose(p);
  EXPECT_EQ(WEXITSTATUS(status), 0) << out;
  EXPECT_NE(out.find("\"ok\": true"), std::string::npos) << out;
  EXPECT_NE(out.find("F_TRANSLATION"), std::string::npos) << out;
  EXPECT_EQ(d.stop(), 0) << d.log();
}

// Two VMMs at once, each with its vSMMU and device: both guests' DMA lands, neither disturbs the other.
TEST(Vsmmud, TwoClientsAtOnce) {
  Daemon d;
  auto a = connect(d), b = connect(d);
  ASSERT_TRUE(a && b);
  Ram ram_a, ram_b;
  std::thread ta([&] { guest_dma(*a, ram_a, "nic0", "nic0.dma", 0x10); });
  std::thread tb([&] { guest_dma(*b, ram_b, "nic1", "nic1.dma", 0x20); });
  ta.join();
  tb.join();
  auto s = a->daemon_stats();
  ASSERT_TRUE(s);
  EXPECT_EQ(s->clients, 2u);
  EXPECT_EQ(s->refused, 0u);
  a.reset();
  b.reset();
  EXPECT_EQ(settled_host_objects(d, 0), 0u);
}

// ---- what no client library sends

std::vector<std::byte> stats_packet(std::uint64_t tag) {
  Header h;
  h.op = static_cast<std::uint16_t>(Op::stats);
  h.tag = tag;
  return build(h, StatsRequest{});
}

// docs/protocol.md "Errors": every malformed request gets an error reply naming op, field and reason, and the
// connection keeps working.
TEST(Vsmmud, MalformedRequestsAreAnsweredAndTheConnectionLives) {
  Daemon d;
  auto fd = d.raw_connect();
  ASSERT_TRUE(fd);
  EXPECT_EQ(roundtrip(fd.get(), stats_packet(7)).header.status, EPROTO) << "anything before HELLO is refused";
  EXPECT_EQ(roundtrip(fd.get(), hello_packet()).header.status, 0);

  struct Case {
    const char* what;
    std::vector<std::byte> packet;
    bool with_fd;
    int err;
    const char* field;
  };
  std::vector<Case> cases;
  cases.push_back({"garbage bytes", std::vector<std::byte>(7, std::byte{0x5a}), false, EINVAL, "header"});
  {
    auto p = stats_packet(2);
    p.pop_back();  // truncated: header.size says one byte more
    cases.push_back({"a truncated packet", p, false, EINVAL, "header.size"});
  }
  {
    Header h;
    h.op = static_cast<std::uint16_t>(Op::stats);
    std::vector<std::byte> big(200 * 1024);
    cases.push_back({"an oversized packet", build(h, StatsRequest{}, {std::span<const std::byte>(big)}), false, EMSGSIZE,
                     "header.size"});
  }
  {
    Header h;
    h.op = static_cast<std::uint16_t>(Op::mmio_read);
    h.vsmmu = 1;
    std::uint32_t short_body = 4;  // MmioReadRequest is 16 bytes in version 1
    cases.push_back({"a body smaller than version 1's", build(h, short_body), false, EINVAL, "body.size"});
  }
  {
    Header h;
    h.op = 99;
    cases.push_back({"an unknown op", build(h, StatsRequest{}), false, ENOSYS, "header.op"});
  }
  {
    Header h;
    h.op = 15;
    cases.push_back({"a reserved op", build(h, StatsRequest{}), false, ENOSYS, "header.op"});
  }
  {
    Header h;
    h.op = static_cast<std::uint16_t>(Op::stats);
    struct Longer {
      StatsRequest known;
      std::uint32_t unknown = 1;
    } longer;
    longer.known.size = sizeof longer;
    cases.push_back({"non-zero bytes past the known struct", build(h, longer), false, E2BIG, nullptr});
  }
  {
    Header h;
    h.op = static_cast<std::uint16_t>(Op::stats);
    cases.push_back({"an fd where none belongs", build(h, StatsRequest{}), true, EINVAL, "fds"});
  }
  {
    Header h;
    h.op = static_cast<std::uint16_t>(Op::add_region);
    AddRegionRequest a;
    a.gpa = kRamGpa;
    a.length = 0x1000;
    cases.push_back({"no fd where one is needed", build(h, a), false, EBADF, "fds"});
  }
  host::UniqueFd spare(::eventfd(0, EFD_CLOEXEC));
  const int spare_fd = spare.get();
  std::uint64_t tag = 100;
  for (const auto& c : cases) {
    SCOPED_TRACE(c.what);
    auto r = roundtrip(fd.get(), c.packet, c.with_fd ? std::span<const int>(&spare_fd, 1) : std::span<const int>());
    EXPECT_EQ(r.header.status, c.err) << r.refusal.to_string();
    if (c.field) {
      EXPECT_EQ(r.refusal.field, c.field) << r.refusal.to_string();
    }
    EXPECT_FALSE(r.refusal.reason.empty());
    // The connection still serves.
    auto ok = roundtrip(fd.get(), stats_packet(++tag));
    EXPECT_EQ(ok.header.status, 0);
    EXPECT_EQ(ok.header.tag, tag);
  }
  fd.reset();
  EXPECT_EQ(settled_host_objects(d, 0), 0u);
  EXPECT_EQ(d.stop(), 0);
}

// A posted write nobody waits for still has its failure reported: an ASYNC reply with the write's tag.
TEST(Vsmmud, PostedWriteFailureComesBackAsync) {
  Daemon d;
  auto client = connect(d);
  ASSERT_TRUE(client);
  Ram ram;
  ASSERT_TRUE(client->add_region(kRamGpa, kRamSize, ram.fd(), 0));
  auto created = client->create_vsmmu({}, {0x10, "nic0", -1});
  ASSERT_TRUE(created) << created.error();
  ASSERT_TRUE(client->mmio_write(created->handle, 0x20001, 0, 4, /*posted=*/true));  // past the register pages
  auto read = client->mmio_read(created->handle, 0x0, 4);  // IDR0: answered after the write
  ASSERT_TRUE(read) << read.error();
  auto failures = client->take_posted_failures();
  ASSERT_EQ(failures.kept.size(), 1u);
  EXPECT_EQ(failures.kept[0].error.err, EINVAL);
  EXPECT_NE(failures.kept[0].error.to_string().find("MMIO_WRITE"), std::string::npos);
}

// ---- clients that go wrong

// A VMM killed with SIGKILL in the middle of its work: the daemon releases everything it made and serves on.
TEST(Vsmmud, KilledClientLeavesNoHostObjects) {
  Daemon d;
  int ready[2];
  ASSERT_EQ(::pipe(ready), 0);
  const pid_t child = ::fork();
  if (child == 0) {
    auto c = Client::connect(d.socket());
    Ram ram;
    if (!c || !(*c)->add_region(kRamGpa, kRamSize, ram.fd(), 0)) ::_exit(1);
    auto v = (*c)->create_vsmmu({}, {0x10, "nic0", -1});
    if (!v || !(*c)->attach_device(v->handle, {0x18, "nic1", -1})) ::_exit(2);
    (void)!::write(ready[1], "r", 1);
    for (;;) (void)(*c)->mmio_read(v->handle, 0x9c, 4);  // CMDQ_CONS, until killed
  }
  ::close(ready[1]);
  char byte = 0;
  ASSERT_EQ(::read(ready[0], &byte, 1), 1) << "the child could not set up its vSMMU";
  ::close(ready[0]);
  {
    auto probe = connect(d);
    auto s = probe->daemon_stats();
    ASSERT_TRUE(s);
    EXPECT_GT(s->host_live_objects, 0u);
    EXPECT_EQ(s->vsmmus, 1u);
  }
  ::kill(child, SIGKILL);
  ::waitpid(child, nullptr, 0);
  EXPECT_EQ(settled_host_objects(d, 0), 0u) << d.log();
  // And the daemon still serves a new VMM completely.
  auto again = connect(d);
  Ram ram;
  guest_dma(*again, ram, "nic0", "nic0.dma", 0x10);
  again.reset();
  EXPECT_EQ(settled_host_objects(d, 0), 0u);
  EXPECT_EQ(d.stop(), 0) << d.log();
}

// A client that sends and never reads: the daemon stops reading it (max_pending) instead of queueing without
// bound, and keeps serving everyone else.
TEST(Vsmmud, ClientThatNeverReadsDoesNotStallOthers) {
  Daemon d;
  auto flood = d.raw_connect();
  ASSERT_TRUE(flood);
  ASSERT_EQ(roundtrip(flood.get(), hello_packet()).header.status, 0);
  int sent = 0;
  for (; sent < 100000; ++sent) {
    auto p = stats_packet(static_cast<std::uint64_t>(sent) + 10);
    if (::send(flood.get(), p.data(), p.size(), MSG_DONTWAIT | MSG_NOSIGNAL) < 0) break;
  }
  EXPECT_GT(sent, 64) << "the socket took fewer requests than max_pending";
  EXPECT_LT(sent, 100000) << "the daemon should have stopped reading a client that never reads";
  auto other = connect(d);
  ASSERT_TRUE(other);
  Ram ram;
  const auto t0 = std::chrono::steady_clock::now();
  guest_dma(*other, ram, "nic1", "nic1.dma", 0x20);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(5));
  flood.reset();
  other.reset();
  EXPECT_EQ(settled_host_objects(d, 0), 0u);
  EXPECT_EQ(d.stop(), 0) << d.log();
}

// Per-connection limits: a VMM past max_vsmmus is refused, naming the limit, and keeps what it has.
TEST(Vsmmud, VsmmuLimitPerClient) {
  Daemon d({"--max-vsmmus", "1"});
  auto client = connect(d);
  ASSERT_TRUE(client);
  EXPECT_EQ(client->hello().max_vsmmus, 1u);
  Ram ram;
  ASSERT_TRUE(client->add_region(kRamGpa, kRamSize, ram.fd(), 0));
  auto first = client->create_vsmmu({}, {0x10, "nic0", -1});
  ASSERT_TRUE(first) << first.error();
  auto second = client->create_vsmmu({}, {0x18, "nic1", -1});
  ASSERT_FALSE(second);
  EXPECT_EQ(second.error().err, ENOSPC);
  EXPECT_NE(second.error().to_string().find("max_vsmmus"), std::string::npos) << second.error();
  EXPECT_TRUE(client->mmio_read(first->handle, 0x0, 4));
}

// SIGTERM with a VMM still attached: every vSMMU destroyed (devices back to blocking DMA), exit status 0.
TEST(Vsmmud, SigtermReleasesEverythingAndExitsZero) {
  Daemon d;
  auto client = connect(d);
  ASSERT_TRUE(client);
  Ram ram;
  ASSERT_TRUE(client->add_region(kRamGpa, kRamSize, ram.fd(), 0));
  auto v = client->create_vsmmu({}, {0x10, "nic0", -1});
  ASSERT_TRUE(v) << v.error();
  EXPECT_EQ(d.stop(), 0) << d.log();
  const auto log = d.log();
  EXPECT_NE(log.find("destroyed"), std::string::npos) << log;
  EXPECT_NE(log.find("host objects held: 0"), std::string::npos) << log;
  EXPECT_FALSE(client->mmio_read(v->handle, 0x0, 4)) << "the connection is closed";
}

}  // namespace
}  // namespace vsmmu::servicetest

namespace vsmmu::servicetest {
namespace {

// examples/c-vmm: a VMM in C over vsmmu_client.h alone, against a real daemon.
TEST(Vsmmud, CExampleVmmRunsAgainstTheDaemon) {
  Daemon d;
  const std::string cmd = fmt::format("{} {} 2>&1", C_VMM_PATH, d.socket());
  FILE* p = ::popen(cmd.c_str(), "r");
  ASSERT_NE(p, nullptr);
  std::string out;
  char buf[4096];
  while (std::size_t n = std::fread(buf, 1, sizeof buf, p)) out.append(buf, n);
  EXPECT_EQ(WEXITSTATUS(::pclose(p)), 0) << out;
  EXPECT_EQ(settled_host_objects(d, 0), 0u) << out;
  EXPECT_EQ(d.stop(), 0) << d.log();
}

}  // namespace
}  // namespace vsmmu::servicetest

namespace vsmmu::servicetest {
namespace {

constexpr std::uint64_t kMsiBase = 0x800'0000, kMsiLast = 0x80f'ffff;  // arm-smmu-v3's MSI_IOVA_BASE/LENGTH

// The guest maps a buffer but not the window; the device's MSI write (a DMA at an IOVA in the window) faults,
// twice. Returns the vSMMU's msi_window_faults once both are counted (each guest->events() also runs the
// endpoint's process_events(), which hands the notices received to its handler).
std::uint64_t dma_into_the_window_twice(Client& client, testkit::GuestHarness& guest, std::uint32_t handle) {
  const std::byte word[4]{};
  for (int i = 0; i < 2; ++i) {
    SimDma dma;
    dma.engine = "nic0.dma";
    dma.iova = kMsiBase + 0x40;
    dma.data = word;
    auto r = client.sim_dma(dma);
    EXPECT_TRUE(r) << r.error();
    if (!r) return 0;
    EXPECT_NE(r->reply.faulted, 0u);
  }
  std::uint64_t faults = 0;
  for (int i = 0; i < 300 && faults < 2; ++i) {
    auto ev = guest.events();
    EXPECT_TRUE(ev) << ev.error();
    auto s = client.vsmmu_stats(handle);
    EXPECT_TRUE(s) << s.error();
    if (!ev || !s) return faults;
    faults = s->msi_window_faults;
    if (faults < 2) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  // The notice of the faults counted was sent before STATS's reply: one more round reads it.
  EXPECT_TRUE(guest.events());
  return faults;
}

// The daemon's log says it once, with the vSMMU's label.
void logged_once(Daemon& d, const char* label) {
  EXPECT_EQ(d.stop(), 0) << d.log();
  const std::string log = d.log();
  const auto first = log.find("faulted in the guest's stage 1");
  ASSERT_NE(first, std::string::npos) << log;
  EXPECT_EQ(log.find("faulted in the guest's stage 1", first + 1), std::string::npos) << "once per device: " << log;
  EXPECT_NE(log.find(label), std::string::npos) << log;
}

// docs/interrupts.md over the socket: STATS reports the host's MSI window of the vSMMU's devices; ADD_REGION
// over it is refused (EADDRINUSE, both ranges named) and the daemon keeps nothing of the region; a device whose
// MSIs fault in the guest's stage 1 is logged at warning and sent to the VMM as one NOTICE (docs/protocol.md
// "NOTICE (14)", kFeatureNotice granted), however often it faults.
TEST(Vsmmud, TheHostsMsiWindowReachesTheVmmAndKeepsRamOut) {
  Daemon d;
  auto client = connect(d);
  ASSERT_TRUE(client);
  ASSERT_TRUE(client->notices()) << "kFeatureNotice offered and granted";
  Ram ram;
  ASSERT_TRUE(client->add_region(kRamGpa, kRamSize, ram.fd(), 0));
  VsmmuOptions options;
  options.name = "vsmmu-msi";
  auto remote = RemoteVsmmu::create(*client, options, {0x10, "nic0", -1});
  ASSERT_TRUE(remote) << remote.error();
  const std::uint32_t handle = (*remote)->handle();
  auto stats = client->vsmmu_stats(handle);
  ASSERT_TRUE(stats) << stats.error();
  EXPECT_EQ(stats->msi_window_base, kMsiBase);
  EXPECT_EQ(stats->msi_window_size, kMsiLast - kMsiBase + 1);
  EXPECT_EQ(stats->msi_windows, 1u);
  EXPECT_EQ(stats->msi_window_faults, 0u);

  auto over = testkit::MemfdRam::create(kMsiBase, 0x200000, "over-the-window");
  ASSERT_TRUE(over) << over.error();
  const auto regions = client->daemon_stats()->connection_regions;
  auto refused = client->add_region(kMsiBase, 0x200000, (*over)->fd(), 0);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().err, EADDRINUSE);
  const std::string msg = refused.error().to_string();
  for (const char* w : {"guest RAM 0x8000000-0x81fffff", "MSI window 0x8000000-0x80fffff", "nic0", "vSID 0x10"})
    EXPECT_NE(msg.find(w), std::string::npos) << w << " missing in: " << msg;
  EXPECT_EQ(client->daemon_stats()->connection_regions, regions);

  // Set through the VsmmuEndpoint interface, as a VMM written against the in-process vSMMU does.
  std::vector<nesting::Notice> notices;
  static_cast<nesting::VsmmuEndpoint&>(**remote).set_notice_handler(
      [&](const nesting::Notice& n) { notices.push_back(n); });
  std::uint64_t buf = 0;
  auto guest = guest_with_buffer(std::move(*remote), ram, 0x10, buf);
  ASSERT_TRUE(guest);
  EXPECT_EQ(dma_into_the_window_twice(*client, *guest, handle), 2u);
  ASSERT_EQ(notices.size(), 1u) << "one NOTICE for the device, however often it faults";
  EXPECT_EQ(notices[0].kind, nesting::NoticeKind::msi_window_fault);
  EXPECT_EQ(notices[0].vsid, 0x10u);
  for (const char* w : {"nic0", "vSID 0x10", "DMA to 0x8000040", "MSI window 0x8000000-0x80fffff", "IORT RMR"})
    EXPECT_NE(notices[0].text.find(w), std::string::npos) << w << " missing in: " << notices[0].text;
  EXPECT_TRUE(client->take_notices().empty()) << "the handler took it";
  logged_once(d, "vsmmu-msi");
}

// Without kFeatureNotice the daemon sends no NOTICE (the client keeps any it would meet): the operator has the
// log line only.
TEST(Vsmmud, WithoutTheNoticeFeatureAnMsiWindowFaultIsOnlyLogged) {
  Daemon d;
  HelloRequest offer = Client::default_offer();
  offer.features &= ~kFeatureNotice;
  auto client = Client::connect(d.socket(), offer, std::chrono::seconds(10));
  ASSERT_TRUE(client) << client.error();
  EXPECT_FALSE((*client)->notices());
  Ram ram;
  ASSERT_TRUE((*client)->add_region(kRamGpa, kRamSize, ram.fd(), 0));
  VsmmuOptions options;
  options.name = "vsmmu-quiet";
  auto remote = RemoteVsmmu::create(**client, options, {0x10, "nic0", -1});
  ASSERT_TRUE(remote) << remote.error();
  const std::uint32_t handle = (*remote)->handle();
  std::vector<nesting::Notice> notices;
  (*remote)->set_notice_handler([&](const nesting::Notice& n) { notices.push_back(n); });
  std::uint64_t buf = 0;
  auto guest = guest_with_buffer(std::move(*remote), ram, 0x10, buf);
  ASSERT_TRUE(guest);
  EXPECT_EQ(dma_into_the_window_twice(**client, *guest, handle), 2u);
  EXPECT_TRUE(notices.empty());
  EXPECT_TRUE((*client)->take_notices().empty()) << "no NOTICE came over the socket";
  logged_once(d, "vsmmu-quiet");
}

}  // namespace
}  // namespace vsmmu::servicetest

// The vSMMU out of process (docs/performance.md, "vsmmud: the vSMMU out of process"): what a guest's command
// costs when its vSMMU lives in vsmmud, beside the floor a UNIX SOCK_SEQPACKET round trip sets and beside the
// same vSMMU in process, all in one run so the ratios are fair.
//
// One vsmmud per binary (the built daemon, VSMMUD_PATH), started on first use on a temporary socket with
// --host sim --hardware bench/profiles/sixteen-nics.json --threads 1 (its default) --log-level warn, stopped with SIGTERM at
// the end (its exit status must be 0); --vsmmud-threads=N runs it with N threads instead.
// Every guest is the scripted guest driver (GuestHarness::create_remote) over its own client connection and
// its own memfd guest RAM, its device nicN as vSID 0x10 attached to one stage-1 address space (ASID 1). The
// in-process baseline is GuestHarness::create on a SimHost with the same hardware profile.
//
// Latency benchmarks time each iteration with steady_clock and hand it to the framework (UseManualTime);
// the counters p50_us, p99_us and max_us come from every iteration's time, sorted after the loop:
// - BM_EchoFloor: send a 48-byte packet (Header + MmioWriteRequest, an MMIO_WRITE's size) over a socketpair
//   and receive it back from an echo thread;
// - BM_ProdWrite: one client.mmio_write of CMDQ_PROD with the value it holds (no command published), posted or
//   waited for; the daemon is idle when it starts (an untimed CMDQ_CONS read after each write);
// - BM_MmioRead: one read of IDR0 or CMDQ_CONS, checked against the value the vSMMU must give;
// - BM_TlbiSync: one TLBI_NH_VA + CMD_SYNC. how 0, the doorbell: the guest has written both into its queue
//   (untimed) and the timed part is its CMDQ_PROD write (posted) and its CMDQ_CONS polling until CONS passes
//   the CMD_SYNC, as Linux's arm-smmu-v3 does with its cached PROD; how 1, the same with the PROD write waited
//   for (not posted); how 2, the whole smmu::driver::SmmuDriver::issue() (its queue writes and, without MSI,
//   the same PROD write and CONS polling: it keeps PROD and CONS as Linux does). Counters: reads_per_op (MMIO reads), cons_reads_per_op, extra_cons_polls (CMDQ_CONS
//   reads that found the CMD_SYNC not yet consumed, in all), host_calls_per_op (HWPT_INVALIDATEs).
// BM_Throughput/vsmmus:N: N vSMMUs at once, each with its own connection and guest thread issuing batches of
// 32 TLBI_NH_VA + CMD_SYNC through SmmuDriver::issue() for 50 ms windows; counters cmds_per_s (guest commands,
// all vSMMUs), cmds_per_s_per_vsmmu, the slowest and fastest vSMMU's rate, reads_per_issue, and the CPUs busy:
// daemon_cpus (the daemon's user + system time over wall time) and vmm_cpus (this process's, the guest threads).
//
// Every benchmark checks what it measured (the vSMMU's command and sync counts, the values read, no posted
// write failed, nothing in the daemon's log) and fails with SkipWithError otherwise; the binary then exits 1.
#include <benchmark/benchmark.h>
#include <fmt/format.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <barrier>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <memory>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "bench/bench_support.hpp"
#include "host/sim/profile.hpp"
#include "host/sim/sim_host.hpp"
#include "service/client/client.hpp"
#include "service/client/remote_vsmmu.hpp"
#include "service/protocol.hpp"
#include "smmu/driver/commands.hpp"
#include "smmu/registers.hpp"
#include "testing/daemon_process.hpp"
#include "testing/guest_harness.hpp"
#include "testing/memfd_ram.hpp"

namespace {

using namespace vsmmu;
using namespace vsmmu::smmu;
using namespace vsmmu::smmu::driver;
using namespace vsmmu::testkit;
using Clock = std::chrono::steady_clock;

using bench::must;

constexpr std::uint32_t kVsid = 0x10;
constexpr std::uint16_t kAsid = 1;
constexpr std::uint64_t kVa = 0x10'0000'0000;
constexpr std::uint64_t kPage = 0x1000;
constexpr std::uint64_t kVaPages = 1ULL << 20;  // TLBIs cycle through 4 GiB of VA
constexpr std::uint64_t kRamGpa = 0x4000'0000, kRamSize = 32ULL << 20;
constexpr std::size_t kEchoPacket = sizeof(service::Header) + sizeof(service::MmioWriteRequest);
static_assert(kEchoPacket == 48);
constexpr unsigned kBatch = 32;                         // TLBI_NH_VAs per issue() in BM_Throughput
constexpr auto kWindow = std::chrono::milliseconds(50);  // one BM_Throughput iteration
constexpr int kMaxPolls = 1'000'000;

bool g_failed = false;  // a check failed: main returns 1
std::string g_threads = "1";  // vsmmud --threads (its default); --vsmmud-threads=N changes it

void fail(benchmark::State& state, const std::string& why) {
  g_failed = true;
  state.SkipWithError(why.c_str());
}

std::uint64_t va_of(std::uint64_t n) { return kVa + (n % kVaPages) * kPage; }

// ---- the daemon

std::optional<DaemonProcess> g_daemon;
std::size_t g_log_seen = 0;

DaemonProcess& daemon() {
  if (!g_daemon)
    g_daemon.emplace(must(DaemonProcess::start(
        VSMMUD_PATH, {"--host", "sim", "--hardware", VSMMUD_BENCH_HARDWARE, "--threads", g_threads, "--log-level", "warn"},
        /*log_to_file=*/true)));
  return *g_daemon;
}

// What the daemon logged since the last call (at --log-level warn: warnings and errors only).
std::string new_daemon_log() {
  if (!g_daemon) return {};
  const std::string all = g_daemon->log();
  std::string fresh = all.size() > g_log_seen ? all.substr(g_log_seen) : std::string();
  g_log_seen = all.size();
  return fresh;
}

// CPU time (user + system) the daemon, and this process, have used so far.
double daemon_cpu_seconds() {
  std::ifstream in(fmt::format("/proc/{}/stat", daemon().pid()));
  std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const auto close = stat.rfind(')');  // the name may hold spaces; fields 3 on follow it
  if (close == std::string::npos) return 0;
  std::istringstream fields(stat.substr(close + 2));
  std::string f;
  double ticks = 0;
  for (int field = 3; field <= 15 && fields >> f; ++field)
    if (field == 14 || field == 15) ticks += std::stod(f);  // utime, stime
  return ticks / static_cast<double>(::sysconf(_SC_CLK_TCK));
}
double own_cpu_seconds() {
  rusage u{};
  ::getrusage(RUSAGE_SELF, &u);
  const auto secs = [](const timeval& t) { return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) / 1e6; };
  return secs(u.ru_utime) + secs(u.ru_stime);
}

// ---- latencies

class Latencies {
 public:
  explicit Latencies(const benchmark::State& state) {
    ns_.reserve(static_cast<std::size_t>(std::min<benchmark::IterationCount>(state.max_iterations, 1 << 24)));
  }
  void add(benchmark::State& state, Clock::duration d) {
    state.SetIterationTime(std::chrono::duration<double>(d).count());
    ns_.push_back(static_cast<double>(std::chrono::duration_cast<std::chrono::nanoseconds>(d).count()));
  }
  // Nearest rank.
  void report(benchmark::State& state) {
    if (ns_.empty()) return;
    std::sort(ns_.begin(), ns_.end());
    const auto at = [&](double p) {
      const auto rank = static_cast<std::size_t>(std::ceil(p * static_cast<double>(ns_.size())));
      return ns_[std::clamp<std::size_t>(rank, 1, ns_.size()) - 1] / 1000.0;
    };
    state.counters["p50_us"] = at(0.50);
    state.counters["p99_us"] = at(0.99);
    state.counters["max_us"] = ns_.back() / 1000.0;
  }

 private:
  std::vector<double> ns_;
};

// ---- guests

// The remote vSMMU with its MMIO reads counted (only the guest's thread touches the counts).
class CountingEndpoint final : public nesting::VsmmuEndpoint {
 public:
  explicit CountingEndpoint(std::unique_ptr<service::RemoteVsmmu> inner) : inner_(std::move(inner)) {}
  Result<std::uint64_t> mmio_read(std::uint64_t offset, unsigned size) override {
    ++reads;
    if (offset == regs::CMDQ_CONS.offset) ++cons_reads;
    return inner_->mmio_read(offset, size);
  }
  Result<void> mmio_write(std::uint64_t offset, std::uint64_t value, unsigned size) override {
    return inner_->mmio_write(offset, value, size);
  }
  std::vector<int> event_fds() const override { return inner_->event_fds(); }
  Result<std::size_t> process_events() override { return inner_->process_events(); }
  nesting::VirtualSmmuStats stats() const override { return inner_->stats(); }
  const nesting::GuestIdRegisters& id_registers() const override { return inner_->id_registers(); }
  Result<std::vector<std::byte>> save_state() override { return inner_->save_state(); }
  Result<void> load_state(std::span<const std::byte> state) override { return inner_->load_state(state); }
  void set_notice_handler(nesting::NoticeHandler handler) override { inner_->set_notice_handler(std::move(handler)); }

  std::uint64_t reads = 0, cons_reads = 0;

 private:
  std::unique_ptr<service::RemoteVsmmu> inner_;
};

// A guest whose vSMMU is in the daemon: its own connection, RAM and vSMMU (bound to `device`).
struct RemoteGuest {
  std::unique_ptr<service::Client> client;
  std::unique_ptr<MemfdRam> ram;
  std::uint32_t handle = 0;
  CountingEndpoint* counts = nullptr;
  std::unique_ptr<GuestHarness> guest;  // destroyed first: DESTROY_VSMMU while the connection is up

  explicit RemoteGuest(const std::string& device) {
    client = must(service::Client::connect(daemon().socket(), service::Client::default_offer(), std::chrono::seconds(10)));
    if (!client->posted_writes()) throw std::runtime_error("vsmmud did not grant posted MMIO writes");
    ram = must(MemfdRam::create(kRamGpa, kRamSize, "vsmmud-bench-ram"));
    must(client->add_region(kRamGpa, kRamSize, ram->fd(), 0));
    service::VsmmuOptions options;
    options.name = "bench-" + device;
    auto remote = must(service::RemoteVsmmu::create(*client, options, {kVsid, device, -1}));
    handle = remote->handle();
    auto counting = std::make_unique<CountingEndpoint>(std::move(remote));
    counts = counting.get();
    GuestHarnessConfig c;
    c.ram_gpa = kRamGpa;
    c.ram_size = kRamSize;
    c.table_pool_size = 8ULL << 20;
    guest = must(GuestHarness::create_remote(std::move(counting), ram->view(), kRamGpa, kRamSize, c));
    must(guest->attach(kVsid, kAsid));
  }

  // Posted writes that failed, and anything the daemon logged: empty when all went well.
  std::string trouble() {
    std::string out;
    const auto failures = client->take_posted_failures();
    for (const auto& f : failures.kept) out += fmt::format("posted write (tag {}) failed: {}; ", f.tag, f.error.to_string());
    if (failures.dropped) out += fmt::format("{} more posted writes failed; ", failures.dropped);
    if (auto log = new_daemon_log(); !log.empty()) out += "vsmmud logged: " + log;
    return out;
  }
};

// The same guest with its vSMMU in this process, on a SimHost with the daemon's hardware profile.
struct InProcessGuest {
  std::unique_ptr<host::sim::SimHost> host;
  std::unique_ptr<GuestHarness> guest;

  InProcessGuest() {
    host = must(host::sim::SimHost::create(must(host::sim::resolve_kernel_profile("upstream")),
                                           must(host::sim::resolve_hardware_profile(VSMMUD_BENCH_HARDWARE))));
    GuestHarnessConfig c;
    c.devices = {{"nic0", -1, kVsid}};
    guest = must(GuestHarness::create(*host, c));
    must(guest->attach(kVsid, kAsid));
  }
};

// One or the other, for the benchmarks that compare them.
struct EitherGuest {
  std::unique_ptr<RemoteGuest> remote;  // null in process
  std::unique_ptr<InProcessGuest> local;
  explicit EitherGuest(bool in_daemon) {
    if (in_daemon) remote = std::make_unique<RemoteGuest>("nic0");
    else local = std::make_unique<InProcessGuest>();
  }
  GuestHarness& harness() { return remote ? *remote->guest : *local->guest; }
  std::string trouble() { return remote ? remote->trouble() : std::string(); }
};

// ---- the floor

void BM_EchoFloor(benchmark::State& state) {
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) return fail(state, "socketpair failed");
  host::UniqueFd mine(sv[0]), theirs(sv[1]);
  std::thread echo([fd = theirs.get()] {
    std::array<std::byte, 256> buf;
    for (;;) {
      const ssize_t n = ::recv(fd, buf.data(), buf.size(), 0);
      if (n <= 0 || ::send(fd, buf.data(), static_cast<std::size_t>(n), MSG_NOSIGNAL) != n) return;
    }
  });
  std::array<std::byte, kEchoPacket> out{}, in{};
  for (std::size_t i = 0; i < out.size(); ++i) out[i] = static_cast<std::byte>(i * 7 + 1);
  Latencies lat(state);
  for (auto _ : state) {
    const auto t0 = Clock::now();
    const ssize_t sent = ::send(mine.get(), out.data(), out.size(), MSG_NOSIGNAL);
    const ssize_t got = ::recv(mine.get(), in.data(), in.size(), 0);
    const auto t1 = Clock::now();
    if (sent != static_cast<ssize_t>(kEchoPacket) || got != static_cast<ssize_t>(kEchoPacket) || in != out) {
      fail(state, "the echo did not return the packet");
      break;
    }
    lat.add(state, t1 - t0);
  }
  ::shutdown(mine.get(), SHUT_RDWR);
  echo.join();
  lat.report(state);
  state.SetLabel(fmt::format("{}-byte SEQPACKET echo", kEchoPacket));
}

// ---- vsmmud

// Args: posted (1) or waited for (0).
void BM_ProdWrite(benchmark::State& state) {
  const bool posted = state.range(0) == 1;
  RemoteGuest g("nic0");
  auto& ep = g.guest->endpoint();
  const std::uint32_t prod = must(ep.read32(regs::CMDQ_PROD.offset));
  const std::uint32_t cons = must(ep.read32(regs::CMDQ_CONS.offset));
  const auto before = ep.stats();
  Latencies lat(state);
  for (auto _ : state) {
    const auto t0 = Clock::now();
    auto w = g.client->mmio_write(g.handle, regs::CMDQ_PROD.offset, prod, 4, posted);
    const auto t1 = Clock::now();
    if (!w) {
      fail(state, "CMDQ_PROD write: " + w.error().to_string());
      break;
    }
    lat.add(state, t1 - t0);
    // Untimed: the daemon has done the write before the next one starts, and it changed nothing.
    auto c = g.client->mmio_read(g.handle, regs::CMDQ_CONS.offset, 4);
    if (!c || *c != cons) {
      fail(state, c ? fmt::format("CMDQ_CONS reads {:#x} after a no-op PROD write, expected {:#x}", *c, cons) : c.error().to_string());
      break;
    }
  }
  const auto after = ep.stats();
  if (after.commands != before.commands) fail(state, "a CMDQ_PROD write of its own value consumed commands");
  if (auto t = g.trouble(); !t.empty()) fail(state, t);
  lat.report(state);
  state.SetLabel(posted ? "CMDQ_PROD, posted (one send)" : "CMDQ_PROD, waited for (one round trip)");
}

// Args: vsmmud (1) or in process (0); reg 0 IDR0, 1 CMDQ_CONS.
void BM_MmioRead(benchmark::State& state) {
  const bool remote = state.range(0) == 1;
  const RegisterInfo reg = state.range(1) == 0 ? regs::IDR0 : regs::CMDQ_CONS;
  EitherGuest guest(remote);
  auto& ep = guest.harness().endpoint();
  // What the read must give: IDR0 as CREATE (or the vSMMU) announced it; CMDQ_CONS as the guest left it (= PROD).
  const std::uint32_t expected = state.range(1) == 0 ? ep.id_registers().idr0.value() : must(ep.read32(regs::CMDQ_PROD.offset));
  Latencies lat(state);
  for (auto _ : state) {
    const auto t0 = Clock::now();
    auto v = ep.read32(reg.offset);
    const auto t1 = Clock::now();
    if (!v || *v != expected) {
      fail(state, v ? fmt::format("{} reads {:#x}, expected {:#x}", reg.name, *v, expected) : v.error().to_string());
      break;
    }
    lat.add(state, t1 - t0);
  }
  if (auto t = guest.trouble(); !t.empty()) fail(state, t);
  lat.report(state);
  state.SetLabel(fmt::format("{} {}", remote ? "vsmmud" : "in-process", reg.name));
}

enum How : std::int64_t { kDoorbell = 0, kDoorbellWaited = 1, kIssue = 2 };

// Args: vsmmud (1) or in process (0); how (How).
void BM_TlbiSync(benchmark::State& state) {
  const bool remote = state.range(0) == 1;
  const auto how = static_cast<How>(state.range(1));
  EitherGuest guest(remote);
  RemoteGuest* rg = guest.remote.get();
  GuestHarness& g = guest.harness();
  auto& ep = g.endpoint();
  auto& drv = g.driver();
  const QueueIndex q{drv.cmdq_log2()};
  std::uint32_t prod = QueueProd::of(must(ep.read32(regs::CMDQ_PROD.offset))).get(QueueProd::WR);
  const auto before = ep.stats();
  const std::uint64_t reads0 = rg ? rg->counts->reads : 0, cons_reads0 = rg ? rg->counts->cons_reads : 0;
  std::uint64_t my_cons_reads = 0, n = 0;
  Latencies lat(state);
  for (auto _ : state) {
    const Command tlbi = cmd_tlbi_nh_va(0, kAsid, va_of(n++));
    if (how == kIssue) {
      const auto t0 = Clock::now();
      auto r = drv.issue(tlbi);
      const auto t1 = Clock::now();
      if (!r) {
        fail(state, "issue: " + r.error().to_string());
        break;
      }
      lat.add(state, t1 - t0);
      continue;
    }
    // The guest's part, untimed: both commands into the queue at PROD.
    const Command cmds[2] = {tlbi, cmd_sync()};
    for (std::uint32_t i = 0; i < 2; ++i)
      std::memcpy(g.bytes(drv.cmdq_base() + q.index(q.advance(prod, i)) * Command::bytes, Command::bytes).data(), &cmds[i],
                  Command::bytes);
    const std::uint32_t next = q.advance(prod, 2);
    const std::uint32_t value = QueueProd{}.set(QueueProd::WR, next).value();
    const auto t0 = Clock::now();
    auto w = how == kDoorbellWaited ? rg->client->mmio_write(rg->handle, regs::CMDQ_PROD.offset, value, 4, false)
                                    : ep.write32(regs::CMDQ_PROD.offset, value);
    Result<std::uint32_t> c = 0U;
    for (int polls = 0; w && polls < kMaxPolls; ++polls) {
      c = ep.read32(regs::CMDQ_CONS.offset);
      ++my_cons_reads;
      if (!c || QueueCons::of(*c).get(QueueCons::ERR) != Cerror::none || QueueCons::of(*c).get(QueueCons::RD) == next) break;
    }
    const auto t1 = Clock::now();
    if (!w || !c || QueueCons::of(*c).get(QueueCons::RD) != next || QueueCons::of(*c).get(QueueCons::ERR) != Cerror::none) {
      fail(state, !w ? "CMDQ_PROD write: " + w.error().to_string()
                     : !c ? "CMDQ_CONS read: " + c.error().to_string()
                          : fmt::format("CMDQ_CONS reads {:#x}, never past the CMD_SYNC (PROD {:#x})", *c, next));
      break;
    }
    prod = next;
    lat.add(state, t1 - t0);
  }
  const auto done = static_cast<std::uint64_t>(state.iterations());
  const auto after = ep.stats();
  if (!state.error_occurred()) {
    if (after.commands - before.commands != 2 * done || after.syncs - before.syncs != done ||
        after.command_errors != before.command_errors)
      fail(state, fmt::format("the vSMMU counted {} commands, {} syncs, {} command errors for {} TLBI_NH_VA + CMD_SYNC",
                              after.commands - before.commands, after.syncs - before.syncs,
                              after.command_errors - before.command_errors, done));
    if (auto t = guest.trouble(); !t.empty()) fail(state, t);
  }
  lat.report(state);
  const double ops = static_cast<double>(std::max<std::uint64_t>(done, 1));
  // CMDQ_CONS reads past the one poll each TLBI + CMD_SYNC needs at the least: each is a poll that found the
  // CMD_SYNC not yet consumed.
  const std::uint64_t cons_reads = rg ? rg->counts->cons_reads - cons_reads0 : my_cons_reads;
  if (how != kIssue || rg) state.counters["extra_cons_polls"] = static_cast<double>(cons_reads - done);
  if (rg) {
    state.counters["reads_per_op"] = static_cast<double>(rg->counts->reads - reads0) / ops;
    state.counters["cons_reads_per_op"] = static_cast<double>(cons_reads) / ops;
  }
  state.counters["host_calls_per_op"] = static_cast<double>(after.invalidate_calls - before.invalidate_calls) / ops;
  static constexpr const char* kHow[] = {"doorbell: PROD posted + CONS polled", "doorbell: PROD waited for + CONS polled",
                                         "SmmuDriver::issue()"};
  state.SetLabel(fmt::format("{} {}", remote ? "vsmmud" : "in-process", kHow[how]));
}

// Args: vSMMUs at once.
void BM_Throughput(benchmark::State& state) {
  const auto n = static_cast<std::size_t>(state.range(0));
  std::vector<std::unique_ptr<RemoteGuest>> guests;
  for (std::size_t i = 0; i < n; ++i) guests.push_back(std::make_unique<RemoteGuest>(fmt::format("nic{}", i)));
  std::vector<nesting::VirtualSmmuStats> before;
  std::vector<std::uint64_t> reads0;
  for (auto& g : guests) {
    before.push_back(g->guest->endpoint().stats());
    reads0.push_back(g->counts->reads);
  }
  std::vector<std::uint64_t> issues(n, 0);
  std::vector<std::string> errors(n);
  std::barrier start(static_cast<std::ptrdiff_t>(n + 1)), finished(static_cast<std::ptrdiff_t>(n + 1));
  Clock::time_point deadline;  // written before `start`, read after it
  bool stop = false;
  std::vector<std::thread> threads;
  for (std::size_t i = 0; i < n; ++i)
    threads.emplace_back([&, i] {
      auto& drv = guests[i]->guest->driver();
      std::vector<Command> batch(kBatch);
      std::uint64_t page = 0;
      for (;;) {
        start.arrive_and_wait();
        if (stop) return;
        while (errors[i].empty() && Clock::now() < deadline) {
          for (auto& c : batch) c = cmd_tlbi_nh_va(0, kAsid, va_of(page++));
          if (auto r = drv.issue(batch); !r) errors[i] = r.error().to_string();
          else ++issues[i];
        }
        finished.arrive_and_wait();
      }
    });
  Clock::duration wall{};
  const double daemon_cpu0 = daemon_cpu_seconds(), vmm_cpu0 = own_cpu_seconds();
  for (auto _ : state) {
    deadline = Clock::now() + kWindow;
    const auto t0 = Clock::now();
    start.arrive_and_wait();
    finished.arrive_and_wait();
    wall += Clock::now() - t0;
    if (auto bad = std::find_if(errors.begin(), errors.end(), [](const auto& e) { return !e.empty(); }); bad != errors.end()) {
      fail(state, fmt::format("vSMMU {}: {}", bad - errors.begin(), *bad));
      break;
    }
  }
  const double daemon_cpu = daemon_cpu_seconds() - daemon_cpu0, vmm_cpu = own_cpu_seconds() - vmm_cpu0;
  stop = true;
  start.arrive_and_wait();
  for (auto& t : threads) t.join();
  if (state.error_occurred()) return;

  constexpr std::uint64_t kCmdsPerIssue = kBatch + 1;
  std::uint64_t total = 0, reads = 0, fewest = ~0ULL, most = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const auto after = guests[i]->guest->endpoint().stats();
    if (after.commands - before[i].commands != issues[i] * kCmdsPerIssue || after.syncs - before[i].syncs != issues[i] ||
        after.command_errors != before[i].command_errors)
      return fail(state, fmt::format("vSMMU {} counted {} commands and {} syncs for {} issues of {} commands", i,
                                     after.commands - before[i].commands, after.syncs - before[i].syncs, issues[i],
                                     kCmdsPerIssue));
    if (auto t = guests[i]->trouble(); !t.empty()) return fail(state, fmt::format("vSMMU {}: {}", i, t));
    total += issues[i];
    reads += guests[i]->counts->reads - reads0[i];
    fewest = std::min(fewest, issues[i]);
    most = std::max(most, issues[i]);
  }
  const double seconds = std::chrono::duration<double>(wall).count();
  const double cmds = static_cast<double>(total * kCmdsPerIssue);
  state.counters["cmds_per_s"] = cmds / seconds;
  state.counters["cmds_per_s_per_vsmmu"] = cmds / seconds / static_cast<double>(n);
  state.counters["slowest_vsmmu_cmds_per_s"] = static_cast<double>(fewest * kCmdsPerIssue) / seconds;
  state.counters["fastest_vsmmu_cmds_per_s"] = static_cast<double>(most * kCmdsPerIssue) / seconds;
  state.counters["reads_per_issue"] = static_cast<double>(reads) / static_cast<double>(std::max<std::uint64_t>(total, 1));
  // CPUs busy on average (of the machine's 2): the daemon's threads, and this process's (the guest threads).
  state.counters["daemon_cpus"] = daemon_cpu / seconds;
  state.counters["vmm_cpus"] = vmm_cpu / seconds;
  state.SetLabel(fmt::format("{} vSMMU(s), {} x TLBI_NH_VA + CMD_SYNC per issue", n, kBatch));
}

BENCHMARK(BM_EchoFloor)->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_ProdWrite)->ArgName("posted")->Arg(1)->Arg(0)->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_MmioRead)
    ->ArgNames({"vsmmud", "reg"})
    ->ArgsProduct({{1, 0}, {0, 1}})
    ->UseManualTime()
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_TlbiSync)
    ->ArgNames({"vsmmud", "how"})
    ->Args({1, kDoorbell})
    ->Args({1, kDoorbellWaited})
    ->Args({1, kIssue})
    ->Args({0, kDoorbell})
    ->Args({0, kIssue})
    ->UseManualTime()
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_Throughput)->ArgName("vsmmus")->Arg(1)->Arg(4)->Arg(16)->UseRealTime()->Unit(benchmark::kMillisecond);

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  int kept = 1;
  for (int i = 1; i < argc; ++i) {
    const std::string_view a(argv[i]);
    if (a.starts_with("--vsmmud-threads=")) g_threads = std::string(a.substr(a.find('=') + 1));
    else argv[kept++] = argv[i];
  }
  argc = kept;
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  if (g_daemon) {
    const int status = g_daemon->stop();
    if (status != 0) {
      std::fprintf(stderr, "vsmmud exited with status %d after SIGTERM; its log:\n%s\n", status, g_daemon->log().c_str());
      g_failed = true;
    }
  }
  return g_failed ? 1 : 0;
}

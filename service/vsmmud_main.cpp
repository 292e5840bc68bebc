// vsmmud: the vIOMMU service (docs/protocol.md). Serves nested virtual SMMUv3s to any VMM over a UNIX
// SOCK_SEQPACKET socket until SIGTERM, then releases everything its clients made.
#include <utility>  // before Boost.Asio

#include <charconv>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <fmt/format.h>

#include "base/log.hpp"
#include "service/listen_socket.hpp"
#include "service/server.hpp"

namespace {

using namespace vsmmu;
using namespace vsmmu::service;

constexpr std::string_view kUsage =
    "usage: vsmmud [--socket PATH] [--host sim|kernel] [--profile KERNEL] [--hardware HARDWARE]\n"
    "              [--log-level error|warn|info|debug] [--threads N] [--max-vsmmus N] [--max-pending N]\n\n"
    "Serves nested virtual SMMUv3s to VMMs over a UNIX SOCK_SEQPACKET socket (protocol: docs/protocol.md).\n"
    "  --socket PATH    where to listen (made 0600; default /run/vsmmud.sock); under systemd socket\n"
    "                   activation (vsmmud.socket) the inherited socket is used instead\n"
    "  --host sim       the simulated host (default): devices by name, SIM_DMA for their DMA engines\n"
    "  --host kernel    the kernel's iommufd: devices as VFIO cdev fds, one iommufd per client\n"
    "  --profile, --hardware   the simulated host's kernel and hardware profiles (docs/sim-host.md;\n"
    "                   defaults: upstream, default)\n"
    "  --log-level      default info: one line per client, vSMMU, device and refusal\n"
    "  --threads N      threads serving vSMMUs on the simulated host (default 1: on a 2-core host one\n"
    "                   thread answers faster than two, docs/performance.md); the kernel host uses 1\n"
    "SIGTERM or SIGINT: every vSMMU is destroyed, its devices back to blocking DMA, then vsmmud exits 0.\n"
    "Exit status: 0 after a clean shutdown, 1 if it could not start, 2 for a usage error.\n";

bool number(std::string_view s, std::uint32_t& out) {
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && p == s.data() + s.size() && out > 0;
}

}  // namespace

int main(int argc, char** argv) {
  ServerOptions options;
  options.socket_path = "/run/vsmmud.sock";
  std::uint32_t threads = 1;
  log::Level level = log::Level::info;
  std::vector<std::string_view> args(argv + 1, argv + argc);
  for (std::size_t i = 0; i < args.size(); ++i) {
    const auto a = args[i];
    if (a == "--help" || a == "-h") {
      fmt::print("{}", kUsage);
      return 0;
    }
    if (i + 1 >= args.size()) {
      fmt::print(stderr, "vsmmud: '{}' needs a value, or is not an option\n\n{}", a, kUsage);
      return 2;
    }
    const auto v = args[++i];
    bool good = true;
    if (a == "--socket") options.socket_path = std::string(v);
    else if (a == "--host" && (v == "sim" || v == "kernel")) options.host = v == "sim" ? HostKind::sim : HostKind::kernel;
    else if (a == "--profile") options.kernel_profile = std::string(v);
    else if (a == "--hardware") options.hardware_profile = std::string(v);
    else if (a == "--threads") good = number(v, threads);
    else if (a == "--max-vsmmus") good = number(v, options.limits.max_vsmmus);
    else if (a == "--max-pending") good = number(v, options.limits.max_pending);
    else if (a == "--log-level" && (v == "error" || v == "warn" || v == "info" || v == "debug"))
      level = v == "error" ? log::Level::error : v == "warn" ? log::Level::warn : v == "info" ? log::Level::info : log::Level::debug;
    else good = false;
    if (!good) {
      fmt::print(stderr, "vsmmud: bad option '{} {}'\n\n{}", a, v, kUsage);
      return 2;
    }
  }
  log::set_threshold(level);
  if (options.host == HostKind::kernel) threads = 1;  // host::KernelHost is driven by one thread at a time

  auto inherited = inherited_listen_socket();
  if (!inherited) {
    log::error("vsmmud", "{}", inherited.error());
    return 1;
  }
  if (*inherited) options.inherited_socket = inherited->release();

  boost::asio::io_context io(static_cast<int>(threads));
  auto server = Server::create(io, options);
  if (!server) {
    log::error("vsmmud", "cannot start: {}", server.error());
    return 1;
  }
  (*server)->start();
  log::info("vsmmud", "serving on {} ({} host{}), {} thread(s); protocol version {}",
            options.inherited_socket >= 0 ? std::string("the socket systemd passed") : options.socket_path,
            options.host == HostKind::sim ? "simulated" : "kernel",
            options.host == HostKind::sim ? fmt::format(": {} / {}", options.kernel_profile, options.hardware_profile) : "",
            threads, kProtocolVersion);
  std::vector<std::thread> pool;
  for (std::uint32_t t = 1; t < threads; ++t) pool.emplace_back([&io] { io.run(); });
  io.run();
  for (auto& t : pool) t.join();
  const auto st = (*server)->daemon_stats();
  log::info("vsmmud", "stopped: {} request(s) served, {} refused; host objects held: {}", st.requests, st.refused, st.host_objects);
  return 0;
}

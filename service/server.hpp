// vsmmud's server: the listening socket (made 0600, or inherited from systemd), one Session per client
// connection, the host the vSMMUs run on (the simulated host shared by every client, or one kernel host -
// one iommufd - per client), the per-client limits, and a clean shutdown: every vSMMU closed, every device
// back to blocking DMA, every host object destroyed, before run() returns.
#pragma once

#include <utility>  // before Boost.Asio

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>

#include <boost/asio/basic_socket_acceptor.hpp>
#include <boost/asio/generic/seq_packet_protocol.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/strand.hpp>

#include "host/host.hpp"
#include "service/protocol.hpp"

namespace vsmmu::host::sim {
class SimHost;
}

namespace vsmmu::service {

class Session;
class ServedVsmmu;

// Per-connection limits, announced in HELLO's reply.
struct ServerLimits {
  std::uint32_t max_message = 64 * 1024;  // bytes per packet, both ways
  std::uint32_t max_fds = 4;              // fds per packet
  std::uint32_t max_vsmmus = 16;
  std::uint32_t max_devices = 256;        // all the connection's vSMMUs together
  std::uint32_t max_regions = 4096;       // guest RAM regions
  std::uint32_t max_pending = 64;         // requests in flight (and replies unsent) before the daemon stops reading
  std::uint32_t max_clients = 256;        // connections at once, all users
};

struct ServerOptions {
  std::string socket_path;                // bound and made 0600 unless a socket was inherited
  int inherited_socket = -1;              // a listening socket from systemd (service/listen_socket.hpp)
  HostKind host = HostKind::sim;
  std::string kernel_profile = "upstream";   // the simulated host's profiles (docs/sim-host.md)
  std::string hardware_profile = "default";
  ServerLimits limits;
};

struct ServerCounters {
  std::atomic<std::uint64_t> requests{0};
  std::atomic<std::uint64_t> refused{0};
};

class Server {
 public:
  static Result<std::unique_ptr<Server>> create(boost::asio::io_context& io, const ServerOptions& options);
  ~Server();

  // Accepts clients until shutdown(); SIGTERM and SIGINT call shutdown().
  void start();
  // Stops accepting and closes every session; run() returns once all is released.
  void shutdown(std::string_view why);

  // ---- for sessions
  boost::asio::io_context& io() { return io_; }
  const ServerOptions& options() const { return options_; }
  ServerCounters& counters() { return counters_; }
  // The host a new client's vSMMUs use: the shared simulated host, or a kernel host of its own.
  Result<std::shared_ptr<host::Host>> host_for_client();
  host::sim::SimHost* sim_host() { return sim_.get(); }
  void register_vsmmu(const std::shared_ptr<ServedVsmmu>& v);
  void forget_session(Session* s);
  DaemonStatsReply daemon_stats();

 private:
  Server(boost::asio::io_context& io, const ServerOptions& options);
  void accept();

  boost::asio::io_context& io_;
  boost::asio::strand<boost::asio::io_context::executor_type> strand_;  // the acceptor, the signals, stopping_
  const ServerOptions options_;
  std::shared_ptr<host::sim::SimHost> sim_;
  std::optional<boost::asio::basic_socket_acceptor<boost::asio::generic::seq_packet_protocol>> acceptor_;
  boost::asio::signal_set signals_;
  bool stopping_ = false;
  std::uint64_t next_client_ = 1;
  ServerCounters counters_;
  std::mutex mu_;                                        // sessions_, vsmmus_
  std::set<std::shared_ptr<Session>> sessions_;
  std::vector<std::weak_ptr<ServedVsmmu>> vsmmus_;
};

}  // namespace vsmmu::service

#include "service/server.hpp"

#include <sys/socket.h>
#include <unistd.h>

#include <boost/asio/bind_executor.hpp>
#include <boost/asio/post.hpp>

#include "base/log.hpp"
#include "base/try.hpp"
#include "host/kernel/kernel_host.hpp"
#include "host/sim/profile.hpp"
#include "host/sim/sim_host.hpp"
#include "service/client_memory.hpp"
#include "service/listen_socket.hpp"
#include "service/served_vsmmu.hpp"
#include "service/session.hpp"

namespace vsmmu::service {

namespace {
constexpr const char* kLog = "vsmmud";
using Protocol = boost::asio::generic::seq_packet_protocol;
}  // namespace

Server::Server(boost::asio::io_context& io, const ServerOptions& options)
    : io_(io), strand_(boost::asio::make_strand(io)), options_(options), signals_(io, SIGTERM, SIGINT) {}

Server::~Server() = default;

Result<std::unique_ptr<Server>> Server::create(boost::asio::io_context& io, const ServerOptions& options) {
  std::unique_ptr<Server> s(new Server(io, options));
  if (options.host == HostKind::sim) {
    VSMMU_TRY_ASSIGN(auto kp, host::sim::resolve_kernel_profile(options.kernel_profile));
    VSMMU_TRY_ASSIGN(auto hp, host::sim::resolve_hardware_profile(options.hardware_profile));
    VSMMU_TRY_ASSIGN(auto sim, host::sim::SimHost::create(kp, hp));
    s->sim_ = std::move(sim);
  }
  host::UniqueFd fd;
  if (options.inherited_socket >= 0) {
    fd = host::UniqueFd(options.inherited_socket);
  } else {
    VSMMU_TRY_ASSIGN(auto l, listen_at(options.socket_path));
    fd = std::move(l);
  }
  s->acceptor_.emplace(io);
  boost::system::error_code ec;
  s->acceptor_->assign(Protocol(AF_UNIX, 0), fd.get(), ec);
  if (ec) return fail(ec.value(), "vsmmud", "taking the listening socket: {}", ec.message());
  (void)fd.release();
  return s;
}

void Server::start() {
  signals_.async_wait(boost::asio::bind_executor(strand_, [this](boost::system::error_code ec, int signo) {
    if (!ec) shutdown(signo == SIGTERM ? "SIGTERM" : "SIGINT");
  }));
  boost::asio::post(strand_, [this] { accept(); });
}

void Server::accept() {
  acceptor_->async_accept(boost::asio::bind_executor(strand_, [this](boost::system::error_code ec, Protocol::socket socket) {
    if (stopping_) return;
    if (ec) {
      log::warn(kLog, "accepting a client failed: {}", ec.message());
      if (ec == boost::asio::error::operation_aborted) return;
      return accept();
    }
    // Peer credentials: only the daemon's own user (or root) may drive it.
    ucred cred{};
    socklen_t len = sizeof cred;
    if (::getsockopt(socket.native_handle(), SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
      log::warn(kLog, "a client's credentials could not be read ({}); connection closed", std::strerror(errno));
      return accept();
    }
    if (cred.uid != 0 && cred.uid != ::geteuid()) {
      log::warn(kLog, "refused a client: pid {} uid {} is neither root nor the daemon's uid {}", cred.pid, cred.uid, ::geteuid());
      return accept();
    }
    std::shared_ptr<Session> session;
    {
      std::lock_guard lock(mu_);
      if (sessions_.size() >= options_.limits.max_clients) {
        log::warn(kLog, "refused a client (pid {}): {} clients already connected (the daemon's limit)", cred.pid, sessions_.size());
        return accept();
      }
      session = std::make_shared<Session>(*this, std::move(socket), next_client_++,
                                          fmt::format("pid {}, uid {}", cred.pid, cred.uid));
      sessions_.insert(session);
    }
    session->start();
    accept();
  }));
}

void Server::shutdown(std::string_view why) {
  if (stopping_) return;
  stopping_ = true;
  boost::system::error_code ec;
  signals_.cancel(ec);
  if (acceptor_) acceptor_->close(ec);
  if (!options_.socket_path.empty() && options_.inherited_socket < 0) ::unlink(options_.socket_path.c_str());
  std::set<std::shared_ptr<Session>> sessions;
  {
    std::lock_guard lock(mu_);
    sessions = sessions_;
  }
  log::info(kLog, "shutting down ({}): closing {} client(s)", why, sessions.size());
  for (const auto& s : sessions) s->close(fmt::format("the daemon is shutting down ({})", why));
}

Result<std::shared_ptr<host::Host>> Server::host_for_client() {
  if (sim_) return std::shared_ptr<host::Host>(sim_);
  VSMMU_TRY_ASSIGN(auto k, host::KernelHost::open());
  return std::shared_ptr<host::Host>(std::move(k));
}

void Server::register_vsmmu(const std::shared_ptr<ServedVsmmu>& v) {
  std::lock_guard lock(mu_);
  std::erase_if(vsmmus_, [](const auto& w) { return w.expired(); });
  vsmmus_.push_back(v);
}

void Server::forget_session(Session* s) {
  std::lock_guard lock(mu_);
  std::erase_if(sessions_, [s](const auto& p) { return p.get() == s; });
}

DaemonStatsReply Server::daemon_stats() {
  DaemonStatsReply r;
  std::lock_guard lock(mu_);
  r.clients = sessions_.size();
  for (const auto& w : vsmmus_)
    if (auto v = w.lock()) {
      const auto objects = v->host_objects();
      if (objects) ++r.vsmmus;
      r.host_objects += objects;
    }
  r.host_objects += ClientMemory::live();  // each client's IOAS
  r.requests = counters_.requests.load();
  r.refused = counters_.refused.load();
  if (sim_) r.host_live_objects = sim_->stats().objects;
  return r;
}

}  // namespace vsmmu::service

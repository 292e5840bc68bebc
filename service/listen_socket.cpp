#include "service/listen_socket.hpp"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <string_view>

namespace vsmmu::service {

namespace {
constexpr const char* kWhere = "vsmmud.socket";
constexpr int kListenFdsStart = 3;  // SD_LISTEN_FDS_START
}  // namespace

Result<host::UniqueFd> inherited_listen_socket() {
  const char* pid = std::getenv("LISTEN_PID");
  const char* fds = std::getenv("LISTEN_FDS");
  if (!pid || !fds) return host::UniqueFd();
  const bool ours = std::string_view(pid) == std::to_string(::getpid());
  const int count = std::atoi(fds);
  ::unsetenv("LISTEN_PID");
  ::unsetenv("LISTEN_FDS");
  ::unsetenv("LISTEN_FDNAMES");
  if (!ours) return host::UniqueFd();
  if (count != 1)
    return fail(EINVAL, kWhere, "systemd passed {} sockets; vsmmud.socket must define exactly one ListenSequentialPacket", count);
  const int fd = kListenFdsStart;
  int type = 0, domain = 0, listening = 0;
  socklen_t len = sizeof type;
  if (::getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0)
    return fail(errno, kWhere, "the fd systemd passed is not a socket: {}", std::strerror(errno));
  len = sizeof domain;
  (void)::getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len);
  len = sizeof listening;
  (void)::getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len);
  if (domain != AF_UNIX || type != SOCK_SEQPACKET || !listening)
    return fail(EINVAL, kWhere, "the socket systemd passed must be a listening AF_UNIX SOCK_SEQPACKET socket "
                "(ListenSequentialPacket= in vsmmud.socket)");
  ::fcntl(fd, F_SETFD, FD_CLOEXEC);
  return host::UniqueFd(fd);
}

Result<host::UniqueFd> listen_at(const std::string& path, int backlog) {
  // Bound and listening under a temporary name, then renamed into place: a client that sees the path can
  // connect at once (no window between bind() and listen() in which it would be refused).
  const std::string temporary = path + ".new-" + std::to_string(::getpid());
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.empty() || temporary.size() >= sizeof addr.sun_path)
    return fail(ENAMETOOLONG, kWhere, "socket path '{}' must be 1 to {} bytes", path, sizeof addr.sun_path - 1 - (temporary.size() - path.size()));
  std::memcpy(addr.sun_path, temporary.data(), temporary.size());
  host::UniqueFd fd(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
  if (!fd) return fail(errno, kWhere, "socket(AF_UNIX, SOCK_SEQPACKET): {}", std::strerror(errno));
  struct stat st{};
  if (::lstat(path.c_str(), &st) == 0 && !S_ISSOCK(st.st_mode))
    return fail(EEXIST, kWhere, "{} exists and is not a socket; remove it or choose another --socket", path);
  ::unlink(temporary.c_str());
  const mode_t old = ::umask(0177);  // the socket file is made 0600
  const int b = ::bind(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr);
  const int bind_errno = errno;
  ::umask(old);
  if (b != 0) return fail(bind_errno, kWhere, "binding {}: {}", temporary, std::strerror(bind_errno));
  if (::listen(fd.get(), backlog) != 0) {
    const int e = errno;
    ::unlink(temporary.c_str());
    return fail(e, kWhere, "listening on {}: {}", temporary, std::strerror(e));
  }
  if (::rename(temporary.c_str(), path.c_str()) != 0) {  // replaces a stale socket of an earlier run
    const int e = errno;
    ::unlink(temporary.c_str());
    return fail(e, kWhere, "moving the listening socket to {}: {}", path, std::strerror(e));
  }
  return fd;
}

}  // namespace vsmmu::service

#include "service/packet_io.hpp"

#include <sys/socket.h>

#include <cstring>

namespace vsmmu::service {

Result<ReceivedPacket> receive_packet(int socket, std::span<std::byte> buffer, std::size_t max_fds) {
  std::vector<char> control(CMSG_SPACE(sizeof(int) * (max_fds ? max_fds : 1)));
  iovec iov{buffer.data(), buffer.size()};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control.data();
  msg.msg_controllen = control.size();
  ssize_t n;
  do {
    n = ::recvmsg(socket, &msg, MSG_CMSG_CLOEXEC);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return fail(errno, "recvmsg", "receiving a packet: {}", std::strerror(errno));
  ReceivedPacket r;
  r.size = static_cast<std::size_t>(n) < buffer.size() ? static_cast<std::size_t>(n) : buffer.size();
  r.truncated = (msg.msg_flags & MSG_TRUNC) != 0;
  r.fds_truncated = (msg.msg_flags & MSG_CTRUNC) != 0;
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    const std::size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (std::size_t i = 0; i < count; ++i) {
      int fd;
      std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
      r.fds.emplace_back(fd);
    }
  }
  if (r.fds.size() > max_fds) {
    r.fds.resize(max_fds);  // closes the extra ones
    r.fds_truncated = true;
  }
  return r;
}

Result<void> send_packet(int socket, std::span<const std::byte> packet, std::span<const int> fds) {
  iovec iov{const_cast<std::byte*>(packet.data()), packet.size()};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  std::vector<char> control;
  if (!fds.empty()) {
    control.resize(CMSG_SPACE(sizeof(int) * fds.size()));
    msg.msg_control = control.data();
    msg.msg_controllen = control.size();
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
    std::memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
  }
  ssize_t n;
  do {
    n = ::sendmsg(socket, &msg, MSG_NOSIGNAL);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return fail(errno, "sendmsg", "sending a {}-byte packet with {} fd(s): {}", packet.size(), fds.size(), std::strerror(errno));
  if (static_cast<std::size_t>(n) != packet.size())
    return fail(EMSGSIZE, "sendmsg", "sent {} of a {}-byte packet", n, packet.size());
  return {};
}

}  // namespace vsmmu::service

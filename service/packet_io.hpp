// One packet on a SOCK_SEQPACKET socket with the file descriptors that travel beside it (SCM_RIGHTS): the
// daemon and both clients send and receive only through these two calls.
#pragma once

#include <cstddef>
#include <span>
#include <vector>

#include "base/error.hpp"
#include "host/handles.hpp"

namespace vsmmu::service {

struct ReceivedPacket {
  std::size_t size = 0;                 // bytes of the packet in the caller's buffer
  bool truncated = false;               // the packet was larger than the buffer (MSG_TRUNC): the rest is lost
  bool fds_truncated = false;           // more fds came than max_fds (MSG_CTRUNC): the extra ones were closed
  std::vector<host::UniqueFd> fds;      // received fds, owned (close-on-exec)
};

// Receives one packet into `buffer` with at most `max_fds` fds. EAGAIN on a non-blocking socket with nothing
// to read; a packet of size 0 with no error means the peer closed the connection.
Result<ReceivedPacket> receive_packet(int socket, std::span<std::byte> buffer, std::size_t max_fds);
// Sends one packet with `fds` (borrowed). EAGAIN when a non-blocking socket's buffer is full (nothing sent).
Result<void> send_packet(int socket, std::span<const std::byte> packet, std::span<const int> fds = {});

}  // namespace vsmmu::service

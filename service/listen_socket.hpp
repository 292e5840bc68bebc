// The daemon's listening socket: made at a path with mode 0600 (only the daemon's user, root included, may
// connect), or inherited through systemd socket activation (sd_listen_fds(3): LISTEN_PID is this process,
// LISTEN_FDS >= 1, the socket is fd 3; service/vsmmud.socket makes it).
#pragma once

#include <string>

#include "base/error.hpp"
#include "host/handles.hpp"

namespace vsmmu::service {

// The socket systemd passed, if it passed one (checked: AF_UNIX, SOCK_SEQPACKET, listening); the LISTEN_*
// variables are removed so children do not see them.
Result<host::UniqueFd> inherited_listen_socket();
// Binds and listens at `path` (a stale socket file there is replaced), mode 0600; the path appears only once
// the socket listens.
Result<host::UniqueFd> listen_at(const std::string& path, int backlog = 64);

}  // namespace vsmmu::service

// A vsmmud started as a child process on a socket in a fresh directory (for the demo, the service tests, the
// e2e program and the benchmarks): start() returns once the socket exists, stop() sends SIGTERM and returns
// the exit status (128 + signal if it died of one). The directory goes with the object.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "base/error.hpp"

namespace vsmmu::testkit {

class DaemonProcess {
 public:
  // `args` follow `--socket PATH`; with `log_file`, the daemon's stderr goes there (else it is inherited).
  static Result<DaemonProcess> start(const std::string& binary, const std::vector<std::string>& args,
                                     bool log_to_file = false);
  DaemonProcess(DaemonProcess&& o) noexcept;
  DaemonProcess& operator=(DaemonProcess&&) = delete;
  ~DaemonProcess();

  const std::string& socket() const { return socket_; }
  pid_t pid() const { return pid_; }
  int stop();
  // The daemon's log (log_to_file), or "".
  std::string log() const;

  // vsmmud beside `program` (an installed tree) or in ../service/ of it (the build tree).
  static Result<std::string> find_beside(const std::string& program);

 private:
  DaemonProcess() = default;
  pid_t pid_ = -1;
  std::string dir_, socket_, log_;
};

}  // namespace vsmmu::testkit

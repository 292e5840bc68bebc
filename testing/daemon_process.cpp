#include "testing/daemon_process.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>
#include <utility>

namespace vsmmu::testkit {

namespace {
constexpr const char* kWhere = "vsmmud process";
}

Result<DaemonProcess> DaemonProcess::start(const std::string& binary, const std::vector<std::string>& args, bool log_to_file) {
  DaemonProcess d;
  char dir[] = "/tmp/vsmmud-XXXXXX";
  if (!::mkdtemp(dir)) return fail(errno, kWhere, "making a directory for the socket: {}", std::strerror(errno));
  d.dir_ = dir;
  d.socket_ = d.dir_ + "/vsmmud.sock";
  if (log_to_file) d.log_ = d.dir_ + "/vsmmud.log";
  std::vector<std::string> argv_s = {binary, "--socket", d.socket_};
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  const pid_t pid = ::fork();
  if (pid < 0) return fail(errno, kWhere, "fork: {}", std::strerror(errno));
  if (pid == 0) {
    if (!d.log_.empty()) {
      const int log = ::open(d.log_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
      if (log >= 0) ::dup2(log, 2);
    }
    std::vector<char*> argv;
    for (auto& a : argv_s) argv.push_back(a.data());
    argv.push_back(nullptr);
    ::execv(argv[0], argv.data());
    std::fprintf(stderr, "cannot run %s: %s\n", argv[0], std::strerror(errno));
    ::_exit(127);
  }
  d.pid_ = pid;
  for (int i = 0; i < 1000; ++i) {  // up to 10 s for the socket
    if (std::filesystem::exists(d.socket_)) return d;
    int status = 0;
    if (::waitpid(pid, &status, WNOHANG) == pid) {
      d.pid_ = -1;
      return fail(ECHILD, kWhere, "{} exited with status {} before listening{}", binary,
                  WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status),
                  d.log_.empty() ? "; its message is above" : ": " + d.log());
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return fail(ETIMEDOUT, kWhere, "{} did not create {} within 10 s", binary, d.socket_);
}

DaemonProcess::DaemonProcess(DaemonProcess&& o) noexcept
    : pid_(std::exchange(o.pid_, -1)), dir_(std::move(o.dir_)), socket_(std::move(o.socket_)), log_(std::move(o.log_)) {
  o.dir_.clear();
}

DaemonProcess::~DaemonProcess() {
  (void)stop();
  if (!dir_.empty()) {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
}

int DaemonProcess::stop() {
  if (pid_ <= 0) return 0;
  ::kill(pid_, SIGTERM);
  int status = 0;
  ::waitpid(pid_, &status, 0);
  pid_ = -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

std::string DaemonProcess::log() const {
  if (log_.empty()) return {};
  std::ifstream in(log_);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

Result<std::string> DaemonProcess::find_beside(const std::string& program) {
  std::error_code ec;
  const auto dir = std::filesystem::path(program).parent_path();
  for (const auto& p : {dir / "vsmmud", dir / ".." / "service" / "vsmmud"})
    if (std::filesystem::exists(p, ec)) return p.lexically_normal().string();
  return fail(ENOENT, kWhere, "vsmmud is neither in {} nor in ../service/ of it; build it (target vsmmud)", dir.string());
}

}  // namespace vsmmu::testkit

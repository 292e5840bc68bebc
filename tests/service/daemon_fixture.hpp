// A real vsmmud for process-level tests: started from the build tree on a socket in a fresh directory, its log
// kept, stopped with SIGTERM (its exit status checked by the tests that care).
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "host/handles.hpp"

namespace vsmmu::servicetest {

class Daemon {
 public:
  explicit Daemon(std::vector<std::string> extra = {}) {
    char dir[] = "/tmp/vsmmud-test-XXXXXX";
    dir_ = ::mkdtemp(dir);
    socket_ = dir_ + "/vsmmud.sock";
    log_ = dir_ + "/vsmmud.log";
    std::vector<std::string> args = {VSMMUD_PATH, "--socket", socket_, "--host", "sim", "--log-level", "info"};
    args.insert(args.end(), extra.begin(), extra.end());
    pid_ = ::fork();
    if (pid_ == 0) {
      const int log = ::open(log_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
      ::dup2(log, 2);
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
    for (int i = 0; i < 500 && !std::filesystem::exists(socket_); ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ~Daemon() {
    if (pid_ > 0) (void)stop();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  const std::string& socket() const { return socket_; }
  pid_t pid() const { return pid_; }
  bool listening() const { return std::filesystem::exists(socket_); }
  // SIGTERM, then the exit status (128 + signal if it died of one).
  int stop() {
    ::kill(pid_, SIGTERM);
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }
  std::string log() const {
    std::ifstream in(log_);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
  }
  // A raw SOCK_SEQPACKET connection, for what no client library would send.
  host::UniqueFd raw_connect() const {
    host::UniqueFd fd(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", socket_.c_str());
    if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) fd.reset();
    return fd;
  }

 private:
  std::string dir_, socket_, log_;
  pid_t pid_ = -1;
};

}  // namespace vsmmu::servicetest

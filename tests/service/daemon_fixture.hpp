// A real vsmmud for process-level tests (testkit::DaemonProcess: the build tree's daemon on a socket in a
// fresh directory, its log kept), and a raw SOCK_SEQPACKET connection for what no client library would send.
#pragma once

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <cstdio>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "host/handles.hpp"
#include "service/packet_io.hpp"
#include "service/protocol.hpp"
#include "testing/daemon_process.hpp"

namespace vsmmu::servicetest {

class Daemon {
 public:
  explicit Daemon(std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {"--host", "sim", "--log-level", "info"};
    args.insert(args.end(), extra.begin(), extra.end());
    auto d = testkit::DaemonProcess::start(VSMMUD_PATH, args, /*log_to_file=*/true);
    EXPECT_TRUE(d) << d.error();
    if (d) process_.emplace(std::move(*d));
  }
  const std::string& socket() const { return process_ ? process_->socket() : empty_; }
  bool listening() const { return process_ && std::filesystem::exists(process_->socket()); }
  int stop() { return process_ ? process_->stop() : -1; }
  std::string log() const { return process_ ? process_->log() : std::string(); }
  host::UniqueFd raw_connect() const {
    host::UniqueFd fd(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", socket().c_str());
    if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) fd.reset();
    return fd;
  }

 private:
  std::optional<testkit::DaemonProcess> process_;
  std::string empty_;
};

// A raw request and its reply, for what no client library sends.
struct RawReply {
  service::Header header;
  service::Refusal refusal;
};
inline RawReply roundtrip(int fd, std::span<const std::byte> packet, std::span<const int> fds = {}) {
  using namespace vsmmu::service;
  RawReply r{};
  EXPECT_TRUE(send_packet(fd, packet, fds));
  std::vector<std::byte> buf(1 << 17);
  pollfd p{fd, POLLIN, 0};
  if (::poll(&p, 1, 5000) != 1) {
    ADD_FAILURE() << "no reply within 5 s";
    return r;
  }
  auto got = receive_packet(fd, buf, 4);
  if (!got) {
    ADD_FAILURE() << got.error();
    return r;
  }
  Packet packet_in;
  auto bad = parse_header(std::span(buf.data(), got->size), false, packet_in);
  EXPECT_FALSE(bad) << bad->to_string();
  r.header = packet_in.header;
  if (r.header.status != 0) r.refusal = parse_error(packet_in);
  return r;
}
// HELLO with the features `features` offered.
inline std::vector<std::byte> hello_packet(std::uint64_t features = 0) {
  using namespace vsmmu::service;
  Header h;
  h.op = static_cast<std::uint16_t>(Op::hello);
  h.tag = 1;
  HelloRequest offer;
  offer.features = features;
  return build(h, offer);
}

}  // namespace vsmmu::servicetest

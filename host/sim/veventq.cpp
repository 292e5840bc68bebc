#include "host/sim/veventq.hpp"

#include "base/try.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>

namespace vsmmu::host::sim {

namespace {

constexpr const char* kWhere = "sim.veventq";
constexpr const char* kRead = "read(vEVENTQ)";

void put_u32(std::span<std::byte> out, std::size_t at, std::uint32_t v) {
  for (std::size_t i = 0; i < 4; ++i) out[at + i] = std::byte(static_cast<std::uint8_t>(v >> (8 * i)));
}

}  // namespace

Result<UserChannel> UserChannel::create(std::string_view what) {
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv) != 0) {
    const int err = errno;
    return fail(err, kWhere, "socketpair for the {} fd failed: {} (the kernel would fail the same way when out "
                "of file descriptors: raise RLIMIT_NOFILE or close fds)", what, std::strerror(err));
  }
  UserChannel c;
  c.ours_ = UniqueFd(sv[0]);
  c.user_ = UniqueFd(sv[1]);
  struct stat st {};
  if (::fstat(sv[1], &st) != 0) {
    const int err = errno;
    return fail(err, kWhere, "fstat of the {} fd failed: {}", what, std::strerror(err));
  }
  c.user_dev_ = st.st_dev;
  c.user_ino_ = st.st_ino;
  return c;
}

bool UserChannel::user_open() const {
  if (user_) return true;  // not handed out yet
  pollfd p{ours_.get(), 0, 0};
  if (::poll(&p, 1, 0) < 0) return true;
  return (p.revents & (POLLHUP | POLLERR)) == 0;
}

bool UserChannel::is_user_fd(int fd) const {
  struct stat st {};
  return ::fstat(fd, &st) == 0 && st.st_dev == user_dev_ && st.st_ino == user_ino_ && user_open();
}

void UserChannel::set_ready(bool ready, int user_fd) {
  if (ready == ready_) return;
  std::byte token{1};
  if (ready) {
    // The user may have closed their end already: nobody is left to wake.
    if (::send(ours_.get(), &token, 1, MSG_NOSIGNAL | MSG_DONTWAIT) != 1) return;
  } else if (::recv(user_fd, &token, 1, MSG_DONTWAIT) != 1) {
    return;
  }
  ready_ = ready;
}

Result<std::unique_ptr<VeventQueue>> VeventQueue::create(std::uint32_t depth, std::size_t payload_bytes) {
  VSMMU_TRY_ASSIGN(auto channel, UserChannel::create("vEVENTQ"));
  return std::unique_ptr<VeventQueue>(new VeventQueue(std::move(channel), depth, payload_bytes));
}

void VeventQueue::report(std::span<const std::byte> payload) {
  ++reported_;
  const std::uint32_t seq = sequence_;
  sequence_ = (sequence_ + 1) & kSequenceMask;
  if (events_.size() >= depth_) {
    // iommufd_vevent_handler with the lost_events_header: it moves to the tail with this sequence.
    ++lost_;
    lost_header_ = seq;
  } else {
    // A header at the tail is removed as the event is added after it: the sequence gap reports the loss.
    lost_header_.reset();
    events_.push_back({seq, std::vector<std::byte>(payload.begin(), payload.begin() + std::min(payload.size(),
                                                                                               payload_bytes_))});
  }
  channel_.set_ready(true, -1);
}

Result<std::size_t> VeventQueue::read(std::span<std::byte> buf, int user_fd) {
  if (buf.size() < kHeaderBytes)
    return fail(EINVAL, kRead, "fd {}: a buffer of {} bytes cannot hold a record header ({} bytes)", user_fd,
                buf.size(), kHeaderBytes);
  std::size_t done = 0;
  while (!events_.empty()) {
    const Event& e = events_.front();
    const std::size_t bytes = kHeaderBytes + e.payload.size();
    if (bytes > buf.size() - done) {
      if (done == 0)
        return fail(EINVAL, kRead, "fd {}: a buffer of {} bytes is shorter than the next record ({} bytes; it "
                    "stays queued)", user_fd, buf.size(), bytes);
      break;
    }
    put_u32(buf, done, 0);
    put_u32(buf, done + 4, e.sequence);
    std::memcpy(buf.data() + done + kHeaderBytes, e.payload.data(), e.payload.size());
    done += bytes;
    events_.pop_front();
  }
  if (events_.empty() && lost_header_ && buf.size() - done >= kHeaderBytes) {
    put_u32(buf, done, kFlagLostEvents);
    put_u32(buf, done + 4, *lost_header_);
    done += kHeaderBytes;
    lost_header_.reset();
  }
  if (empty()) channel_.set_ready(false, user_fd);
  return done;
}

}  // namespace vsmmu::host::sim

#include "nesting/host/sim/veventq.hpp"

#include <fcntl.h>
#include <linux/sockios.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

#include "smmu/log.hpp"

namespace vsmmu::host::sim {

namespace {

constexpr const char* kWhere = "sim.veventq";

void put_u32(std::vector<std::byte>& out, std::size_t at, std::uint32_t v) {
  for (std::size_t i = 0; i < 4; ++i) out[at + i] = std::byte(static_cast<std::uint8_t>(v >> (8 * i)));
}

std::optional<std::uint64_t> outq(int fd) {
  int n = 0;
  if (::ioctl(fd, SIOCOUTQ, &n) != 0 || n < 0) return std::nullopt;
  return static_cast<std::uint64_t>(n);
}

}  // namespace

Result<UserChannel> UserChannel::create(std::string_view what) {
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) {
    const int err = errno;
    return fail(err, kWhere, "socketpair for the {} fd failed: {} (the kernel would fail the same way when out "
                "of file descriptors: raise RLIMIT_NOFILE or close fds)", what, std::strerror(err));
  }
  UserChannel c;
  c.ours_ = UniqueFd(sv[0]);
  c.user_ = UniqueFd(sv[1]);
  // The user's end never blocks: an empty queue reads as EAGAIN, the closest a socket gets to the kernel's 0.
  const int flags = ::fcntl(sv[1], F_GETFL);
  if (flags < 0 || ::fcntl(sv[1], F_SETFL, flags | O_NONBLOCK) != 0 ||
      ::fcntl(sv[0], F_SETFL, ::fcntl(sv[0], F_GETFL) | O_NONBLOCK) != 0) {
    const int err = errno;
    return fail(err, kWhere, "making the {} fd non-blocking failed: {}", what, std::strerror(err));
  }
  return c;
}

bool UserChannel::user_open() const {
  if (user_) return true;  // not handed out yet
  pollfd p{ours_.get(), 0, 0};
  if (::poll(&p, 1, 0) < 0) return true;
  return (p.revents & (POLLHUP | POLLERR)) == 0;
}

Result<std::unique_ptr<VeventQueue>> VeventQueue::create(std::uint32_t depth, std::size_t payload_bytes) {
  auto channel = UserChannel::create("vEVENTQ");
  if (!channel) return std::unexpected(channel.error());
  // Room for as many records as the system allows (net.core.wmem_max caps it); the rest waits in backlog_.
  int want = 64 << 20;
  (void)::setsockopt(channel->fd(), SOL_SOCKET, SO_SNDBUF, &want, sizeof want);
  std::unique_ptr<VeventQueue> q(new VeventQueue(std::move(*channel), depth, payload_bytes));
  if (auto r = q->calibrate(); !r) return std::unexpected(r.error());
  return q;
}

std::uint64_t UserChannel::measure_record_cost(std::size_t bytes) {
  if (!user_) return 0;
  std::vector<std::byte> probe(bytes);
  const auto before = outq(ours_.get());
  if (!before || ::send(ours_.get(), probe.data(), probe.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(bytes)) return 0;
  const auto after = outq(ours_.get());
  (void)::recv(user_.get(), probe.data(), probe.size(), 0);
  return after && *after > *before ? *after - *before : 0;
}

Result<void> VeventQueue::calibrate() {
  truesize_event_ = channel_.measure_record_cost(kHeaderBytes + payload_bytes_);
  truesize_header_ = channel_.measure_record_cost(kHeaderBytes);
  if (truesize_event_ == 0 || truesize_header_ == 0) {
    log::warn(kWhere, "SIOCOUTQ does not report the vEVENTQ socket's unread records here; the simulated vEVENTQ "
              "will not see the reader consume events, so its depth only bounds records it could not write yet");
    truesize_event_ = truesize_header_ = 0;
  }
  return {};
}

void VeventQueue::refresh() {
  if (in_flight_.empty()) return;
  std::uint64_t sum = 0;
  for (const auto& r : in_flight_) sum += r.truesize;
  const auto unread = truesize_event_ ? outq(fd()) : std::optional<std::uint64_t>(0);
  const std::uint64_t left = unread.value_or(0);
  // The reader consumes in order: the oldest records are the ones gone.
  while (!in_flight_.empty() && sum > left) {
    sum -= in_flight_.front().truesize;
    in_flight_.pop_front();
  }
}

std::uint32_t VeventQueue::unread_events() {
  refresh();
  std::uint32_t n = 0;
  for (const auto& r : in_flight_) n += r.event ? 1 : 0;
  for (const auto& r : backlog_) n += r.event ? 1 : 0;
  return n;
}

VeventQueue::Record VeventQueue::make_record(std::uint32_t flags, std::uint32_t sequence,
                                             std::span<const std::byte> payload) const {
  Record r;
  r.event = (flags & kFlagLostEvents) == 0;
  r.bytes.resize(kHeaderBytes + payload.size());
  put_u32(r.bytes, 0, flags);
  put_u32(r.bytes, 4, sequence);
  if (!payload.empty()) std::memcpy(r.bytes.data() + kHeaderBytes, payload.data(), payload.size());
  return r;
}

void VeventQueue::report(std::span<const std::byte> payload) {
  ++reported_;
  const std::uint32_t seq = sequence_;
  sequence_ = (sequence_ + 1) & kSequenceMask;
  if (unread_events() >= depth_) {
    // The kernel points its LOST_EVENTS header at this sequence; it stays at the tail until an event follows.
    ++lost_;
    pending_lost_ = seq;
    return;
  }
  pending_lost_.reset();  // an event after the loss: the sequence gap reports it, as the kernel's removed header
  backlog_.push_back(make_record(0, seq, payload.first(std::min(payload.size(), payload_bytes_))));
}

void VeventQueue::flush() {
  if (pending_lost_) {
    // One header per overflow: if the last record written is a header the reader has not consumed yet, the
    // kernel would move it to this sequence; the socket cannot, and the next event's gap counts these losses.
    refresh();
    const bool header_at_tail = backlog_.empty() ? (!in_flight_.empty() && !in_flight_.back().event)
                                                 : !backlog_.back().event;
    if (!header_at_tail) backlog_.push_back(make_record(kFlagLostEvents, *pending_lost_, {}));
    pending_lost_.reset();
  }
  push();
}

void VeventQueue::push() {
  while (!backlog_.empty()) {
    const auto& r = backlog_.front();
    const ssize_t n = ::send(fd(), r.bytes.data(), r.bytes.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS) return;  // full: the pump retries
      // The reader closed its end: nobody will read these; drop them as the kernel frees a closed queue's.
      backlog_.clear();
      return;
    }
    in_flight_.push_back({r.event ? truesize_event_ : truesize_header_, r.event});
    backlog_.pop_front();
  }
}

}  // namespace vsmmu::host::sim

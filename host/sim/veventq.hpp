// The simulated host's vEVENTQ and fault-queue file descriptors. The user gets a real pollable fd (one end of
// an AF_UNIX socketpair); a vEVENTQ's records live in the simulated kernel, which answers Host::read_veventq
// with the kernel's rules and keeps the fd readable exactly while records are queued:
// - iommufd_viommu_report_event (drivers/iommu/iommufd/driver.c) and iommufd_vevent_handler
//   (iommufd_private.h): every reported event takes the next sequence number (0..INT_MAX, then 0), queued or
//   not; with `depth` events queued a new one is lost, and the queue's one LOST_EVENTS header moves to the
//   tail carrying that event's sequence; a later queued event removes a header still at the tail (its
//   sequence gap then reports the loss);
// - iommufd_veventq_fops_read (drivers/iommu/iommufd/eventq.c): whole records only, as many as fit, oldest
//   first; an empty queue reads 0; a buffer shorter than a header, or than the first record, is EINVAL and
//   the record stays queued; the header alone needs 8 bytes;
// - iommufd_eventq_fops_poll: POLLIN while the queue is not empty.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

#include "host/handles.hpp"
#include "base/error.hpp"

namespace vsmmu::host::sim {

// A socketpair: the user's end is handed out once; ours stays to signal readiness and to see the user's close.
class UserChannel {
 public:
  static Result<UserChannel> create(std::string_view what);
  // Hands the user's end out (once). The caller owns it.
  int take_user_fd() { return user_.release(); }
  // Whether the user still holds their end open (a closed peer shows POLLHUP on ours).
  bool user_open() const;
  // Whether fd is the user's end of this channel (the same open socket), while the user holds it.
  bool is_user_fd(int fd) const;
  // Makes the user's end readable (POLLIN) or not: one byte waits in it while `ready`. Clearing reads the
  // byte back through `user_fd`, which must be the user's end.
  void set_ready(bool ready, int user_fd);

 private:
  UniqueFd ours_;
  UniqueFd user_;
  dev_t user_dev_ = 0;
  ino_t user_ino_ = 0;
  bool ready_ = false;
};

class VeventQueue {
 public:
  static constexpr std::uint32_t kFlagLostEvents = 1U << 0;  // IOMMU_VEVENTQ_FLAG_LOST_EVENTS
  static constexpr std::uint32_t kSequenceMask = 0x7fffffffU;
  static constexpr std::size_t kHeaderBytes = 8;

  static Result<std::unique_ptr<VeventQueue>> create(std::uint32_t depth, std::size_t payload_bytes);

  int take_user_fd() { return channel_.take_user_fd(); }
  bool user_open() const { return channel_.user_open(); }
  bool is_user_fd(int fd) const { return channel_.is_user_fd(fd); }
  std::uint32_t depth() const { return depth_; }

  // iommufd_viommu_report_event: queue the event with the next sequence number, or lose it when `depth`
  // events are queued. payload must be payload_bytes long.
  void report(std::span<const std::byte> payload);
  // iommufd_veventq_fops_read into buf; user_fd is the fd it came through (the user's end).
  Result<std::size_t> read(std::span<std::byte> buf, int user_fd);

  // For tests and stats.
  std::uint64_t reported() const { return reported_; }
  std::uint64_t lost() const { return lost_; }
  std::uint32_t queued_events() const { return static_cast<std::uint32_t>(events_.size()); }

 private:
  struct Event {
    std::uint32_t sequence = 0;
    std::vector<std::byte> payload;
  };
  VeventQueue(UserChannel channel, std::uint32_t depth, std::size_t payload_bytes)
      : channel_(std::move(channel)), depth_(depth), payload_bytes_(payload_bytes) {}
  bool empty() const { return events_.empty() && !lost_header_; }

  UserChannel channel_;
  std::uint32_t depth_;
  std::size_t payload_bytes_;
  std::uint32_t sequence_ = 0;                 // the next event's
  std::deque<Event> events_;                   // queued events, oldest first (num_events = size)
  std::optional<std::uint32_t> lost_header_;   // the LOST_EVENTS header, always at the tail, and its sequence
  std::uint64_t reported_ = 0;
  std::uint64_t lost_ = 0;
};

}  // namespace vsmmu::host::sim

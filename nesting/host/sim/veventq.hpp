// The simulated host's vEVENTQ and fault-queue file descriptors: real pollable fds (an AF_UNIX
// SOCK_SEQPACKET socketpair) whose reader sees what the kernel's vEVENTQ delivers:
// - records {u32 flags; u32 sequence;} + payload, one whole record per read();
// - every reported event takes the next sequence number (0..INT_MAX, then 0), queued or not;
// - at most `depth` events wait unread; an event reported while `depth` are unread is lost, and the loss
//   shows as a LOST_EVENTS header (no payload) carrying the sequence of the last lost event at the tail of
//   what the interrupt handler run queued, or as a gap in the sequence when a later event follows.
// Differences from the kernel's anon-inode fd, which only a reader that breaks the uAPI's rules can see:
// each read() returns one record (the kernel fills the buffer with as many whole records as fit); an empty
// queue gives EAGAIN (the fd is non-blocking; the kernel returns 0); a buffer shorter than the record
// truncates it (the kernel says EINVAL); a LOST_EVENTS header already queued is not moved to the tail by a
// later loss in another handler run (the following event's sequence gap still counts every lost event).
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <span>
#include <vector>

#include "nesting/host/handles.hpp"
#include "smmu/error.hpp"

namespace vsmmu::host::sim {

// A socketpair: the user's end is handed out once; ours stays to write and to see the user's close.
class UserChannel {
 public:
  static Result<UserChannel> create(std::string_view what);
  // Hands the user's end out (once). The caller owns it.
  int take_user_fd() { return user_.release(); }
  // Whether the user still holds their end open (a closed peer shows POLLHUP on ours).
  bool user_open() const;
  int fd() const { return ours_.get(); }
  // What one record of `bytes` costs in our end's send accounting (SIOCOUTQ counts the buffers of records
  // the reader has not consumed): sends a probe to the user's end before it is handed out and reads it
  // back. 0 when the kernel does not report it.
  std::uint64_t measure_record_cost(std::size_t bytes);

 private:
  UniqueFd ours_;
  UniqueFd user_;
};

class VeventQueue {
 public:
  static constexpr std::uint32_t kFlagLostEvents = 1U << 0;  // IOMMU_VEVENTQ_FLAG_LOST_EVENTS
  static constexpr std::uint32_t kSequenceMask = 0x7fffffffU;
  static constexpr std::size_t kHeaderBytes = 8;

  static Result<std::unique_ptr<VeventQueue>> create(std::uint32_t depth, std::size_t payload_bytes);

  int take_user_fd() { return channel_.take_user_fd(); }
  bool user_open() const { return channel_.user_open(); }
  int fd() const { return channel_.fd(); }
  std::uint32_t depth() const { return depth_; }

  // iommufd_viommu_report_event: queue the event with the next sequence number, or lose it when `depth`
  // events are unread. payload must be payload_bytes long.
  void report(std::span<const std::byte> payload);
  // The end of one interrupt-handler run: a loss not followed by a queued event leaves a LOST_EVENTS header
  // at the tail. Writes what is queued to the socket.
  void flush();
  // Writes backlogged records the socket had no room for (the host's pump calls it when the fd is writable).
  void push();
  bool has_backlog() const { return !backlog_.empty(); }

  // For tests and stats.
  std::uint64_t reported() const { return reported_; }
  std::uint64_t lost() const { return lost_; }
  std::uint32_t unread_events();

 private:
  struct Record {
    std::vector<std::byte> bytes;
    bool event = false;  // false: a LOST_EVENTS header
  };
  struct InFlight {
    std::uint64_t truesize = 0;
    bool event = false;
  };
  VeventQueue(UserChannel channel, std::uint32_t depth, std::size_t payload_bytes)
      : channel_(std::move(channel)), depth_(depth), payload_bytes_(payload_bytes) {}
  Result<void> calibrate();
  // Drops from in_flight_ what the reader has consumed (the socket's unread bytes, SIOCOUTQ).
  void refresh();
  Record make_record(std::uint32_t flags, std::uint32_t sequence, std::span<const std::byte> payload) const;

  UserChannel channel_;
  std::uint32_t depth_;
  std::size_t payload_bytes_;
  std::uint32_t sequence_ = 0;
  std::optional<std::uint32_t> pending_lost_;  // a loss in this handler run with no event after it yet
  std::deque<Record> backlog_;                 // not yet written: the socket was full
  std::deque<InFlight> in_flight_;             // written, maybe not yet read
  // What one record costs in the socket's send accounting (SIOCOUTQ), measured on this socket; 0 when the
  // kernel does not report it (then nothing in the socket counts as unread).
  std::uint64_t truesize_event_ = 0;
  std::uint64_t truesize_header_ = 0;
  std::uint64_t reported_ = 0;
  std::uint64_t lost_ = 0;
};

}  // namespace vsmmu::host::sim

// Reads a vEVENTQ fd (IOMMU_VEVENTQ_ALLOC) as the kernel writes it: whole records of
// {u32 flags; u32 sequence;} followed, unless flags has LOST_EVENTS, by the type's payload (32 bytes for
// ARM SMMUv3: the SMMU event with the vSID). Every event the driver reports takes the next sequence number,
// 0..INT_MAX and then 0 again, whether it was queued or dropped because the queue was full; a full queue
// ends with one LOST_EVENTS header carrying the sequence of the last dropped event. So the reader can say how
// many events were lost and where: from a gap in the sequence, or from a LOST_EVENTS header.
// Shared by both backends: it reads through Host::read_veventq, which gives the kernel's answers on both.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "base/error.hpp"

namespace vsmmu::host {

class Host;

// One item of the stream, in the order the kernel queued it.
struct VeventqRecord {
  enum class Kind : std::uint8_t {
    event,  // a queued event: sequence and evt are valid
    lost,   // events were lost here, before the next event
  };
  Kind kind = Kind::event;
  // event: the event's sequence number. lost: the sequence number of the last lost event.
  std::uint32_t sequence = 0;
  // lost: how many events were lost; nullopt when the reader had no earlier sequence to count from.
  std::optional<std::uint32_t> lost_count;
  std::array<std::uint64_t, 4> evt{};  // event: the little-endian event words (ARM SMMUv3)
};

class VeventqReader {
 public:
  static constexpr std::uint32_t kSequenceMask = 0x7fffffffU;  // sequence numbers run 0..INT_MAX
  static constexpr std::size_t kHeaderBytes = 8;
  static constexpr std::size_t kArmSmmuv3PayloadBytes = 32;

  // One read of the queue with the kernel's semantics (Host::read_veventq): the bytes of as many whole
  // records as fit, 0 when empty.
  using Source = std::function<Result<std::size_t>(std::span<std::byte>)>;

  // Reads the vEVENTQ whose fd veventq_alloc returned (borrowed: QueueObject owns it) through the host.
  // first_sequence is what a fresh queue starts at (0); pass nullopt when attaching to a queue whose history
  // is unknown: the first record then sets the baseline.
  VeventqReader(Host& host, int fd, std::size_t payload_bytes = kArmSmmuv3PayloadBytes,
                std::optional<std::uint32_t> first_sequence = 0, std::size_t buffer_records = 64);
  // The same over any source of reads; `label` names it in messages.
  VeventqReader(Source source, std::string label, std::size_t payload_bytes = kArmSmmuv3PayloadBytes,
                std::optional<std::uint32_t> first_sequence = 0, std::size_t buffer_records = 64);

  // Reads what the queue holds now and appends it to out; returns how many records were appended (0 when
  // empty). Never blocks: a read that leaves room for another record in the buffer drained the queue.
  Result<std::size_t> read_available(std::vector<VeventqRecord>& out);

  // Parses one read's worth of bytes (whole records only) and appends to out; exposed for tests. Updates the
  // expected sequence like read_available.
  Result<std::size_t> parse(const std::byte* data, std::size_t size, std::vector<VeventqRecord>& out);

  // The sequence number the next event should carry, if known.
  std::optional<std::uint32_t> expected_sequence() const { return expected_; }
  // Events lost so far whose count was known, and how many loss reports had an unknown count.
  std::uint64_t lost_total() const { return lost_total_; }
  std::uint64_t lost_unknown_reports() const { return lost_unknown_; }

 private:
  void note_loss(std::vector<VeventqRecord>& out, std::uint32_t last_lost_sequence, std::optional<std::uint32_t> count);

  Source source_;
  std::string label_;
  std::size_t payload_bytes_;
  std::optional<std::uint32_t> expected_;
  std::vector<std::byte> buffer_;
  std::uint64_t lost_total_ = 0;
  std::uint64_t lost_unknown_ = 0;
};

}  // namespace vsmmu::host

// The vEVENTQ record reader against synthetic kernel output. The kernel rules it must follow
// (drivers/iommu/iommufd/driver.c iommufd_viommu_report_event, eventq.c iommufd_veventq_fops_read,
// include/uapi/linux/iommufd.h struct iommufd_vevent_header):
//  - read() returns whole records: {u32 flags; u32 sequence;} + 32 payload bytes for ARM SMMUv3, or the
//    8-byte header alone when flags has IOMMU_VEVENTQ_FLAG_LOST_EVENTS;
//  - every reported event takes the next sequence number, 0..INT_MAX then 0, queued or dropped;
//  - a full queue ends with one LOST_EVENTS header carrying the sequence of the last dropped event;
//  - an empty queue returns 0 bytes.
// The reader takes its reads from a source (Host::read_veventq in the product); here a source reads the
// synthetic stream from a socket or pipe, a non-blocking socket's EAGAIN standing for the kernel's 0.
#include "host/veventq_reader.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <climits>
#include <cstring>
#include <vector>

#include "host/handles.hpp"

namespace vsmmu::host {
namespace {

constexpr std::uint32_t kLost = 1;  // IOMMU_VEVENTQ_FLAG_LOST_EVENTS

class Stream {
 public:
  void event(std::uint32_t seq, std::uint64_t tag) {
    header(0, seq);
    const std::array<std::uint64_t, 4> evt{tag, tag + 1, tag + 2, tag + 3};
    append(evt.data(), sizeof evt);
  }
  void lost(std::uint32_t seq) { header(kLost, seq); }
  void raw(const void* p, std::size_t n) { append(p, n); }
  const std::vector<std::byte>& bytes() const { return bytes_; }

 private:
  void header(std::uint32_t flags, std::uint32_t seq) {
    append(&flags, 4);
    append(&seq, 4);
  }
  void append(const void* p, std::size_t n) {
    const auto* b = static_cast<const std::byte*>(p);
    bytes_.insert(bytes_.end(), b, b + n);
  }
  std::vector<std::byte> bytes_;
};

// A SOCK_SEQPACKET pair: each send() is read back whole by one read(), like the kernel's whole-record reads.
struct Channel {
  UniqueFd reader;
  UniqueFd writer;
  Channel() {
    int sv[2];
    EXPECT_EQ(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
    reader = UniqueFd(sv[0]);
    writer = UniqueFd(sv[1]);
  }
  void send(const Stream& s) const {
    ASSERT_EQ(::write(writer.get(), s.bytes().data(), s.bytes().size()), static_cast<ssize_t>(s.bytes().size()));
  }
};

// read(2) of fd as the kernel's vEVENTQ answers it: bytes, or 0 when empty; other errors with their errno.
VeventqReader::Source fd_source(int fd) {
  return [fd](std::span<std::byte> buf) -> Result<std::size_t> {
    const ssize_t n = ::read(fd, buf.data(), buf.size());
    if (n >= 0) return static_cast<std::size_t>(n);
    if (errno == EAGAIN) return 0;
    return fail(errno, "read", "fd {}", fd);
  };
}

VeventqReader fd_reader(int fd, std::size_t payload_bytes = VeventqReader::kArmSmmuv3PayloadBytes,
                        std::optional<std::uint32_t> first_sequence = 0, std::size_t buffer_records = 64) {
  return VeventqReader(fd_source(fd), fmt::format("fd {}", fd), payload_bytes, first_sequence, buffer_records);
}

std::vector<VeventqRecord> read_all(VeventqReader& reader) {
  std::vector<VeventqRecord> out;
  auto n = reader.read_available(out);
  EXPECT_TRUE(n) << n.error().to_string();
  if (n) {
    EXPECT_EQ(*n, out.size());
  }
  return out;
}

void expect_event(const VeventqRecord& r, std::uint32_t seq, std::uint64_t tag) {
  EXPECT_EQ(r.kind, VeventqRecord::Kind::event);
  EXPECT_EQ(r.sequence, seq);
  EXPECT_EQ(r.evt[0], tag);
  EXPECT_EQ(r.evt[3], tag + 3);
}

void expect_lost(const VeventqRecord& r, std::uint32_t last_seq, std::optional<std::uint32_t> count) {
  EXPECT_EQ(r.kind, VeventqRecord::Kind::lost);
  EXPECT_EQ(r.sequence, last_seq);
  EXPECT_EQ(r.lost_count, count);
}

TEST(VeventqReader, InOrderEventsArriveWithTheirSequenceAndPayload) {
  Channel ch;
  Stream s;
  s.event(0, 0x100);
  s.event(1, 0x200);
  s.event(2, 0x300);
  ch.send(s);
  auto reader = fd_reader(ch.reader.get());
  auto out = read_all(reader);
  ASSERT_EQ(out.size(), 3U);
  expect_event(out[0], 0, 0x100);
  expect_event(out[1], 1, 0x200);
  expect_event(out[2], 2, 0x300);
  EXPECT_EQ(reader.expected_sequence(), 3U);
  EXPECT_EQ(reader.lost_total(), 0U);
}

TEST(VeventqReader, GapInSequenceIsReportedAsLostBeforeTheNextEvent) {
  Channel ch;
  Stream s;
  s.event(0, 0x10);
  s.event(1, 0x20);
  s.event(5, 0x30);  // 2, 3, 4 never arrived
  ch.send(s);
  auto reader = fd_reader(ch.reader.get());
  auto out = read_all(reader);
  ASSERT_EQ(out.size(), 4U);
  expect_event(out[0], 0, 0x10);
  expect_event(out[1], 1, 0x20);
  expect_lost(out[2], 4, 3U);
  expect_event(out[3], 5, 0x30);
  EXPECT_EQ(reader.lost_total(), 3U);
}

TEST(VeventqReader, LostEventsHeaderCountsEveryDroppedSequence) {
  // Depth 4: events 0..3 queued, 4..9 dropped (each took a sequence number), the header carries 9; then room
  // again and event 10 queued behind the header.
  Channel ch;
  Stream s;
  for (std::uint32_t i = 0; i < 4; ++i) s.event(i, 0x1000 * (i + 1));
  s.lost(9);
  s.event(10, 0xa000);
  ch.send(s);
  auto reader = fd_reader(ch.reader.get());
  auto out = read_all(reader);
  ASSERT_EQ(out.size(), 6U);
  expect_event(out[3], 3, 0x4000);
  expect_lost(out[4], 9, 6U);
  expect_event(out[5], 10, 0xa000);
  EXPECT_EQ(reader.lost_total(), 6U);
  EXPECT_EQ(reader.expected_sequence(), 11U);
}

TEST(VeventqReader, LostEventsHeaderAloneAtTheFrontCountsFromTheLastRead) {
  // The previous read ended at sequence 7; the queue then overflowed and the reader finds only the header.
  Channel ch;
  auto reader = fd_reader(ch.reader.get(), VeventqReader::kArmSmmuv3PayloadBytes, 8);
  Stream s;
  s.lost(8);  // exactly one event (8) dropped
  ch.send(s);
  auto out = read_all(reader);
  ASSERT_EQ(out.size(), 1U);
  expect_lost(out[0], 8, 1U);
}

TEST(VeventqReader, SequenceWrapsFromIntMaxToZeroWithoutALoss) {
  Channel ch;
  Stream s;
  s.event(INT_MAX - 1, 1);
  s.event(INT_MAX, 2);
  s.event(0, 3);
  s.event(1, 4);
  ch.send(s);
  auto reader = fd_reader(ch.reader.get(), VeventqReader::kArmSmmuv3PayloadBytes, INT_MAX - 1);
  auto out = read_all(reader);
  ASSERT_EQ(out.size(), 4U);
  expect_event(out[1], INT_MAX, 2);
  expect_event(out[2], 0, 3);
  EXPECT_EQ(reader.lost_total(), 0U);
  EXPECT_EQ(reader.expected_sequence(), 2U);
}

TEST(VeventqReader, GapAndLostHeaderAcrossTheWrapAreCountedModuloTheSequenceSpace) {
  Channel ch;
  Stream s;
  s.event(INT_MAX, 1);
  s.event(2, 2);  // 0 and 1 lost across the wrap
  s.lost(5);      // 3, 4, 5 dropped
  ch.send(s);
  auto reader = fd_reader(ch.reader.get(), VeventqReader::kArmSmmuv3PayloadBytes, INT_MAX);
  auto out = read_all(reader);
  ASSERT_EQ(out.size(), 4U);
  expect_lost(out[1], 1, 2U);
  expect_event(out[2], 2, 2);
  expect_lost(out[3], 5, 3U);
  EXPECT_EQ(reader.lost_total(), 5U);
}

TEST(VeventqReader, WithoutABaselineALostHeaderHasAnUnknownCount) {
  Channel ch;
  Stream s;
  s.lost(41);
  s.event(42, 7);  // follows the header: no further loss
  s.event(44, 8);  // 43 lost: known now that there is a baseline
  ch.send(s);
  auto reader = fd_reader(ch.reader.get(), VeventqReader::kArmSmmuv3PayloadBytes, std::nullopt);
  auto out = read_all(reader);
  ASSERT_EQ(out.size(), 4U);
  expect_lost(out[0], 41, std::nullopt);
  expect_event(out[1], 42, 7);
  expect_lost(out[2], 43, 1U);
  EXPECT_EQ(reader.lost_unknown_reports(), 1U);
  EXPECT_EQ(reader.lost_total(), 1U);
}

TEST(VeventqReader, WithoutABaselineTheFirstEventIsNotALoss) {
  Channel ch;
  Stream s;
  s.event(1000, 1);
  ch.send(s);
  auto reader = fd_reader(ch.reader.get(), VeventqReader::kArmSmmuv3PayloadBytes, std::nullopt);
  auto out = read_all(reader);
  ASSERT_EQ(out.size(), 1U);
  expect_event(out[0], 1000, 1);
  EXPECT_EQ(reader.expected_sequence(), 1001U);
}

TEST(VeventqReader, EmptyNonBlockingQueueIsEmptyNotAnError) {
  Channel ch;  // nothing sent: read() fails with EAGAIN
  auto reader = fd_reader(ch.reader.get());
  EXPECT_TRUE(read_all(reader).empty());
}

TEST(VeventqReader, ZeroByteReadIsEmpty) {
  // 7.2.12 returns 0 from read() on an empty vEVENTQ instead of blocking; a pipe whose writer is closed does too.
  int p[2];
  ASSERT_EQ(::pipe(p), 0);
  UniqueFd r(p[0]);
  ::close(p[1]);
  auto reader = fd_reader(r.get());
  EXPECT_TRUE(read_all(reader).empty());
}

TEST(VeventqReader, MoreRecordsThanTheBufferHoldsAreReadInRounds) {
  // A pipe has no record boundaries: each read() fills the 4-record buffer; a short read ends the round.
  int p[2];
  ASSERT_EQ(::pipe2(p, O_NONBLOCK | O_CLOEXEC), 0);
  UniqueFd r(p[0]), w(p[1]);
  Stream s;
  for (std::uint32_t i = 0; i < 10; ++i) s.event(i, i * 16);
  ASSERT_EQ(::write(w.get(), s.bytes().data(), s.bytes().size()), static_cast<ssize_t>(s.bytes().size()));
  auto reader = fd_reader(r.get(), VeventqReader::kArmSmmuv3PayloadBytes, 0, 4);
  auto out = read_all(reader);
  ASSERT_EQ(out.size(), 10U);
  for (std::uint32_t i = 0; i < 10; ++i) expect_event(out[i], i, i * 16);
  EXPECT_TRUE(read_all(reader).empty());
}

TEST(VeventqReader, ATruncatedRecordIsAnErrorNotAnEvent) {
  Channel ch;
  Stream s;
  s.event(0, 1);
  const std::array<std::uint32_t, 4> partial{0, 1, 0xdead, 0xbeef};  // header + 8 of 32 payload bytes
  s.raw(partial.data(), sizeof partial);
  ch.send(s);
  auto reader = fd_reader(ch.reader.get());
  std::vector<VeventqRecord> out;
  auto n = reader.read_available(out);
  ASSERT_FALSE(n);
  EXPECT_EQ(n.error().err, EIO);
  EXPECT_NE(n.error().message.find("whole records"), std::string::npos) << n.error().to_string();
}

TEST(VeventqReader, ReadErrorsCarryTheErrno) {
  auto reader = fd_reader(-1);
  std::vector<VeventqRecord> out;
  auto n = reader.read_available(out);
  ASSERT_FALSE(n);
  EXPECT_EQ(n.error().err, EBADF);
}

}  // namespace
}  // namespace vsmmu::host

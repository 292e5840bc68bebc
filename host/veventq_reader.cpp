#include "host/veventq_reader.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "base/try.hpp"
#include "host/host.hpp"
#include "base/log.hpp"

namespace vsmmu::host {

namespace {

constexpr std::uint32_t kFlagLostEvents = 1U << 0;  // IOMMU_VEVENTQ_FLAG_LOST_EVENTS

std::uint32_t load_u32(const std::byte* p) {
  std::uint32_t v = 0;
  std::memcpy(&v, p, sizeof v);
  return v;
}

}  // namespace

VeventqReader::VeventqReader(Host& host, int fd, std::size_t payload_bytes,
                             std::optional<std::uint32_t> first_sequence, std::size_t buffer_records)
    : VeventqReader([&host, fd](std::span<std::byte> buf) { return host.read_veventq(fd, buf); },
                    fmt::format("fd {}", fd), payload_bytes, first_sequence, buffer_records) {}

VeventqReader::VeventqReader(Source source, std::string label, std::size_t payload_bytes,
                             std::optional<std::uint32_t> first_sequence, std::size_t buffer_records)
    : source_(std::move(source)),
      label_(std::move(label)),
      payload_bytes_(payload_bytes),
      expected_(first_sequence),
      buffer_(std::max<std::size_t>(buffer_records, 1) * (kHeaderBytes + payload_bytes_)) {
  if (expected_) *expected_ &= kSequenceMask;
}

void VeventqReader::note_loss(std::vector<VeventqRecord>& out, std::uint32_t last_lost_sequence,
                              std::optional<std::uint32_t> count) {
  VeventqRecord r;
  r.kind = VeventqRecord::Kind::lost;
  r.sequence = last_lost_sequence;
  r.lost_count = count;
  if (count) {
    lost_total_ += *count;
    log::warn("veventq", "{}: lost {} event(s) up to sequence {}", label_, *count, last_lost_sequence);
  } else {
    ++lost_unknown_;
    log::warn("veventq", "{}: lost an unknown number of events up to sequence {}", label_, last_lost_sequence);
  }
  out.push_back(r);
}

Result<std::size_t> VeventqReader::parse(const std::byte* data, std::size_t size, std::vector<VeventqRecord>& out) {
  std::size_t appended = 0;
  std::size_t off = 0;
  while (off < size) {
    if (size - off < kHeaderBytes) {
      return fail(EIO, "veventq.read",
                  "{}: {} trailing byte(s) are not a whole record header (the kernel "
                  "only returns whole records)",
                  label_, size - off);
    }
    const std::uint32_t flags = load_u32(data + off);
    const std::uint32_t seq = load_u32(data + off + 4) & kSequenceMask;
    off += kHeaderBytes;
    if (flags & kFlagLostEvents) {
      // The header stands for the last dropped event: expected_..seq were all dropped.
      std::optional<std::uint32_t> count;
      if (expected_) {
        const std::uint32_t n = ((seq - *expected_) & kSequenceMask) + 1;
        // n beyond the sequence space means the header repeats the sequence of an event already read.
        if (n <= kSequenceMask) count = n;
      }
      note_loss(out, seq, count);
      expected_ = (seq + 1) & kSequenceMask;
      ++appended;
      continue;
    }
    if (size - off < payload_bytes_) {
      return fail(EIO, "veventq.read",
                  "{}: record with sequence {} has {} of its {} payload bytes (the kernel "
                  "only returns whole records)",
                  label_, seq, size - off, payload_bytes_);
    }
    if (expected_ && seq != *expected_) {
      const std::uint32_t gap = (seq - *expected_) & kSequenceMask;
      note_loss(out, (seq - 1) & kSequenceMask, gap);
      ++appended;
    }
    VeventqRecord r;
    r.kind = VeventqRecord::Kind::event;
    r.sequence = seq;
    std::memcpy(r.evt.data(), data + off, std::min(payload_bytes_, sizeof r.evt));
    out.push_back(r);
    ++appended;
    off += payload_bytes_;
    expected_ = (seq + 1) & kSequenceMask;
  }
  return appended;
}

Result<std::size_t> VeventqReader::read_available(std::vector<VeventqRecord>& out) {
  const std::size_t record_bytes = kHeaderBytes + payload_bytes_;
  std::size_t appended = 0;
  for (;;) {
    VSMMU_TRY_ASSIGN(auto n, source_(buffer_));
    if (n == 0) return appended;  // empty: the kernel returns 0 rather than blocking
    auto parsed = parse(buffer_.data(), n, out);
    if (!parsed) return parsed;
    appended += *parsed;
    // The kernel fills the buffer with as many whole records as fit; room for another record means the
    // queue was drained.
    if (buffer_.size() - n >= record_bytes) return appended;
  }
}

}  // namespace vsmmu::host

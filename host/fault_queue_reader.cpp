#include "host/fault_queue_reader.hpp"

#include <algorithm>
#include <cstring>

#include "base/try.hpp"
#include "host/host.hpp"

namespace vsmmu::host {

FaultQueueReader::FaultQueueReader(Host& host, int fd, std::size_t buffer_records)
    : FaultQueueReader([&host, fd](std::span<std::byte> buf) { return host.read_fault_queue(fd, buf); },
                       [&host, fd](std::span<const std::byte> buf) { return host.write_fault_queue(fd, buf); },
                       fmt::format("fault queue fd {}", fd), buffer_records) {}

FaultQueueReader::FaultQueueReader(Source source, Sink sink, std::string label, std::size_t buffer_records)
    : source_(std::move(source)),
      sink_(std::move(sink)),
      label_(std::move(label)),
      buffer_(std::max<std::size_t>(buffer_records, 1) * kRecordBytes) {}

Result<std::size_t> FaultQueueReader::parse(std::span<const std::byte> data, std::vector<FaultGroup>& out) const {
  if (data.size() % kRecordBytes != 0)
    return fail(EINVAL, "fault queue", "{}: a read of {} bytes is not a whole number of {}-byte records", label_,
                data.size(), kRecordBytes);
  std::size_t groups = 0;
  for (std::size_t off = 0; off < data.size(); off += kRecordBytes) {
    uapi::iommu_hwpt_pgfault f;
    std::memcpy(&f, data.data() + off, kRecordBytes);
    // The kernel delivers a group's faults together, each with the group's cookie (iommufd_fault_fops_read).
    if (off == 0 || out.back().cookie != f.cookie) {
      out.push_back(FaultGroup{f.cookie, {}});
      ++groups;
    }
    out.back().faults.push_back(f);
  }
  return groups;
}

Result<std::size_t> FaultQueueReader::read_available(std::vector<FaultGroup>& out) {
  std::size_t groups = 0;
  for (;;) {
    VSMMU_TRY_ASSIGN(const std::size_t n, source_(buffer_));
    if (n > buffer_.size())
      return fail(EIO, "fault queue", "{}: the read returned {} bytes into a {}-byte buffer", label_, n, buffer_.size());
    VSMMU_TRY_ASSIGN(const std::size_t g, parse(std::span(buffer_).first(n), out));
    groups += g;
    // Whole groups only: a read leaving room for another record took everything queued.
    if (n + kRecordBytes > buffer_.size() && n > 0) continue;
    return groups;
  }
}

Result<void> FaultQueueReader::respond(std::uint32_t cookie, std::uint32_t code) {
  const uapi::iommu_hwpt_page_response r{.cookie = cookie, .code = code};
  VSMMU_TRY_ASSIGN(const std::size_t n, sink_(std::as_bytes(std::span(&r, 1))));
  if (n != sizeof r)
    return fail(EIO, "fault queue", "{}: the response to cookie {} was taken {} of {} bytes", label_, cookie, n,
                sizeof r);
  return {};
}

}  // namespace vsmmu::host

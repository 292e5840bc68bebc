// Reads an iommufd fault queue fd (IOMMU_FAULT_QUEUE_ALLOC) as the kernel writes it and answers it: read(2)
// yields whole struct iommu_hwpt_pgfault records (host/fault_records.hpp), whole fault groups only, every fault
// of a group carrying the group's cookie; write(2) of one struct iommu_hwpt_page_response answers a group
// (drivers/iommu/iommufd/eventq.c iommufd_fault_fops_read / iommufd_fault_fops_write). The reader gathers the
// records into groups, so the caller answers each group once by its cookie.
// Shared by both backends: it goes through Host::read_fault_queue / Host::write_fault_queue, which give the
// kernel's answers on both; VeventqReader (host/veventq_reader.hpp) is its sibling for the vEVENTQ.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "base/error.hpp"
#include "host/fault_records.hpp"

namespace vsmmu::host {

class Host;

// One fault group: the faults the kernel delivered under one cookie, in the order it queued them.
struct FaultGroup {
  std::uint32_t cookie = 0;
  std::vector<uapi::iommu_hwpt_pgfault> faults;  // at least one
};

class FaultQueueReader {
 public:
  static constexpr std::size_t kRecordBytes = sizeof(uapi::iommu_hwpt_pgfault);

  // One read(2) / write(2) of the fd with the kernel's semantics.
  using Source = std::function<Result<std::size_t>(std::span<std::byte>)>;
  using Sink = std::function<Result<std::size_t>(std::span<const std::byte>)>;

  // Reads and answers the fault queue whose fd fault_queue_alloc returned (borrowed: a QueueObject owns it).
  FaultQueueReader(Host& host, int fd, std::size_t buffer_records = 64);
  // The same over any source and sink of the kernel's bytes; `label` names it in messages.
  FaultQueueReader(Source source, Sink sink, std::string label, std::size_t buffer_records = 64);

  // Reads what the queue holds now and appends its groups to out; returns how many groups were appended (0
  // when empty). Never blocks: a read that leaves room for another record drained the queue.
  Result<std::size_t> read_available(std::vector<FaultGroup>& out);
  // Groups one read's worth of whole records (appended to out); exposed for tests. EINVAL for a partial record.
  Result<std::size_t> parse(std::span<const std::byte> data, std::vector<FaultGroup>& out) const;

  // Answers the group with `cookie` (uapi::kPageResponseSuccess: the device retries; kPageResponseInvalid: it
  // aborts). The kernel takes each delivered cookie once; EINVAL for any other.
  Result<void> respond(std::uint32_t cookie, std::uint32_t code);

  const std::string& label() const { return label_; }

 private:
  Source source_;
  Sink sink_;
  std::string label_;
  std::vector<std::byte> buffer_;
};

}  // namespace vsmmu::host

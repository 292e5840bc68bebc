// The fault queue reader against the kernel's bytes carried by a real socket. The kernel rules it follows
// (drivers/iommu/iommufd/eventq.c iommufd_fault_fops_read / iommufd_fault_fops_write, include/uapi/linux/iommufd.h):
//  - read() returns whole struct iommu_hwpt_pgfault records (40 bytes), whole groups only, each fault of a
//    group carrying the group's cookie; an empty queue returns 0 bytes;
//  - write() takes struct iommu_hwpt_page_response records {cookie, code}, one per group answered.
// A non-blocking socket's EAGAIN stands for the kernel's 0 on an empty queue.
#include "host/fault_queue_reader.hpp"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "host/handles.hpp"

namespace vsmmu::host {
namespace {

using uapi::iommu_hwpt_page_response;
using uapi::iommu_hwpt_pgfault;

// One end is the kernel's (it writes faults and reads responses), the other the reader's.
struct Wire {
  UniqueFd kernel, vmm;
  Wire() {
    int fds[2];
    EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fds), 0);
    kernel = UniqueFd(fds[0]);
    vmm = UniqueFd(fds[1]);
  }
  void deliver(std::initializer_list<iommu_hwpt_pgfault> faults) {
    for (const auto& f : faults) ASSERT_EQ(::write(kernel.get(), &f, sizeof f), static_cast<ssize_t>(sizeof f));
  }
  std::vector<iommu_hwpt_page_response> responses() {
    std::vector<iommu_hwpt_page_response> out;
    iommu_hwpt_page_response r;
    while (::read(kernel.get(), &r, sizeof r) == static_cast<ssize_t>(sizeof r)) out.push_back(r);
    return out;
  }
  FaultQueueReader reader(std::size_t buffer_records = 64) {
    const int fd = vmm.get();
    return FaultQueueReader(
        [fd](std::span<std::byte> buf) -> Result<std::size_t> {
          const ssize_t n = ::read(fd, buf.data(), buf.size());
          if (n < 0 && errno == EAGAIN) return std::size_t{0};
          if (n < 0) return fail(errno, "read", "{}", std::strerror(errno));
          return static_cast<std::size_t>(n);
        },
        [fd](std::span<const std::byte> buf) -> Result<std::size_t> {
          const ssize_t n = ::write(fd, buf.data(), buf.size());
          if (n < 0) return fail(errno, "write", "{}", std::strerror(errno));
          return static_cast<std::size_t>(n);
        },
        "socket", buffer_records);
  }
};

iommu_hwpt_pgfault fault(std::uint32_t cookie, std::uint64_t addr, std::uint32_t dev_id = 3) {
  iommu_hwpt_pgfault f;
  f.flags = uapi::kPgfaultFlagsLastPage;
  f.dev_id = dev_id;
  f.perm = uapi::kPgfaultPermWrite;
  f.addr = addr;
  f.length = 4096;
  f.cookie = cookie;
  return f;
}

TEST(FaultQueueReader, AnEmptyQueueGivesNoGroup) {
  Wire w;
  auto r = w.reader();
  std::vector<FaultGroup> groups;
  auto n = r.read_available(groups);
  ASSERT_TRUE(n) << n.error();
  EXPECT_EQ(*n, 0U);
  EXPECT_TRUE(groups.empty());
}

// Every fault of a group carries its cookie; consecutive records with another cookie start the next group.
TEST(FaultQueueReader, FaultsAreGroupedByCookieInQueueOrder) {
  Wire w;
  auto pasid = fault(8, 0x3000);
  pasid.flags |= uapi::kPgfaultFlagsPasidValid;
  pasid.pasid = 5;
  w.deliver({fault(7, 0x1000), fault(7, 0x2000), pasid});
  auto r = w.reader();
  std::vector<FaultGroup> groups;
  auto n = r.read_available(groups);
  ASSERT_TRUE(n) << n.error();
  ASSERT_EQ(*n, 2U);
  EXPECT_EQ(groups[0].cookie, 7U);
  ASSERT_EQ(groups[0].faults.size(), 2U);
  EXPECT_EQ(groups[0].faults[1].addr, 0x2000U);
  EXPECT_EQ(groups[1].cookie, 8U);
  EXPECT_EQ(groups[1].faults[0].pasid, 5U);
  EXPECT_EQ(groups[1].faults[0].perm, uapi::kPgfaultPermWrite);
}

// A queue holding more than one buffer's worth is drained by reading again while reads fill the buffer.
TEST(FaultQueueReader, DrainsMoreThanOneBuffer) {
  Wire w;
  for (std::uint32_t c = 0; c < 10; ++c) w.deliver({fault(c, 0x1000 * c)});
  auto r = w.reader(/*buffer_records=*/3);
  std::vector<FaultGroup> groups;
  auto n = r.read_available(groups);
  ASSERT_TRUE(n) << n.error();
  EXPECT_EQ(*n, 10U);
  EXPECT_EQ(groups.back().cookie, 9U);
}

TEST(FaultQueueReader, APartialRecordIsRefused) {
  Wire w;
  auto r = w.reader();
  std::vector<FaultGroup> groups;
  const std::vector<std::byte> half(20);
  auto n = r.parse(half, groups);
  ASSERT_FALSE(n);
  EXPECT_EQ(n.error().err, EINVAL);
}

// The answer is one 8-byte struct iommu_hwpt_page_response with the group's cookie and the code.
TEST(FaultQueueReader, RespondWritesOnePageResponse) {
  Wire w;
  auto r = w.reader();
  ASSERT_TRUE(r.respond(7, uapi::kPageResponseSuccess));
  ASSERT_TRUE(r.respond(8, uapi::kPageResponseInvalid));
  const auto got = w.responses();
  ASSERT_EQ(got.size(), 2U);
  EXPECT_EQ(got[0].cookie, 7U);
  EXPECT_EQ(got[0].code, uapi::kPageResponseSuccess);
  EXPECT_EQ(got[1].cookie, 8U);
  EXPECT_EQ(got[1].code, uapi::kPageResponseInvalid);
}

}  // namespace
}  // namespace vsmmu::host

// Every wait is bounded: an SMMU that never acknowledges makes start() fail with ETIMEDOUT naming the register,
// what was expected and what it read (Linux: "failed to ..." after ARM_SMMU_POLL_TIMEOUT_US).
#include <gtest/gtest.h>

#include <chrono>

#include "smmu/driver/smmu_driver.hpp"

namespace vsmmu::smmu::driver::test {
namespace {

// Registers as plain storage: the ID registers of a small SMMU, CR0ACK following CR0 only when `ack_cr0`,
// IRQ_CTRLACK following IRQ_CTRL, and a command queue that never consumes.
class StuckSmmu final : public SmmuMmio {
 public:
  explicit StuckSmmu(bool ack_cr0) : ack_cr0_(ack_cr0) {
    regs_[regs::IDR0.offset] = Idr0{}.set(Idr0::S1P, true).set(Idr0::TTF, Ttf::aarch64).set(Idr0::TTENDIAN, TtEndian::little).value();
    regs_[regs::IDR1.offset] = Idr1{}.set(Idr1::SIDSIZE, 8).set(Idr1::CMDQS, 4).set(Idr1::EVENTQS, 4).value();
    regs_[regs::IDR5.offset] = Idr5{}.set(Idr5::GRAN4K, true).set(Idr5::OAS, Oas::bits48).value();
  }
  Result<std::uint64_t> mmio_read(std::uint64_t offset, unsigned) override { return regs_[offset]; }
  Result<void> mmio_write(std::uint64_t offset, std::uint64_t value, unsigned) override {
    regs_[offset] = value;
    if (offset == regs::CR0.offset && ack_cr0_) regs_[regs::CR0ACK.offset] = value;
    if (offset == regs::IRQ_CTRL.offset) regs_[regs::IRQ_CTRLACK.offset] = value;
    return {};
  }

 private:
  bool ack_cr0_;
  std::map<std::uint64_t, std::uint64_t> regs_;
};

class TimeoutTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(mem.add_ram(0x4000'0000, 1 << 20)); }
  Result<SmmuDriver> start(StuckSmmu& smmu) {
    return SmmuDriver::start(smmu, mem, pool, Options{.poll_timeout = std::chrono::milliseconds(20)});
  }
  RegionMemory mem;
  TablePageAllocator pool{mem, 0x4000'0000, 1 << 20};
};

TEST_F(TimeoutTest, Cr0AckThatNeverFollowsNamesCr0Ack) {
  StuckSmmu smmu(false);
  // The first write is CR0 = 0, which CR0ACK (reset 0) already shows; CMDQEN is the first to time out.
  auto d = start(smmu);
  ASSERT_FALSE(d);
  EXPECT_EQ(d.error().err, ETIMEDOUT);
  EXPECT_NE(d.error().message.find("CR0ACK did not become 0x8"), std::string::npos) << d.error();
  EXPECT_NE(d.error().message.find("reads 0x0"), std::string::npos) << d.error();
}

TEST_F(TimeoutTest, CommandQueueThatNeverConsumesNamesCmdqCons) {
  StuckSmmu smmu(true);
  auto d = start(smmu);
  ASSERT_FALSE(d);
  EXPECT_EQ(d.error().err, ETIMEDOUT);
  EXPECT_NE(d.error().message.find("CMDQ_CONS did not pass the CMD_SYNC"), std::string::npos) << d.error();
}

}  // namespace
}  // namespace vsmmu::smmu::driver::test

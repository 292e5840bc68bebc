// The driver tests' world: host RAM, a software SmmuModel and, between the driver and the model, a Spy that
// passes every access through while recording the register writes and the commands each CMDQ_PROD write
// publishes, and that can present other ID registers than the model's (for the probe's refusals).
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <vector>

#include "smmu/driver/smmu_driver.hpp"
#include "smmu/memory.hpp"
#include "smmu/mmio.hpp"
#include "smmu/model/smmu_model.hpp"
#include "smmu/registers.hpp"
#include "smmu/table_builder.hpp"

namespace vsmmu::smmu::driver::test {

constexpr std::uint64_t kPool = 0x4000'0000;
constexpr std::uint64_t kPoolSize = 16ULL << 20;
constexpr std::uint64_t kData = 0x8000'0000;  // DMA buffers
constexpr std::uint64_t kDataSize = 1ULL << 20;

class Spy final : public SmmuMmio {
 public:
  explicit Spy(SmmuMmio& inner, PhysicalMemory& mem) : inner_(inner), mem_(mem) {}

  Result<std::uint64_t> mmio_read(std::uint64_t offset, unsigned size) override {
    if (auto it = idr_overrides.find(offset); it != idr_overrides.end() && size == 4) return it->second;
    return inner_.mmio_read(offset, size);
  }
  Result<void> mmio_write(std::uint64_t offset, std::uint64_t value, unsigned size) override {
    writes.push_back({offset, value});
    if (offset == regs::CMDQ_BASE.offset) {
      cmdq_base = QueueBase::of(value);
      prod_ = 0;  // a reprogrammed queue starts over (the driver then writes PROD = CONS = 0)
    }
    if (offset == regs::CMDQ_PROD.offset) record_commands(static_cast<std::uint32_t>(value));
    return inner_.mmio_write(offset, value, size);
  }

  // Offsets written, in order.
  std::vector<std::uint64_t> written_offsets() const {
    std::vector<std::uint64_t> out;
    for (const auto& w : writes) out.push_back(w.first);
    return out;
  }
  std::vector<Opcode> opcodes() const {
    std::vector<Opcode> out;
    for (const auto& c : commands) out.push_back(c.get(Command::Opcode));
    return out;
  }

  std::map<std::uint64_t, std::uint32_t> idr_overrides;
  std::vector<std::pair<std::uint64_t, std::uint64_t>> writes;
  std::vector<Command> commands;  // as published by CMDQ_PROD writes

 private:
  void record_commands(std::uint32_t new_prod) {
    const QueueIndex q{static_cast<unsigned>(cmdq_base.get(QueueBase::LOG2SIZE))};
    const std::uint32_t to = QueueProd::of(new_prod).get(QueueProd::WR);
    for (std::uint32_t p = prod_; !q.empty(to, p); p = q.advance(p))
      if (auto c = mem_.read_record<Command>(cmdq_base.get(QueueBase::ADDR) + q.index(p) * Command::bytes)) commands.push_back(*c);
    prod_ = q.advance(to, 0);
  }

  SmmuMmio& inner_;
  PhysicalMemory& mem_;
  QueueBase cmdq_base;
  std::uint32_t prod_ = 0;
};

class DriverTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(mem.add_ram(kPool, kPoolSize));
    ASSERT_TRUE(mem.add_ram(kData, kDataSize));
  }
  // Creates the model and starts the driver on it through the Spy.
  void start(const model::ModelConfig& config = model::ModelConfig::reference(), const Options& options = {}) {
    ASSERT_NO_FATAL_FAILURE(create(config));
    auto d = try_start(options);
    ASSERT_TRUE(d) << d.error();
    driver.emplace(std::move(*d));
  }
  void create(const model::ModelConfig& config) {
    auto m = model::SmmuModel::create(mem, config);
    ASSERT_TRUE(m) << m.error();
    smmu = std::move(*m);
    spy = std::make_unique<Spy>(*smmu, mem);
  }
  Result<SmmuDriver> try_start(const Options& options = {}) { return SmmuDriver::start(*spy, mem, pool, options); }

 public:
  std::uint32_t reg(const RegisterInfo& r) { return smmu->read32(r.offset).value(); }

 protected:

  RegionMemory mem;
  TablePageAllocator pool{mem, kPool, kPoolSize};
  std::unique_ptr<model::SmmuModel> smmu;
  std::unique_ptr<Spy> spy;
  std::optional<SmmuDriver> driver;
};

// The reference SMMU without stage 2.
inline model::ModelConfig stage1_only() {
  auto c = model::ModelConfig::reference();
  c.idr0.set(Idr0::S2P, false);
  return c;
}

}  // namespace vsmmu::smmu::driver::test

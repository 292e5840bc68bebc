// The shared SMMUv3 register file (smmu/register_file.hpp) on its own: the behaviours both the software SMMU
// and the VirtualSmmu inherit from it.
#include "smmu/register_file.hpp"

#include <gtest/gtest.h>

namespace vsmmu::smmu {
namespace {

struct Effects final : RegisterEffects {
  unsigned published = 0;
  void commands_published() override { ++published; }
};

class RegisterFileTest : public ::testing::Test {
 protected:
  RegisterFileTest() { EXPECT_TRUE(mem.add_ram(0x1000'0000, 0x10000)); }
  std::uint64_t read(const RegisterInfo& r) { return *regs.access(r.offset, r.width / 8, nullptr); }
  void write(const RegisterInfo& r, std::uint64_t v) { ASSERT_TRUE(regs.access(r.offset, r.width / 8, &v)); }
  RegionMemory mem;
  Effects effects;
  IdRegisters ids{Idr0{}.set(Idr0::S1P, true), Idr1{}.set(Idr1::CMDQS, 8).set(Idr1::EVENTQS, 2), {}, {}, {}, {}, {}, {}};
  RegisterFile regs{mem, ids, effects, false};
};

// IHI 0070 6.3.9, 6.3.16, 6.3.30-34: without IDR0.PRI the PRI queue is absent: its registers and enables are RES0.
TEST_F(RegisterFileTest, WithoutPriThePriQueueRegistersAndEnablesAreRes0) {
  write(regs::PRIQ_BASE, 0x1000'0000 | 3);
  write(regs::PRIQ_PROD, 5);
  write(regs::CR0, Cr0{}.set(Cr0::PRIQEN, true).set(Cr0::CMDQEN, true).value());
  write(regs::IRQ_CTRL, IrqCtrl{}.set(IrqCtrl::PRIQ_IRQEN, true).set(IrqCtrl::EVENTQ_IRQEN, true).value());
  EXPECT_EQ(read(regs::PRIQ_BASE), 0U);
  EXPECT_EQ(read(regs::PRIQ_PROD), 0U);
  EXPECT_FALSE(Cr0::of(static_cast<std::uint32_t>(read(regs::CR0ACK))).get(Cr0::PRIQEN));
  EXPECT_TRUE(Cr0::of(static_cast<std::uint32_t>(read(regs::CR0ACK))).get(Cr0::CMDQEN));
  EXPECT_FALSE(IrqCtrl::of(static_cast<std::uint32_t>(read(regs::IRQ_CTRLACK))).get(IrqCtrl::PRIQ_IRQEN));
  EXPECT_TRUE(IrqCtrl::of(static_cast<std::uint32_t>(read(regs::IRQ_CTRLACK))).get(IrqCtrl::EVENTQ_IRQEN));
}

// IHI 0070 7.4: records lost before reaching the queue enter the overflow condition once (PROD.OVFLG toggles
// until software acknowledges through CONS.OVACKFLG); a full queue does the same.
TEST_F(RegisterFileTest, LostEventsToggleOverflowOnceUntilAcknowledged) {
  write(regs::EVENTQ_BASE, 0x1000'0000 | 2);
  write(regs::CR0, Cr0{}.set(Cr0::EVENTQEN, true).value());
  regs.events_lost(3);
  regs.events_lost(2);
  EXPECT_TRUE(QueueProd::of(static_cast<std::uint32_t>(read(regs::EVENTQ_PROD))).get(QueueProd::OVFLG));
  EXPECT_EQ(regs.counters().events_lost, 5U);
  write(regs::EVENTQ_CONS, QueueCons{}.set(QueueCons::OVACKFLG, true).value());
  for (int i = 0; i < 4; ++i) EXPECT_TRUE(regs.record_event(Event{}.set(Event::ID, EventId::F_TRANSLATION)));
  EXPECT_FALSE(regs.record_event(Event{}));  // four entries: full
  EXPECT_FALSE(QueueProd::of(static_cast<std::uint32_t>(read(regs::EVENTQ_PROD))).get(QueueProd::OVFLG))
      << "the second overflow toggles OVFLG back, differing from OVACKFLG again";
}

// IHI 0070 3.5, 6.3.27: software publishes commands by writing CMDQ_PROD; the owner is told each time.
TEST_F(RegisterFileTest, CommandsAreReadFromConsToProdAcrossTheWrap) {
  write(regs::CMDQ_BASE, 0x1000'0000 | 2);  // four entries
  write(regs::CR0, Cr0{}.set(Cr0::CMDQEN, true).value());
  for (std::uint32_t i = 0; i < 4; ++i)
    ASSERT_TRUE(mem.write_record(0x1000'0000 + i * 16, Command{}.set(Command::Opcode, Opcode::CMD_SYNC).set(Command::MSIData, i)));
  const unsigned before = effects.published;
  write(regs::CMDQ_PROD, 3);
  EXPECT_EQ(effects.published, before + 1);
  regs.cmdq_consume(3);
  write(regs::CMDQ_PROD, 0b110);  // index 2 after the wrap: entries 3, 0 and 1
  std::array<Command, 4> out{};
  ASSERT_EQ(regs.read_commands(out), 3U);
  EXPECT_EQ(out[0].get(Command::MSIData), 3U);
  EXPECT_EQ(out[1].get(Command::MSIData), 0U);
  EXPECT_EQ(out[2].get(Command::MSIData), 1U);
}

}  // namespace
}  // namespace vsmmu::smmu

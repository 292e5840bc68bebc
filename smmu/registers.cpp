// The register table for logging and MMIO decode (IHI 0070 6.2).
#include "smmu/registers.hpp"

#include <algorithm>
#include <array>

namespace vsmmu::smmu {
namespace {

constexpr std::array kRegisters{
    regs::IDR0,           regs::IDR1,           regs::IDR2,            regs::IDR3,
    regs::IDR4,           regs::IDR5,           regs::IIDR,            regs::AIDR,
    regs::CR0,            regs::CR0ACK,         regs::CR1,             regs::CR2,
    regs::STATUSR,        regs::GBPA,           regs::AGBPA,           regs::IRQ_CTRL,
    regs::IRQ_CTRLACK,    regs::GERROR,         regs::GERRORN,         regs::GERROR_IRQ_CFG0,
    regs::GERROR_IRQ_CFG1, regs::GERROR_IRQ_CFG2, regs::STRTAB_BASE,  regs::STRTAB_BASE_CFG,
    regs::CMDQ_BASE,      regs::CMDQ_PROD,      regs::CMDQ_CONS,       regs::EVENTQ_BASE,
    regs::EVENTQ_IRQ_CFG0, regs::EVENTQ_IRQ_CFG1, regs::EVENTQ_IRQ_CFG2, regs::PRIQ_BASE,
    regs::PRIQ_IRQ_CFG0,  regs::PRIQ_IRQ_CFG1,  regs::PRIQ_IRQ_CFG2,   regs::GATOS_CTRL,
    regs::GATOS_SID,      regs::GATOS_ADDR,     regs::GATOS_PAR,       regs::EVENTQ_PROD,
    regs::EVENTQ_CONS,    regs::PRIQ_PROD,      regs::PRIQ_CONS,
};

constexpr bool sorted_and_disjoint() {
  for (std::size_t i = 1; i < kRegisters.size(); ++i)
    if (kRegisters[i - 1].offset + kRegisters[i - 1].width / 8U > kRegisters[i].offset) return false;
  return true;
}
static_assert(sorted_and_disjoint(), "register table must be in offset order without overlaps");

}  // namespace

std::span<const RegisterInfo> all_registers() { return kRegisters; }

std::optional<RegisterInfo> register_info(std::uint32_t offset) {
  // The last register starting at or below `offset`, if the access falls inside it.
  auto it = std::ranges::upper_bound(kRegisters, offset, {}, &RegisterInfo::offset);
  if (it == kRegisters.begin()) return std::nullopt;
  --it;
  if (offset < it->offset + it->width / 8U) return *it;
  return std::nullopt;
}

}  // namespace vsmmu::smmu

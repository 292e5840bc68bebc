#include "smmu/driver/commands.hpp"

#include <bit>

namespace vsmmu::smmu::driver {
namespace {

Command op(Opcode o) { return Command{}.set(Command::Opcode, o); }

// TLBI_NH_VA, TLBI_NH_VAA and TLBI_S2_IPA name their address in different fields (IHI 0070 4.4.2, 4.4.4).
Command& set_address(Command& cmd, std::uint64_t address) {
  return cmd.get(Command::Opcode) == Opcode::TLBI_S2_IPA ? cmd.set(Command::IPA, address)
                                                          : cmd.set(Command::Address, address);
}

// The most 2^SCALE chunks one range command covers: NUM is 5 bits (IHI 0070 4.4.1.1).
constexpr std::uint64_t kRangeNumMax = 31;

}  // namespace

Command cmd_sync(SyncCs cs) { return op(Opcode::CMD_SYNC).set(Command::CS, cs); }

Command cmd_prefetch_config(std::uint32_t sid, std::uint32_t ssid, bool ssv) {
  return op(Opcode::PREFETCH_CONFIG).set(Command::SID, sid).set(Command::SSV, ssv).set(Command::SSID, ssv ? ssid : 0);
}

Command cmd_resume(std::uint32_t sid, std::uint16_t stag, ResumeAction action) {
  return op(Opcode::RESUME).set(Command::SID, sid).set(Command::Action, action).set(Command::STAG, stag);
}

Command cmd_stall_term(std::uint32_t sid) { return op(Opcode::STALL_TERM).set(Command::SID, sid); }

Command cmd_cfgi_ste(std::uint32_t sid, bool leaf) {
  return op(Opcode::CFGI_STE).set(Command::SID, sid).set(Command::Leaf, leaf);
}

Command cmd_cfgi_ste_range(std::uint32_t sid, unsigned range) {
  return op(Opcode::CFGI_STE_RANGE).set(Command::SID, sid).set(Command::Range, range);
}

Command cmd_cfgi_all() { return cmd_cfgi_ste_range(0, Command::kCfgiAllRange); }

Command cmd_cfgi_cd(std::uint32_t sid, std::uint32_t ssid, bool leaf) {
  return op(Opcode::CFGI_CD).set(Command::SID, sid).set(Command::SSID, ssid).set(Command::Leaf, leaf);
}

Command cmd_cfgi_cd_all(std::uint32_t sid) { return op(Opcode::CFGI_CD_ALL).set(Command::SID, sid); }

Command cmd_tlbi_nh_all(std::uint16_t vmid) { return op(Opcode::TLBI_NH_ALL).set(Command::VMID, vmid); }

Command cmd_tlbi_nh_asid(std::uint16_t vmid, std::uint16_t asid) {
  return op(Opcode::TLBI_NH_ASID).set(Command::VMID, vmid).set(Command::ASID, asid);
}

Command cmd_tlbi_nh_va(std::uint16_t vmid, std::uint16_t asid, std::uint64_t va, bool leaf) {
  return cmd_tlbi_nh_vaa(vmid, va, leaf).set(Command::Opcode, Opcode::TLBI_NH_VA).set(Command::ASID, asid);
}

Command cmd_tlbi_nh_vaa(std::uint16_t vmid, std::uint64_t va, bool leaf) {
  return op(Opcode::TLBI_NH_VAA).set(Command::VMID, vmid).set(Command::Address, va).set(Command::Leaf, leaf);
}

Command cmd_tlbi_el2_all() { return op(Opcode::TLBI_EL2_ALL); }

Command cmd_tlbi_s12_vmall(std::uint16_t vmid) { return op(Opcode::TLBI_S12_VMALL).set(Command::VMID, vmid); }

Command cmd_tlbi_s2_ipa(std::uint16_t vmid, std::uint64_t ipa, bool leaf) {
  return op(Opcode::TLBI_S2_IPA).set(Command::VMID, vmid).set(Command::IPA, ipa).set(Command::Leaf, leaf);
}

Command cmd_tlbi_nsnh_all() { return op(Opcode::TLBI_NSNH_ALL); }

Command cmd_atc_inv(std::uint32_t sid, std::uint64_t address, unsigned size, std::optional<std::uint32_t> ssid) {
  return op(Opcode::ATC_INV)
      .set(Command::SID, sid)
      .set(Command::SSV, ssid.has_value())
      .set(Command::SSID, ssid.value_or(0))
      .set(Command::Address, address)
      .set(Command::Size, size);
}

std::vector<Command> tlbi_range(const Command& by_address, std::uint64_t address, std::uint64_t size,
                                std::uint64_t leaf_size, Granule tg, bool ril) {
  std::vector<Command> out;
  if (size == 0) return out;
  Command cmd = by_address;
  if (!ril) {
    const std::uint64_t step = std::max<std::uint64_t>(leaf_size, granule_size(tg));
    for (std::uint64_t a = address; a < address + size; a += step) out.push_back(set_address(cmd, a));
    return out;
  }
  const unsigned page_shift = granule_shift(tg);
  std::uint64_t pages = size >> page_shift;
  cmd.set(Command::TG, tlbi_tg_from_granule(tg));
  if (cmd.get(Command::Leaf)) {
    // The level whose leaves are leaf_size bytes (3 for pages); Linux leaves TTL = 0 for non-leaf ranges.
    const unsigned leaf_shift = static_cast<unsigned>(std::bit_width(std::max(leaf_size, granule_size(tg))) - 1);
    cmd.set(Command::TTL, 4 - (leaf_shift - 3) / (page_shift - 3));
  } else if ((pages & kRangeNumMax) == 1) {
    // NUM = 0 with SCALE = 0 and TTL = 0 is a one-page range some SMMUs mishandle: Linux rounds up to two.
    ++pages;
  }
  std::uint64_t a = address;
  while (pages != 0) {
    const unsigned scale = static_cast<unsigned>(std::countr_zero(pages));
    const std::uint64_t num = (pages >> scale) & kRangeNumMax;
    cmd.set(Command::SCALE, scale).set(Command::NUM, num - 1);
    out.push_back(set_address(cmd, a));
    a += num << (scale + page_shift);
    pages -= num << scale;
  }
  return out;
}

}  // namespace vsmmu::smmu::driver

// Commands as a driver writes them (IHI 0070 4.2-4.7): the one place every driver-side user (the scripted
// guest driver, the simulated host's arm-smmu-v3, tests, the demo, benchmarks) builds them.
#pragma once

#include <cstdint>
#include <vector>

#include "smmu/command.hpp"
#include "smmu/translation_table.hpp"

namespace vsmmu::smmu::driver {

// ---- 4.7 synchronisation
Command cmd_sync(SyncCs cs = SyncCs::none);

// ---- 4.2 prefetch, 4.3 configuration invalidation
Command cmd_prefetch_config(std::uint32_t sid, std::uint32_t ssid = 0, bool ssv = false);
Command cmd_cfgi_ste(std::uint32_t sid, bool leaf = true);
// 2^(range+1) STEs from sid aligned down (IHI 0070 4.3.2).
Command cmd_cfgi_ste_range(std::uint32_t sid, unsigned range);
Command cmd_cfgi_all();
Command cmd_cfgi_cd(std::uint32_t sid, std::uint32_t ssid, bool leaf = true);
Command cmd_cfgi_cd_all(std::uint32_t sid);

// ---- 4.4 TLB invalidation. VMID is ignored by an SMMU without stage 2 (a guest writes 0; the host rewrites it).
Command cmd_tlbi_nh_all(std::uint16_t vmid = 0);
Command cmd_tlbi_nh_asid(std::uint16_t vmid, std::uint16_t asid);
Command cmd_tlbi_nh_va(std::uint16_t vmid, std::uint16_t asid, std::uint64_t va, bool leaf = true);
Command cmd_tlbi_nh_vaa(std::uint16_t vmid, std::uint64_t va, bool leaf = true);
Command cmd_tlbi_el2_all();
Command cmd_tlbi_s12_vmall(std::uint16_t vmid);
Command cmd_tlbi_s2_ipa(std::uint16_t vmid, std::uint64_t ipa, bool leaf = true);
Command cmd_tlbi_nsnh_all();

// ---- 4.7.2, 4.7.3 stall responses: a stalled transaction (StreamID, STAG) retried or ended; all of a stream's ended.
Command cmd_resume(std::uint32_t sid, std::uint16_t stag, ResumeAction action);
Command cmd_stall_term(std::uint32_t sid);

// ---- 4.5 ATC invalidation: 2^size pages of 4KB at address (size 52: everything), for ssid when given.
Command cmd_atc_inv(std::uint32_t sid, std::uint64_t address, unsigned size, std::optional<std::uint32_t> ssid = {});

// The invalidation of [address, address + size) by `by_address` (TLBI_NH_VA, TLBI_NH_VAA or TLBI_S2_IPA with
// its VMID, ASID and Leaf set), as Linux's __arm_smmu_tlb_inv_range writes it. Without range invalidation
// (IDR3.RIL == 0): one command per `leaf_size` bytes (the size of the leaves being removed). With RIL:
// commands of (NUM+1) * 2^SCALE pages of the table granule `tg` (IHI 0070 4.4.1.1), with TTL naming the
// level of `leaf_size` leaves when Leaf is set.
std::vector<Command> tlbi_range(const Command& by_address, std::uint64_t address, std::uint64_t size,
                                std::uint64_t leaf_size, Granule tg, bool ril);

}  // namespace vsmmu::smmu::driver

// The vSMMU's ID registers: what the guest's SMMUv3 driver sees, derived from the physical SMMU's
// (IOMMU_GET_HW_INFO) and the VMM's wishes. The vSMMU is stage-1 only (the host owns stage 2). Every field the
// guest may rely on must be something the physical SMMU really does through nesting, so a wish the host cannot
// honour is refused, one precise line per incompatibility, as QEMU's hw/arm/smmuv3-accel.c does. The fields the
// VMM may rely on are those include/uapi/linux/iommufd.h lists for struct iommu_hw_info_arm_smmuv3
// (docs/kernel-rules.md, "GET_HW_INFO").
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "host/host.hpp"
#include "smmu/register_file.hpp"
#include "smmu/registers.hpp"

namespace vsmmu::nesting {

// What the VMM asks for. Every optional field's nullopt is "auto", the default: the physical SMMU's value capped
// by what the vSMMU supports, the rule given per field (`vsmmu probe` shows what auto gives on each physical
// SMMU). A stated value the host cannot honour is refused, one line per field (derive_id_registers).
struct VsmmuWishes {
  // The guest's physical address size. auto: the OAS. A stated IPA makes auto OAS the smallest architectural
  // size covering it, refused when the physical SMMU's OAS is smaller (its stage 2 maps guest physical addresses).
  std::optional<unsigned> ipa_bits;
  std::optional<unsigned> oas_bits;          // IDR5.OAS. auto: the host's, capped at kMaxAutoOasBits
  std::optional<unsigned> sid_bits;          // IDR1.SIDSIZE. auto: 16, capped by the host
  // IDR1.SSIDSIZE (0: no PASIDs). auto: the host's, capped at 20 (IHI 0070 6.3.2) and at 10 without 2-level CD
  // tables (kMaxLinearSsidBits).
  std::optional<unsigned> ssid_bits;
  std::optional<bool> ril;                   // IDR3.RIL. auto: the host's
  // IDR0.ATS. auto: the host's, off when the device the registers derive from is flagged
  // IOMMU_HW_CAP_PCI_ATS_NOT_SUPPORTED (include/uapi/linux/iommufd.h); that flag refuses no stated wish (a
  // device's, not the SMMU's: id_registers.cpp says why).
  std::optional<bool> ats;
  std::optional<smmu::StLevel> st_level;     // IDR0.ST_LEVEL (auto and stated: the host's)
  std::optional<smmu::TtEndian> tt_endian;   // IDR0.TTENDIAN. auto: the host's (little on a mixed host)
  std::optional<bool> gran4k, gran16k, gran64k;  // IDR5.GRAN* (auto and stated: the host's)
  unsigned cmdq_log2 = 19;                   // IDR1.CMDQS (capped at the architectural 19)
  unsigned eventq_log2 = 19;                 // IDR1.EVENTQS
  // IDR0.MSI: the vSMMU's interrupts and CMD_SYNC completions as MSIs (VirtualSmmu::set_msi_handler), and a
  // Linux guest's MSIPOLL (one MMIO access per CMD_SYNC instead of CMDQ_CONS polling). auto: `msi_delivery`.
  // A guest given IDR0.MSI and an MSI parent in its firmware (IORT/DT) aims EVENTQ_IRQ_CFG0 / GERROR_IRQ_CFG0
  // at its interrupt controller's doorbell; only a VMM that delivers the MSI handler's (address, data) can
  // honour that, so auto gives MSI only to a VMM that says it does: its interrupts are never left dead. The
  // physical SMMU's IDR0.MSI plays no part: the vSMMU raises its MSIs itself (IHI 0070 3.18).
  std::optional<bool> msi;
  // The VMM delivers the vSMMU's MSIs outside guest RAM (set_msi_handler; through vsmmud, CREATE_VSMMU's
  // kCreateMsiDelivery with kFeatureMsi). Not a register: it decides MSI's auto.
  bool msi_delivery = false;
  // IDR0.STALL_MODEL: the guest may set CD.S and have a device's faulting transactions stall until it answers
  // with CMD_RESUME / CMD_STALL_TERM (I/O page faults for shared virtual addressing, docs/vsva.md). Needs a
  // physical SMMU that stalls (its STALL_MODEL not "terminate"); the guest is given the host's model (a host
  // that forces stalls gives "forced"). auto: kAutoStall.
  std::optional<bool> stall;
};

// OAS auto stops at 48 bits: a 52-bit IPA needs 52-bit descriptors in the guest's stage 1 and the host's stage 2
// (the 64KB granule, IHI 0070 3.4.3), which nothing here exercises; a VMM may still state 52 on a 52-bit SMMU.
inline constexpr unsigned kMaxAutoOasBits = 48;
// SSIDSIZE without IDR0.CD2L: the guest's CD table is linear, 64 bytes per SubstreamID; 2^10 of them is what
// Linux's arm-smmu-v3 puts in one table (CTXDESC_L2_ENTRIES), larger linear tables are refused.
inline constexpr unsigned kMaxLinearSsidBits = 10;
inline constexpr unsigned kMaxSsidBits = 20;  // IHI 0070 6.3.2: SSIDSIZE at most 20
// Stalls on auto: given where the physical SMMU stalls; VirtualSmmu::create takes them back when the host kernel
// has no fault queue to report them through (docs/vsva.md).
inline constexpr bool kAutoStall = true;

// What the guest reads from IDR0-5, IIDR and AIDR.
using GuestIdRegisters = smmu::IdRegisters;

// Fails with EOPNOTSUPP when the host's SMMU cannot nest at all, EINVAL listing every wish it cannot honour.
// `what` names the vSMMU and its physical SMMU in messages ("vsmmu0 on smmu3.0x09050000").
Result<GuestIdRegisters> derive_id_registers(const host::HwInfo& host, const VsmmuWishes& wishes, const std::string& what);

// The same registers, or the first one that differs: "IDR1 would be 0x... here but the guest sees 0x..."
// (`a` what the guest sees, `b` what another physical SMMU would give).
std::optional<std::string> first_difference(const GuestIdRegisters& a, const GuestIdRegisters& b);
// The wishes that reproduce `g` exactly on another physical SMMU (every "auto" resolved).
VsmmuWishes pinned(const VsmmuWishes& w, const GuestIdRegisters& g);

}  // namespace vsmmu::nesting

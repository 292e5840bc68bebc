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

// What the VMM asks for; nullopt means "auto": take what the host offers.
struct VsmmuWishes {
  unsigned ipa_bits = 48;                    // guest physical address size; auto OAS is the smallest that covers it
  std::optional<unsigned> oas_bits;          // IDR5.OAS
  std::optional<unsigned> sid_bits;          // IDR1.SIDSIZE (auto: 16, capped by the host)
  std::optional<unsigned> ssid_bits;         // IDR1.SSIDSIZE (0: no PASIDs)
  std::optional<bool> ril;                   // IDR3.RIL
  std::optional<bool> ats;                   // IDR0.ATS
  std::optional<smmu::StLevel> st_level;     // IDR0.ST_LEVEL
  std::optional<smmu::TtEndian> tt_endian;   // IDR0.TTENDIAN
  std::optional<bool> gran4k, gran16k, gran64k;  // IDR5.GRAN*
  unsigned cmdq_log2 = 19;                   // IDR1.CMDQS (capped at the architectural 19)
  unsigned eventq_log2 = 19;                 // IDR1.EVENTQS
  // IDR0.MSI: the vSMMU's interrupts and CMD_SYNC completions as MSIs (VirtualSmmu::set_msi_handler), and a
  // Linux guest's MSIPOLL (one MMIO access per CMD_SYNC instead of CMDQ_CONS polling). Off unless asked: the
  // guest then programs EVENTQ_IRQ_CFG0 / GERROR_IRQ_CFG0 with its interrupt controller's doorbell, which only
  // a VMM that delivers the MSI handler's (address, data) can honour, and a guest firmware (IORT/DT) giving
  // the SMMU an MSI parent; a VMM that does neither would leave the guest's interrupts dead. Deciding "auto"
  // from the VMM's abilities is another issue's.
  std::optional<bool> msi;
  // IDR0.STALL_MODEL: the guest may set CD.S and have a device's faulting transactions stall until it answers
  // with CMD_RESUME / CMD_STALL_TERM (I/O page faults for shared virtual addressing, docs/vsva.md). Needs a
  // physical SMMU that stalls (its STALL_MODEL not "terminate"); the guest is given the host's model (a host
  // that forces stalls gives "forced"). Off while auto (the forwarding of stalls is being built).
  std::optional<bool> stall;
};

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

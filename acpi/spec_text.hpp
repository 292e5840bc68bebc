// The textual specs the CLI takes for vSMMUs and RID maps ("base=0x9050000,event=106,gerr=108"), turned
// into builder inputs. Numbers are decimal or 0x-prefixed hex; unknown keys are refused by name.
#pragma once

#include <cstdint>
#include <string_view>

#include "acpi/devicetree.hpp"
#include "acpi/iort_build.hpp"
#include "base/error.hpp"

namespace vsmmu::acpi::text {

Result<std::uint64_t> number(std::string_view text, std::string_view what);

// base=ADDR,event=GSIV,pri=GSIV,gerr=GSIV,sync=GSIV[,noncoherent][,msi-devid=ID]
Result<iort::GuestSmmu> guest_smmu(std::string_view spec);

// rid=RID,count=N[,vsid=VSID (default: rid)][,smmu=INDEX (0)][,segment=SEG (0)]
struct GuestMap {
  iort::GuestRidMap map;
  std::uint32_t segment = 0;
};
Result<GuestMap> guest_map(std::string_view spec);

// base=ADDR[,size=BYTES][,eventq=GSIV][,priq=GSIV][,cmdq-sync=GSIV][,gerror=GSIV][,combined=GSIV][,noncoherent]
// (the vSMMU part of a VsmmuSpec: base, size, irqs in binding order, dma_coherent)
Result<dt::VsmmuSpec> dt_smmu(std::string_view spec);

// rid=RID,count=N[,vsid=VSID (default: rid)]
Result<dt::IommuMap> dt_map(std::string_view spec);

}  // namespace vsmmu::acpi::text

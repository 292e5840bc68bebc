// The VMM's wishes for the guest's ID registers as command-line flags (nesting::VsmmuWishes): each takes
// `auto` (the default: the host's value capped by what the vSMMU supports) or a value.
#pragma once

#include <cstddef>
#include <span>
#include <string_view>

#include "base/error.hpp"
#include "nesting/id_registers.hpp"

namespace vsmmu::tools {

inline constexpr std::string_view kWishFlagsUsage =
    "  --ipa-bits auto|N   the guest's physical address size (auto: the OAS)\n"
    "  --oas-bits auto|N   IDR5.OAS (auto: the physical SMMU's, at most 48)\n"
    "  --ssid-bits auto|N  IDR1.SSIDSIZE, 0 for no PASIDs (auto: the physical SMMU's, at most 20, 10 without CD2L)\n"
    "  --ril auto|on|off   IDR3.RIL (auto: the physical SMMU's)\n"
    "  --ats auto|on|off   IDR0.ATS (auto: the physical SMMU's, off for a first device that cannot use ATS)\n"
    "  --msi auto|on|off   IDR0.MSI (auto: off, since the demo delivers no MSIs to an interrupt controller)\n"
    "  --stall auto|on|off IDR0.STALL_MODEL (auto: off; on needs a physical SMMU that stalls)\n";

// If args[i] is one of the flags above, reads its value (args[i + 1]) into `w`, advances `i` past it and
// returns true; false for any other argument; EINVAL naming the flag and what it takes for a bad or missing value.
Result<bool> parse_wish_flag(std::span<const std::string_view> args, std::size_t& i, nesting::VsmmuWishes& w);

}  // namespace vsmmu::tools

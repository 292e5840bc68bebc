// Patching a host IORT so Linux allows nesting without S2FWB: set CANWBS on root complexes, raise the
// OEM revision (Linux's initrd table upgrade replaces a firmware table only by a newer one), and fix
// the checksum. The result goes into a table-upgrade cpio (cpio.hpp) in front of the initrd.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "acpi/iort.hpp"
#include "base/error.hpp"

namespace vsmmu::acpi::iort {

struct FlagChange {
  std::size_t index = 0;     // root complex number in table order
  std::uint32_t offset = 0;  // its node offset
  std::uint8_t before = 0, after = 0;
};

struct Patched {
  std::vector<std::uint8_t> table;
  std::vector<FlagChange> changes;
  std::uint32_t oem_revision_before = 0, oem_revision_after = 0;
};

// Sets CANWBS on root complex `rc_index` (table order), or on every root complex. Refuses tables the
// validator finds errors in (EINVAL, with the first error), a missing root complex (ERANGE / ENOENT)
// and an OEM revision that cannot be raised (EOVERFLOW).
Result<Patched> set_canwbs(std::span<const std::uint8_t> table, std::optional<std::size_t> rc_index);

}  // namespace vsmmu::acpi::iort

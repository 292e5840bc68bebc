// Patching a host IORT so Linux allows nesting without S2FWB: set CANWBS on root complexes, raise the
// OEM revision (Linux's initrd table upgrade replaces a firmware table only by a newer one), and fix
// the checksum. The result goes into a table-upgrade cpio (cpio.hpp) in front of the initrd.
//
// CANWBS is a claim about the hardware (DEN 0049 E.f memory access flags: the root complex's accesses are coerced to
// Normal Write-Back). It is set only where it can be true and can matter: not on a root complex that
// cannot nest whatever its flags (nesting_report's verdict is refused), nor on one whose CCA says it has
// no coherent path to memory - unless the caller forces it.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "acpi/iort.hpp"
#include "base/error.hpp"

namespace vsmmu::acpi::iort {

// A root complex, named as `vsmmu iort check` names it.
struct RootComplexRef {
  std::size_t index = 0;     // root complex number in table order (`--rc INDEX`)
  std::uint32_t offset = 0;  // its node offset
  std::uint32_t segment = 0;
};

// A root complex CANWBS cannot help and why: its nesting verdict is refused (the verdict's reason), or
// its CCA denies a coherent path.
struct Unsuitable {
  RootComplexRef rc;
  std::string reason;  // a clause: "nesting is refused there whatever its flags: ..."
};

struct FlagChange {
  RootComplexRef rc;
  std::uint8_t before = 0, after = 0;
  std::optional<std::string> forced;  // set although unsuitable (IfUnsafe::force): why it was unsafe
};

// The firmware shipped a checksum that does not match its bytes (several ship 0 and leave it to be filled
// in at boot). The patched table's checksum is recomputed anyway; this says the old one was wrong.
struct ChecksumFix {
  std::uint8_t shipped = 0;  // the byte in the firmware's table
  std::uint8_t due = 0;      // what that table's bytes called for
  std::uint8_t written = 0;  // the patched table's checksum
};

struct Patched {
  std::vector<std::uint8_t> table;
  std::vector<FlagChange> changes;
  std::vector<Unsuitable> skipped;  // left unchanged (no rc_index, no force)
  std::uint32_t oem_revision_before = 0, oem_revision_after = 0;
  std::optional<ChecksumFix> checksum_fixed;
  std::uint8_t table_revision = 0;  // < MemoryAccess::kCanwbsTableRevision: bit 2 is reserved there
  // One sentence per fact above an operator should read: the checksum fixed, a table revision that predates
  // CANWBS, each skipped root complex, each forced one.
  std::vector<std::string> notes;
};

enum class IfUnsafe { refuse, force };

// Sets CANWBS on root complex `rc_index` (table order), or on every suitable one (the others are listed in
// `skipped`). With IfUnsafe::force, unsuitable root complexes are set too and their changes say why that
// was unsafe.
// Fails with where "iort.parse" when the bytes are not an IORT. Every refusal has where "iort.patch": a
// table with errors other than its checksum (EINVAL, with the first one), no root complex (ENOENT), no
// root complex `rc_index` (ERANGE), `rc_index` unsuitable or no suitable one without an index (EOPNOTSUPP,
// naming each with its reason), an OEM revision that cannot be raised (EOVERFLOW).
Result<Patched> set_canwbs(std::span<const std::uint8_t> table, std::optional<std::size_t> rc_index,
                           IfUnsafe if_unsafe = IfUnsafe::refuse);

}  // namespace vsmmu::acpi::iort

// Shared tables and helpers for the acpi/ tests: QEMU virt's IORT layout built with our Builder, a
// guest spec, a table holding every node type, byte pokes, external tools and golden files.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <string>
#include <vector>

#include "acpi/iort_build.hpp"

namespace vsmmu::acpi::test {

using Bytes = std::vector<std::uint8_t>;

// QEMU virt with iommu=smmuv3 (hw/arm/virt-acpi-build.c, build_iort): IORT revision 5, OEM "BOCHS "
// "BXPC    "; an ITS group; one SMMUv3 (revision 4, base 0x9050000, COHACC, GSIVs 106-109) mapping
// all 0x10000 IDs to the ITS; a root complex (revision 3, CCA 1, memory flags 0x03, no CANWBS) mapping
// RIDs 0-0xffff to the SMMU.
Bytes qemu_virt_iort();
iort::SmmuV3 qemu_virt_smmu();  // its SMMUv3 node's fields
inline constexpr std::uint32_t kQemuIts = 0x30, kQemuSmmu = 0x48, kQemuRc = 0xa0, kQemuSize = 0xd8;

// Two vSMMUs: RIDs 0-0xff behind vSMMU 0 at vSIDs 0x0, RIDs 0x200-0x27f behind vSMMU 1 at vSIDs 0x1000;
// vSMMU 1 has no PRI line (so it has an MSI DeviceID mapping).
iort::GuestIort guest_two_smmus();

// A valid table with every node type 0-6 (ITS group, SMMUv1/v2, SMMUv3, named component, root
// complex, PMCG, RMR), each at the newest revision.
Bytes all_node_types();

// Tables for `iort patch`'s rules (CANWBS only where nesting_report does not refuse and CCA is 1): an
// ITS group, an SMMUv1/v2, a COHACC SMMUv3 and one without COHACC (their stream IDs go to the ITS), then
// root complexes 0, 1, ... on segments 0, 1, ... whose RIDs 0-0xffff go where `rcs` says.
enum class Behind { its, smmu_v2, smmu_v3, smmu_v3_without_cohacc };
struct RcSpec {
  Behind behind = Behind::smmu_v3;
  std::uint32_t cca = 1;  // memory flags: CPM when CCA is 1, none otherwise
};
struct Platform {
  Bytes table;
  std::vector<std::uint32_t> rcs;  // the root complexes' node offsets
};
Platform platform(std::initializer_list<RcSpec> rcs,
                  std::uint8_t table_revision = iort::MemoryAccess::kCanwbsTableRevision);

// QEMU virt's table whose root complex maps to no node (one output_reference error), checksum right.
Bytes dangling_reference();

void put(Bytes& b, std::size_t offset, std::uint64_t value, unsigned width);
void fix_checksum(Bytes& b);

struct Run {
  int status = -1;  // exit status, or -1 if the command could not run
  std::string out;  // stdout and stderr
};
Run run(const std::string& command);
std::string temp_dir();
// Whether an external tool configured at build time exists; records a test failure naming the Debian
// package otherwise (these tests never skip).
bool tool_present(const std::string& path, const char* name, const char* package);

// Compares `bytes` with tests/data/<name>; with VSMMU_UPDATE_GOLDEN=1 in the environment, rewrites it.
void expect_golden(const std::string& name, const Bytes& bytes);
Bytes read_golden(const std::string& name);

}  // namespace vsmmu::acpi::test

// What `vsmmu iort check` and `vsmmu dt check` conclude about a whole host's firmware description, as a script
// reads it: one status, with a stable exit code and a stable JSON name. One definition for both commands, their
// --help and docs/firmware-tables.md.
//
// The rule behind "possible" and "needs S2FWB" is the kernel's (arm-smmu-v3-iommufd.c, arm_vsmmu_init):
// IOMMU_VIOMMU_ALLOC needs the device's PCI root complex to carry CANWBS in the IORT or the SMMU to have
// IDR3.FWB (S2FWB); firmware tables show only the first.
#pragma once

#include <string>
#include <string_view>

namespace vsmmu::acpi {

enum class HostNesting {
  possible,     // valid, and some device is allowed nesting by the firmware alone (a root complex with CANWBS)
  needs_s2fwb,  // valid, devices sit behind a coherent SMMUv3, but nesting needs the SMMU's S2FWB (ask the host)
  impossible,   // valid, but no device can be nested whatever the SMMU has
  malformed,    // the input is not a sound table / tree (any error, a header length larger than the file ...)
};

// The exit statuses: 0 possible, 1 needs S2FWB, 3 impossible, 4 malformed. 2 stays what it is for every vsmmu
// command: it could not run (bad usage, unreadable file), see tools/subcommands.hpp.
int exit_code(HostNesting status);
// "possible", "needs_s2fwb", "impossible", "malformed": the JSON "status" names.
std::string_view to_string(HostNesting status);
// The "exit status:" block of the checks' --help, one line per status plus the line for 2.
std::string exit_status_help();

}  // namespace vsmmu::acpi

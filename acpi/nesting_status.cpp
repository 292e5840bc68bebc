#include "acpi/nesting_status.hpp"

#include <fmt/format.h>

namespace vsmmu::acpi {

int exit_code(HostNesting status) {
  switch (status) {
    case HostNesting::possible: return 0;
    case HostNesting::needs_s2fwb: return 1;
    case HostNesting::impossible: return 3;
    case HostNesting::malformed: return 4;
  }
  return 4;
}

std::string_view to_string(HostNesting status) {
  switch (status) {
    case HostNesting::possible: return "possible";
    case HostNesting::needs_s2fwb: return "needs_s2fwb";
    case HostNesting::impossible: return "impossible";
    case HostNesting::malformed: return "malformed";
  }
  return "malformed";
}

std::string exit_status_help() {
  return fmt::format(
      "exit status (the same as \"status\" in --json):\n"
      "  {}  possible     nesting is allowed by the firmware itself (a root complex with CANWBS)\n"
      "  {}  needs_s2fwb  possible only if the SMMU has S2FWB (IDR3.FWB), which firmware cannot show:\n"
      "                  ask the host with `vsmmu probe`\n"
      "  2  -            the command could not run (bad usage, unreadable file)\n"
      "  {}  impossible   no device can be nested (no coherent SMMUv3 translates any of them)\n"
      "  {}  malformed    the input is not a sound table or tree (any error listed as such)\n",
      exit_code(HostNesting::possible), exit_code(HostNesting::needs_s2fwb), exit_code(HostNesting::impossible),
      exit_code(HostNesting::malformed));
}

}  // namespace vsmmu::acpi

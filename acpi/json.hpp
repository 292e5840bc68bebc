// Machine-readable reports (`vsmmu iort check --json`, `vsmmu dt check --json`). Field names follow the
// C++ model; numbers are JSON integers; enums are their stable snake_case names.
#pragma once

#include <string>
#include <string_view>

#include "acpi/devicetree.hpp"
#include "acpi/iort.hpp"
#include "acpi/iort_nesting.hpp"

namespace vsmmu::acpi {

std::string_view key(iort::Nesting n);  // "allowed_canwbs", "needs_s2fwb", "refused"

std::string iort_json(std::string_view source, const iort::Report& report, const iort::NestingReport& nesting);
std::string dt_json(std::string_view source, const dt::Report& report);

}  // namespace vsmmu::acpi

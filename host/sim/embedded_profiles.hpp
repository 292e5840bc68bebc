// The profile files under host/sim/profiles/, compiled into the library (generated at configure
// time from the files, so the shipped examples and the embedded defaults are one source).
#pragma once

#include <span>
#include <string_view>

namespace vsmmu::host::sim::detail {

struct EmbeddedProfile {
  std::string_view kind;  // "kernel" or "hardware": the folder under profiles/
  std::string_view name;  // the file name without ".json"
  std::string_view text;
};

std::span<const EmbeddedProfile> embedded_profiles();

}  // namespace vsmmu::host::sim::detail

// The commands of the vsmmu CLI (`vsmmu probe`, `vsmmu iort`, ...): CliCommand, not to be confused with
// smmu::Command, an entry of an SMMU command queue. Each lives in its own file (tools/<name>_command.cpp) and
// is listed once in kCliCommands (tools/main.cpp); the `check` of `vsmmu iort check` is a Subcommand
// (tools/subcommands.hpp).
#pragma once

#include <span>
#include <string_view>

namespace vsmmu::tools {

// What runs a CliCommand or a Subcommand. args excludes the program name and the (sub)command's own name.
// Returns the process exit code.
using CliFn = int (*)(std::span<const std::string_view> args);

struct CliCommand {
  std::string_view name;
  std::string_view summary;
  CliFn run;
};

int demo_command(std::span<const std::string_view> args);
int iort_command(std::span<const std::string_view> args);
int dt_command(std::span<const std::string_view> args);
int probe_command(std::span<const std::string_view> args);

}  // namespace vsmmu::tools

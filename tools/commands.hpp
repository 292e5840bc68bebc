// The vsmmu command's subcommands. Each lives in its own file (tools/<name>_command.cpp) and is listed
// once in kCommands (tools/main.cpp).
#pragma once

#include <span>
#include <string_view>

namespace vsmmu::tools {

// args excludes the program name and the subcommand itself. Returns the process exit code.
using CommandFn = int (*)(std::span<const std::string_view> args);

struct Command {
  std::string_view name;
  std::string_view summary;
  CommandFn run;
};

int demo_command(std::span<const std::string_view> args);
int iort_command(std::span<const std::string_view> args);
int dt_command(std::span<const std::string_view> args);
int probe_command(std::span<const std::string_view> args);

}  // namespace vsmmu::tools

// What the vsmmu commands with subcommands (iort, dt) share: exit codes, --help, and the dispatch of
// "vsmmu <command> <subcommand> ...", so every command answers usage errors the same way.
#pragma once

#include <cstdio>
#include <initializer_list>
#include <span>
#include <string_view>

#include "tools/commands.hpp"

namespace vsmmu::tools {

// Exit codes: 0 valid/done, 1 problems found, 2 cannot run (bad usage, unreadable input).
inline constexpr int kOk = 0;
inline constexpr int kProblems = 1;
inline constexpr int kUnusable = 2;

inline bool is_help(std::string_view a) { return a == "--help" || a == "-h"; }

struct Subcommand {
  std::string_view name;
  CliFn run;
};

// Runs the subcommand args[0] names with the rest of args; prints usage for none, --help or an unknown name.
int dispatch_subcommand(std::string_view command, std::span<const std::string_view> args, void (*usage)(std::FILE*),
                        std::initializer_list<Subcommand> subcommands);

}  // namespace vsmmu::tools

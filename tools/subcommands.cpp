#include "tools/subcommands.hpp"

#include <fmt/format.h>

namespace vsmmu::tools {

int dispatch_subcommand(std::string_view command, std::span<const std::string_view> args, void (*usage)(std::FILE*),
                        std::initializer_list<Subcommand> subcommands) {
  if (args.empty()) {
    usage(stderr);
    return kUnusable;
  }
  if (is_help(args[0])) {
    usage(stdout);
    return kOk;
  }
  for (const auto& s : subcommands)
    if (s.name == args[0]) return s.run(args.subspan(1));
  fmt::print(stderr, "vsmmu {}: unknown subcommand '{}'\n\n", command, args[0]);
  usage(stderr);
  return kUnusable;
}

}  // namespace vsmmu::tools

// vsmmu: the operator's and platform engineer's command.
#include <array>
#include <string_view>
#include <vector>

#include <fmt/format.h>

#include "tools/commands.hpp"

namespace vsmmu::tools {
namespace {

constexpr std::array kCliCommands = {
    CliCommand{"probe", "can this host give a VM a nested SMMUv3, for which devices, and if not, exactly why",
               probe_command},
    CliCommand{"demo", "a VM with a nested vSMMU on the simulated host: probe, mappings, DMA, invalidation, a fault", demo_command},
    CliCommand{"iort", "check a host IORT for nesting (CANWBS); generate a guest IORT; patch in CANWBS", iort_command},
    CliCommand{"dt", "add a vSMMU to a guest device tree; check a host device tree's SMMUv3 nodes", dt_command},
};

void usage(std::FILE* out) {
  fmt::print(out, "usage: vsmmu <command> [options]\n\ncommands:\n");
  for (const auto& c : kCliCommands) fmt::print(out, "  {:<10} {}\n", c.name, c.summary);
  fmt::print(out, "\n'vsmmu <command> --help' describes one command.\n");
}

}  // namespace
}  // namespace vsmmu::tools

int main(int argc, char** argv) {
  using namespace vsmmu::tools;
  std::vector<std::string_view> args(argv + 1, argv + argc);
  if (args.empty() || args[0] == "--help" || args[0] == "-h" || args[0] == "help") {
    usage(args.empty() ? stderr : stdout);
    return args.empty() ? 2 : 0;
  }
  for (const auto& c : kCliCommands)
    if (c.name == args[0]) return c.run(std::span(args).subspan(1));
  fmt::print(stderr, "vsmmu: unknown command '{}'\n\n", args[0]);
  usage(stderr);
  return 2;
}

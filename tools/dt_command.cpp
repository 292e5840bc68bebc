// vsmmu dt: add a vSMMU to a guest's device tree; check a host's device tree: its IOMMUs, the devices behind
// them, and whether nesting is possible (acpi/nesting_status.hpp).
#include <algorithm>
#include <cstdio>
#include <optional>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "acpi/devicetree.hpp"
#include "acpi/files.hpp"
#include "acpi/json.hpp"
#include "acpi/nesting_status.hpp"
#include "acpi/spec_text.hpp"
#include "base/text.hpp"
#include "tools/commands.hpp"
#include "tools/host_choice.hpp"
#include "tools/subcommands.hpp"

namespace vsmmu::tools {
namespace {

using namespace vsmmu::acpi;


void usage(std::FILE* out) {
  fmt::print(out,
             "usage: vsmmu dt <gen|check> [options]\n\n"
             "  gen     add a vSMMU node and the PCIe host's iommu-map to a guest device tree\n"
             "  check   report a device tree's IOMMUs, the devices behind them and whether they can nest\n\n"
             "'vsmmu dt <subcommand> --help' describes one.\n");
}

constexpr const char* kGenHelp =
    "usage: vsmmu dt gen --smmu SPEC [--map SPEC ...] [--in BASE.dtb] [--pcie PATH] -o OUT.dtb\n\n"
    "Adds an \"arm,smmu-v3\" node (reg, interrupts and interrupt-names for the lines given, #iommu-cells = <1>,\n"
    "dma-coherent, a fresh phandle) under the root, sets the PCIe host's iommu-map\n"
    "<rid-base &smmu vsid-base length> for each --map, and reserves the host's MSI window. Without --in, writes a minimal tree holding the\n"
    "vSMMU and a placeholder host node.\n\n"
    "  --smmu base=ADDR[,size=BYTES][,eventq=GSIV][,priq=GSIV][,cmdq-sync=GSIV][,gerror=GSIV][,combined=GSIV]\n"
    "         [,noncoherent]     the vSMMU; GSIVs as in the IORT (SPI number + 32); size defaults to 0x20000\n"
    "  --map rid=RID,count=N[,vsid=VSID]\n"
    "                            an iommu-map entry (default: rid=0,count=0x10000, vSID = RID)\n"
    "  --in BASE.dtb             the VMM's tree to extend (its root needs a GIC interrupt-parent)\n"
    "  --pcie PATH               the PCIe host node (default: the first pci-host-ecam-generic; \"/pcie\" in a new tree)\n"
    "  --msi-window BASE,SIZE[,BASE,SIZE...]\n"
    "                            the host's MSI window(s): /reserved-memory/msi-window@BASE with reg and\n"
    "                            iommu-addresses = <&pcie BASE SIZE>, named by the host's memory-region, so the\n"
    "                            guest maps it 1:1 (default: read from the host)\n"
    "  --host kernel|sim[:PROFILE] [--hardware FILE|NAME] [--device DEV ...]\n"
    "                            where the MSI window is read from (the devices' reserved regions); default the\n"
    "                            embedded simulated host, every device of it (kernel: every VFIO cdev)\n"
    "  -o OUT.dtb                where to write\n\n"
    "example:\n"
    "  vsmmu dt gen --in virt.dtb --smmu base=0x9050000,eventq=106,priq=107,cmdq-sync=109,gerror=108 \\\n"
    "               --map rid=0,count=0x10000 -o virt-vsmmu.dtb && dtc -I dtb -O dts virt-vsmmu.dtb\n";

std::string check_help() {
  return "usage: vsmmu dt check FILE [--json]\n\n"
         "Lists the tree's IOMMUs of every kind (any node with #iommu-cells or named by a device's iommus or\n"
         "iommu-map): path, compatible, CPU address (reg through the buses' ranges), status, dma-coherent; and every\n"
         "device naming one (iommus stream IDs, iommu-map RID ranges and iommu-map-mask) with its verdict.\n"
         "Only an available, dma-coherent \"arm,smmu-v3\" can nest; a disabled (or reserved, fail) IOMMU gives\n"
         "its devices none, and a disabled device does not count. A device tree cannot say CANWBS: at best\n"
         "nesting depends on the SMMU's S2FWB (check it with `vsmmu probe`).\n\n"
         "  FILE     a flattened device tree (.dtb), e.g. /sys/firmware/fdt\n"
         "  --json   machine-readable report on stdout\n\n" +
         acpi::exit_status_help() +
         "\nexample:\n"
         "  sudo vsmmu dt check /sys/firmware/fdt\n";
}

int unusable(const Error& e) {
  fmt::print(stderr, "vsmmu dt: {}\n", e.message);
  return kUnusable;
}

int gen(std::span<const std::string_view> args) {
  std::optional<dt::VsmmuSpec> spec;
  std::vector<dt::IommuMap> maps;
  std::optional<std::string> in, out, pcie;
  HostChoice from;
  from.sim = true;  // the embedded simulated host unless --host kernel
  std::vector<std::string> devices;
  std::optional<std::vector<host::IovaRange>> windows;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const auto a = args[i];
    if (is_help(a)) {
      fmt::print("{}", kGenHelp);
      return kOk;
    }
    auto taken = from.take(args, i);
    if (!taken) return unusable(taken.error());
    if (*taken) continue;
    if (i + 1 >= args.size()) {
      fmt::print(stderr, "vsmmu dt gen: {} {}\n\n{}", a, a.starts_with("-") ? "needs a value" : "is unexpected",
                 kGenHelp);
      return kUnusable;
    }
    const std::string v(args[++i]);
    if (a == "--smmu") {
      auto s = text::dt_smmu(v);
      if (!s) return unusable(s.error());
      spec = *s;
    } else if (a == "--map") {
      auto m = text::dt_map(v);
      if (!m) return unusable(m.error());
      maps.push_back(*m);
    } else if (a == "--in") {
      in = v;
    } else if (a == "--pcie") {
      pcie = v;
    } else if (a == "-o") {
      out = v;
    } else if (a == "--msi-window") {
      auto w = parse_msi_windows(v);
      if (!w) return unusable(w.error());
      windows = *w;
    } else if (a == "--device") {
      devices.push_back(v);
    } else {
      fmt::print(stderr, "vsmmu dt gen: unknown option '{}'\n\n{}", a, kGenHelp);
      return kUnusable;
    }
  }
  if (!spec || !out) {
    fmt::print(stderr, "vsmmu dt gen: {} is required\n\n{}", spec ? "-o OUT.dtb" : "--smmu", kGenHelp);
    return kUnusable;
  }
  spec->iommu_map = maps.empty() ? std::vector<dt::IommuMap>{{0, 0, 0x10000}} : maps;
  spec->pcie_path = pcie.value_or("");
  const bool from_host = !windows;
  auto found = windows ? Result<std::vector<host::IovaRange>>(*windows) : host_msi_windows(from, devices);
  if (!found) return unusable(found.error());
  std::vector<std::string> names;
  for (const auto& r : *found) {
    spec->msi_windows.emplace_back(r.start, r.size());
    names.push_back(host::to_string(r));
  }
  if (from_host) fmt::print("host MSI window{}: {}\n", found->size() > 1 ? "s" : "", fmt::join(names, ", "));
  std::vector<std::uint8_t> base;
  if (in) {
    auto bytes = read_file(*in);
    if (!bytes) return unusable(bytes.error());
    base = std::move(*bytes);
  }
  auto blob = dt::add_vsmmu(base, *spec);
  if (!blob) return unusable(blob.error());
  if (auto w = write_file(*out, *blob); !w) return unusable(w.error());
  fmt::print("wrote {}: {} bytes; /smmuv3@{:x} with {} interrupts, iommu-map of {} entries, {} reserved MSI "
             "window{}\n", *out, blob->size(), spec->base, spec->irqs.size(), spec->iommu_map.size(),
             spec->msi_windows.size(), spec->msi_windows.size() > 1 ? "s" : "");
  return kOk;
}

std::string hex_list(const std::vector<std::uint32_t>& v) {
  std::vector<std::string> out;
  for (auto x : v) out.push_back(fmt::format("{:#x}", x));
  return fmt::format("{}", fmt::join(out, " "));
}

std::string where(const dt::Iommu& i) {
  if (i.reg.empty()) return "no reg";
  const auto& r = i.reg.front();
  if (!r.cpu_address)
    return fmt::format("bus address {:#x} (not translatable: {})", r.address, i.untranslatable);
  if (*r.cpu_address == r.address) return fmt::format("at {:#x} (size {:#x})", r.address, r.size);
  return fmt::format("at {:#x} (size {:#x}; {:#x} on its bus)", *r.cpu_address, r.size, r.address);
}

void print_iommu(const dt::Iommu& i) {
  fmt::print("  {}: \"{}\" {}, {}, {}, phandle {:#x}, #iommu-cells {}{}\n", i.path, fmt::join(i.compatible, "\", \""),
             where(i), i.available ? "available" : fmt::format("unavailable ({})", i.unavailable),
             i.dma_coherent ? "dma-coherent" : "not dma-coherent", i.phandle,
             i.iommu_cells ? fmt::format("{}", *i.iommu_cells) : "missing",
             i.interrupt_names.empty() ? "" : fmt::format(", interrupts [{}]", fmt::join(i.interrupt_names, ", ")));
  fmt::print("    -> {}: {}\n", to_string(i.verdict), i.reason);
}

void print_device(const dt::Device& d) {
  fmt::print("  {}{}\n", d.path, d.available ? "" : fmt::format(": unavailable ({})", d.unavailable));
  // iommus, one line per IOMMU in the order named: one-cell specifiers are stream IDs.
  std::vector<std::string> order;
  for (const auto& e : d.iommus)
    if (std::find(order.begin(), order.end(), e.iommu) == order.end()) order.push_back(e.iommu);
  for (const auto& iommu : order) {
    std::vector<std::string> specs;
    bool ids = true;
    std::uint32_t phandle = 0;
    for (const auto& e : d.iommus)
      if (e.iommu == iommu) {
        ids = ids && e.cells.size() == 1;
        specs.push_back(e.cells.empty() ? "<>" : fmt::format("<{}>", hex_list(e.cells)));
        phandle = e.phandle;
      }
    const std::string name = iommu.empty() ? fmt::format("phandle {:#x} (no such node)", phandle) : iommu;
    if (ids) {
      for (auto& s : specs) s = s.substr(1, s.size() - 2);
      fmt::print("    iommus -> {} stream ID{} {}\n", name, specs.size() > 1 ? "s" : "", fmt::join(specs, ", "));
    } else {
      fmt::print("    iommus -> {} specifier{} {}\n", name, specs.size() > 1 ? "s" : "", fmt::join(specs, ", "));
    }
  }
  if (!d.iommu_map.empty())
    fmt::print("    iommu-map{}:\n",
               d.iommu_map_mask ? fmt::format(" (iommu-map-mask {:#x}: RID & {:#x} is looked up)", *d.iommu_map_mask,
                                              *d.iommu_map_mask)
                                : "");
  for (const auto& e : d.iommu_map)
    fmt::print("      RIDs {:#x}-{:#x} -> {} stream IDs {:#x}-{:#x}: {}\n", e.rid_base,
               std::uint64_t{e.rid_base} + e.length - 1,
               e.target.empty() ? fmt::format("phandle {:#x} (no such node)", e.phandle) : e.target, e.sid_base,
               std::uint64_t{e.sid_base} + e.length - 1, to_string(e.verdict));
  fmt::print("    -> {}: {}\n", to_string(d.verdict), d.reason);
}

int check(std::span<const std::string_view> args) {
  std::optional<std::string> path;
  bool json = false;
  for (auto a : args) {
    if (is_help(a)) {
      fmt::print("{}", check_help());
      return kOk;
    }
    if (a == "--json") {
      json = true;
    } else if (!a.starts_with("-") && !path) {
      path = std::string(a);
    } else {
      fmt::print(stderr, "vsmmu dt check: unexpected argument '{}'\n\n{}", a, check_help());
      return kUnusable;
    }
  }
  if (!path) {
    fmt::print(stderr, "vsmmu dt check: FILE is required\n\n{}", check_help());
    return kUnusable;
  }
  auto bytes = read_file(*path);
  if (!bytes) return unusable(bytes.error());
  auto inspected = dt::inspect(*bytes);
  // A blob that is not a sound tree is a finding (malformed), not a failure to run.
  const dt::Report report = inspected ? std::move(*inspected) : dt::refused(inspected.error());
  const HostNesting status = report.status();
  if (json) {
    fmt::print("{}\n", dt_json(*path, report));
    return exit_code(status);
  }
  fmt::print("device tree {}: {}\n", *path, report.counts());
  if (!report.iommus.empty()) fmt::print("IOMMUs:\n");
  for (const auto& i : report.iommus) print_iommu(i);
  if (!report.devices.empty()) fmt::print("devices:\n");
  for (const auto& d : report.devices) print_device(d);
  if (!report.problems.empty()) {
    fmt::print("{}, {}:\n", counted(report.count(dt::Severity::error), "error"),
               counted(report.count(dt::Severity::warning), "warning"));
    for (const auto& p : report.problems) fmt::print("  {:<7} {}: {}\n", to_string(p.severity), p.path, p.message);
  }
  fmt::print("result: {}\n", report.summary());
  return exit_code(status);
}

}  // namespace

int dt_command(std::span<const std::string_view> args) {
  return dispatch_subcommand("dt", args, usage, {{"gen", gen}, {"check", check}});
}

}  // namespace vsmmu::tools

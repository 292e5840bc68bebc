// vsmmu dt: add a vSMMU to a guest's device tree; check a host's device tree for SMMUv3 nodes.
#include <cstdio>
#include <optional>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "acpi/devicetree.hpp"
#include "acpi/files.hpp"
#include "acpi/json.hpp"
#include "acpi/spec_text.hpp"
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
             "  check   report a device tree's SMMUv3 nodes, their coherency and iommu-maps\n\n"
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

constexpr const char* kCheckHelp =
    "usage: vsmmu dt check FILE [--json]\n\n"
    "Lists the tree's \"arm,smmu-v3\" nodes (reg, dma-coherent, interrupt-names, #iommu-cells) and every node\n"
    "with an iommu-map (entries, and the SMMU each phandle names), with the problems Linux would have.\n"
    "A device tree cannot say CANWBS: on a device-tree host, nesting always depends on the SMMU's S2FWB\n"
    "(check it with `vsmmu probe`).\n\n"
    "  FILE     a flattened device tree (.dtb), e.g. /sys/firmware/fdt\n"
    "  --json   machine-readable report on stdout\n\n"
    "exit status: 0 no problems; 1 problems found; 2 the file cannot be read or is not a device tree\n\n"
    "example:\n"
    "  sudo vsmmu dt check /sys/firmware/fdt\n";


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

int check(std::span<const std::string_view> args) {
  std::optional<std::string> path;
  bool json = false;
  for (auto a : args) {
    if (is_help(a)) {
      fmt::print("{}", kCheckHelp);
      return kOk;
    }
    if (a == "--json") {
      json = true;
    } else if (!a.starts_with("-") && !path) {
      path = std::string(a);
    } else {
      fmt::print(stderr, "vsmmu dt check: unexpected argument '{}'\n\n{}", a, kCheckHelp);
      return kUnusable;
    }
  }
  if (!path) {
    fmt::print(stderr, "vsmmu dt check: FILE is required\n\n{}", kCheckHelp);
    return kUnusable;
  }
  auto bytes = read_file(*path);
  if (!bytes) return unusable(bytes.error());
  auto report = dt::inspect(*bytes);
  if (!report) return unusable(report.error());
  if (json) {
    fmt::print("{}\n", dt_json(*path, *report));
    return report->problems.empty() ? kOk : kProblems;
  }
  fmt::print("device tree {}: {} SMMUv3 nodes, {} nodes with an iommu-map\n", *path, report->smmus.size(),
             report->hosts.size());
  for (const auto& s : report->smmus) {
    std::string reg;
    for (const auto& [address, size] : s.reg) reg += fmt::format("{}{:#x}+{:#x}", reg.empty() ? "" : " ", address, size);
    fmt::print("  {}: phandle {:#x}, reg {}, {}, interrupts [{}], #iommu-cells {}\n", s.path, s.phandle,
               reg.empty() ? "none" : reg, s.dma_coherent ? "dma-coherent" : "NOT dma-coherent",
               fmt::join(s.interrupt_names, ", "), s.iommu_cells ? fmt::format("{}", *s.iommu_cells) : "missing");
  }
  for (const auto& h : report->hosts) {
    fmt::print("  {}: iommu-map{}\n", h.path,
               h.iommu_map_mask ? fmt::format(" (iommu-map-mask {:#x})", *h.iommu_map_mask) : "");
    for (const auto& e : h.iommu_map)
      fmt::print("    RIDs {:#x}-{:#x} -> {} stream IDs {:#x}-{:#x}\n", e.rid_base,
                 std::uint64_t{e.rid_base} + e.length - 1, e.target.empty() ? fmt::format("phandle {:#x}", e.phandle) : e.target,
                 e.sid_base, std::uint64_t{e.sid_base} + e.length - 1);
  }
  if (report->problems.empty()) {
    fmt::print("no problems\n");
  } else {
    fmt::print("{} problems:\n", report->problems.size());
    for (const auto& p : report->problems) fmt::print("  {}: {}\n", p.path, p.message);
  }
  fmt::print("nesting: a device tree cannot carry CANWBS, so nesting needs the SMMU's S2FWB (IDR3.FWB); "
             "`vsmmu probe` reads it\n");
  return report->problems.empty() ? kOk : kProblems;
}

}  // namespace

int dt_command(std::span<const std::string_view> args) {
  return dispatch_subcommand("dt", args, usage, {{"gen", gen}, {"check", check}});
}

}  // namespace vsmmu::tools

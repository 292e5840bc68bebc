// vsmmu iort: check a host's IORT for nested SMMUv3 (CANWBS), generate a guest IORT, patch a host IORT
// with CANWBS for Linux's initrd table upgrade.
#include <algorithm>
#include <cstdio>
#include <iterator>
#include <optional>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "acpi/cpio.hpp"
#include "acpi/files.hpp"
#include "acpi/iort.hpp"
#include "acpi/iort_build.hpp"
#include "acpi/iort_nesting.hpp"
#include "acpi/iort_patch.hpp"
#include "acpi/json.hpp"
#include "acpi/nesting_status.hpp"
#include "acpi/spec_text.hpp"
#include "base/text.hpp"
#include "base/try.hpp"
#include "tools/commands.hpp"
#include "tools/host_choice.hpp"
#include "tools/subcommands.hpp"

namespace vsmmu::tools {
namespace {

using namespace vsmmu::acpi;
using namespace vsmmu::acpi::iort;

constexpr const char* kHostIort = "/sys/firmware/acpi/tables/IORT";

// Exit codes shared by the subcommands (and documented in their --help).

void usage(std::FILE* out) {
  fmt::print(out,
             "usage: vsmmu iort <check|gen|patch> [options]\n\n"
             "  check   validate an IORT and say whether Linux would allow nested SMMUv3 (CANWBS)\n"
             "  gen     generate a guest IORT describing vSMMUs\n"
             "  patch   set CANWBS on a host IORT for Linux's initrd ACPI table upgrade\n\n"
             "'vsmmu iort <subcommand> --help' describes one.\n");
}

std::string check_help() {
  return "usage: vsmmu iort check [FILE] [--json]\n\n"
         "Validates an ACPI IORT (Arm DEN 0049) byte by byte - header, checksum, lengths, every node, ID mappings,\n"
         "references, overlapping ranges - and reports, for every PCI root complex and named component, its CCA and\n"
         "memory access flags (CPM, DACS, CANWBS), the SMMU its IDs reach (by base address) and whether Linux would\n"
         "allow nesting devices behind it; then warns about what Linux makes of the mappings (RIDs past 16 bits,\n"
         "single mappings, root complexes sharing a segment, CANWBS in a table older than E.f) and sums up.\n\n"
         "  FILE     the table (default /sys/firmware/acpi/tables/IORT, readable by root)\n"
         "  --json   machine-readable report on stdout\n\n" +
         acpi::exit_status_help() +
         "\nexample:\n"
         "  sudo vsmmu iort check\n"
         "  vsmmu iort check --json IORT.dat | jq '.status.name, .summary, .root_complexes[].verdict'\n";
}

constexpr const char* kGenHelp =
    "usage: vsmmu iort gen --smmu SPEC [--smmu SPEC ...] [--map SPEC ...] [options] -o FILE\n\n"
    "Writes a guest IORT: an ITS group, one SMMUv3 node per vSMMU, PCI root complexes whose RIDs map to\n"
    "vSIDs (the others go straight to the ITS), and one RMR node per vSMMU reserving the host's MSI\n"
    "window. Node revisions are the ones Linux and iasl expect for the table revision.\n\n"
    "  --smmu base=ADDR,event=GSIV,pri=GSIV,gerr=GSIV,sync=GSIV[,noncoherent][,msi-devid=ID]\n"
    "                          a vSMMU (index = order given); leave a line out if it is not wired\n"
    "  --map rid=RID,count=N[,vsid=VSID][,smmu=INDEX][,segment=SEG]\n"
    "                          RIDs behind a vSMMU (default: rid=0,count=0x10000, vSID = RID, vSMMU 0)\n"
    "  --canwbs                set CANWBS on every guest root complex\n"
    "  --host-iort FILE        set CANWBS where the host's root complex has it\n"
    "  --host-rc INDEX         the host root complex the devices sit behind (default: the only one)\n"
    "  --its ID                an ITS translation ID (repeatable; default 0)\n"
    "  --no-its                no ITS group\n"
    "  --no-rmr                no RMR nodes for the MSI window\n"
    "  --msi-window BASE,SIZE[,BASE,SIZE...]\n"
    "                          the host's MSI window(s) the RMR nodes reserve (default: read from the host)\n"
    "  --host kernel|sim[:PROFILE] [--hardware FILE|NAME] [--device DEV ...]\n"
    "                          where the MSI window is read from: the devices' reserved regions (sysfs\n"
    "                          reserved_regions of their iommu groups); default the embedded simulated host,\n"
    "                          every device of it (kernel: every VFIO cdev)\n"
    "  --revision 5|6          table revision (default 5: SMMUv3 nodes revision 4; 6: revision 5)\n"
    "  --oem-id ID --oem-table-id ID --oem-revision N\n"
    "  -o FILE                 where to write the table\n\n"
    "RMR nodes only take effect in a Linux guest when the PCIe host bridge's _DSM function 5 says the\n"
    "boot configuration is preserved (DEN 0049 3.1.1.5); the DSDT is the VMM's.\n\n"
    "example:\n"
    "  vsmmu iort gen --smmu base=0x9050000,event=106,pri=107,gerr=108,sync=109 \\\n"
    "                 --map rid=0x0,count=0x100 --host-iort /sys/firmware/acpi/tables/IORT -o guest-iort.aml\n";

constexpr const char* kPatchHelp =
    "usage: vsmmu iort patch --canwbs [--rc INDEX] [--force] IN -o OUT [--cpio]\n\n"
    "Sets CANWBS (bit 2 of the memory access flags) on root complex INDEX (table order, as `iort check`\n"
    "numbers them) or on every one it can help, raises the OEM revision by one and fixes the checksum, so\n"
    "that Linux's ACPI table upgrade (CONFIG_ACPI_TABLE_UPGRADE) replaces the firmware's table with it.\n\n"
    "  --canwbs     set CANWBS (the only patch so far; required)\n"
    "  --rc INDEX   only this root complex\n"
    "  --force      set it also where it cannot help or cannot be true (see below)\n"
    "  -o OUT       where to write\n"
    "  --cpio       write an uncompressed newc cpio holding kernel/firmware/acpi/IORT.aml instead of the\n"
    "               bare table; put it in front of the initrd: cat OUT initrd.img > initrd-override.img\n\n"
    "The table must be valid (`vsmmu iort check` lists what is not), except for its checksum: a wrong one\n"
    "(some firmware ships 0) is rewritten with the patch, and the output says so.\n"
    "CANWBS is not set on a root complex that cannot nest whatever its flags (`iort check` verdict\n"
    "refused: its IDs reach only an ITS, an SMMUv1/v2 or SMMUv3s without COHACC, or nothing) nor on one\n"
    "with CCA 0 (CANWBS coerces its accesses to Normal Write-Back, which needs a coherent path). Without\n"
    "--rc such root complexes are skipped and listed with the reason; with --rc, or when none is left,\n"
    "the patch is refused. --force sets it anyway and says what it forced and why that is unsafe.\n"
    "Tables older than revision 7 (DEN 0049 E.f) reserve the bit; Linux reads it anyway (noted).\n\n"
    "exit status:\n"
    "  0  the patched table was written\n"
    "  1  refused: the table has errors besides its checksum, has no such (or no suitable) root complex,\n"
    "     or its OEM revision cannot be raised; the reason is printed\n"
    "  2  could not run: bad usage, IN unreadable or not an IORT, OUT not writable\n\n"
    "example:\n"
    "  sudo cat /sys/firmware/acpi/tables/IORT > IORT.dat\n"
    "  vsmmu iort patch --canwbs IORT.dat -o iort-override.cpio --cpio\n";

// Takes the value after an option, or reports that it is missing.
std::optional<std::string> value_of(std::span<const std::string_view> args, std::size_t& i) {
  if (i + 1 >= args.size()) {
    fmt::print(stderr, "vsmmu iort: {} needs a value\n", args[i]);
    return std::nullopt;
  }
  return std::string(args[++i]);
}

int unusable(const Error& e) {
  fmt::print(stderr, "vsmmu iort: {}\n", e.message);
  return kUnusable;
}

// DEN 0049 Tables 14-16: "CCA=1 CPM=1 DACS=1 CANWBS=0 (flags 0x03)".
std::string memory_text(const MemoryAccess& m) {
  return fmt::format("CCA={} CPM={} DACS={} CANWBS={} (flags {:#04x})", m.cache_coherency, int{m.coherency()},
                     int{m.attributes()}, int{m.canwbs()}, m.flags);
}

std::string node_summary(const Table& table, const Node& n) {
  struct Visitor {
    std::string operator()(std::monostate) const { return "(fields not decoded)"; }
    std::string operator()(const ItsGroup& g) const { return fmt::format("ITS IDs {}", fmt::join(g.its_ids, ", ")); }
    std::string operator()(const NamedComponent& c) const {
      return fmt::format("\"{}\", {}, address limit {}", c.device_name, memory_text(c.memory),
                         c.memory_address_limit);
    }
    std::string operator()(const RootComplex& r) const {
      return fmt::format("segment {}, {}, ATS attribute {:#x}{}", r.pci_segment, memory_text(r.memory),
                         r.ats_attribute,
                         r.memory_address_limit ? fmt::format(", address limit {}", *r.memory_address_limit) : "");
    }
    std::string operator()(const Smmu& s) const {
      return fmt::format("base {:#x}, span {:#x}, model {}, flags {:#x}, {} context interrupts", s.base, s.span,
                         s.model, s.flags, s.context_interrupts.size());
    }
    std::string operator()(const SmmuV3& s) const {
      return fmt::format("base {:#x}, flags {:#x}{}, model {}, GSIV event {} pri {} gerr {} sync {}", s.base, s.flags,
                         s.cohacc() ? " (COHACC)" : " (no COHACC)", s.model, s.event_gsiv, s.pri_gsiv, s.gerr_gsiv,
                         s.sync_gsiv);
    }
    std::string operator()(const Pmcg& p) const {
      return fmt::format("page 0 {:#x}, overflow GSIV {}, node {:#x}", p.page0_base, p.overflow_gsiv, p.node_reference);
    }
    std::string operator()(const Rmr& r) const {
      std::string ranges;
      for (const auto& range : r.ranges)
        ranges += fmt::format("{}[{:#x}, +{:#x})", ranges.empty() ? "" : " ", range.base, range.length);
      return fmt::format("flags {:#x}, ranges {}", r.flags, ranges);
    }
  };
  std::string s = std::visit(Visitor{}, n.data);
  for (std::size_t i = 0; i < n.mappings.size(); ++i) {
    const auto& m = n.mappings[i];
    const auto target = node_label(table, m.output_reference);
    if (m.single())
      s += fmt::format("\n        map {}: single ID {:#x} -> {}", i, m.output_base, target);
    else
      s += fmt::format("\n        map {}: IDs {:#x}-{:#x} -> {:#x}-{:#x} at {}", i, m.input_base, m.input_last(),
                       m.output_base, m.output_last(), target);
  }
  return s;
}

void print_routes(const std::vector<Route>& routes, std::string_view ids) {
  for (const auto& r : routes) {
    const auto in = id_range(r, ids);
    const auto out = r.target == Route::Target::smmu_v3 || r.target == Route::Target::smmu_v1v2 ? "stream IDs"
                                                                                               : "device IDs";
    fmt::print("    map {}: {} -> {}, {} {:#x}-{:#x}{}{}\n", r.mapping_index, in, r.target_name, out, r.out_first,
               r.out_last, r.target == Route::Target::smmu_v3 && !r.coherent_smmu ? " (no COHACC)" : "",
               r.applies ? "" : fmt::format(" (never applies: {})", r.not_applying));
  }
}

void print_text(const std::string& source, const Report& report, const NestingReport& nesting) {
  const auto& h = report.table.header;
  fmt::print("IORT {}: {} bytes, revision {}, OEM \"{}\" \"{}\" revision {}, creator \"{}\" {:#x}\n", source,
             report.size, h.revision, h.oem_id, h.oem_table_id, h.oem_revision, h.creator_id, h.creator_revision);
  fmt::print("{} nodes from {:#x}:\n", report.table.nodes.size(), h.node_offset);
  for (std::size_t i = 0; i < report.table.nodes.size(); ++i) {
    const auto& n = report.table.nodes[i];
    fmt::print("  [{}] {:#05x} {:<15} rev {} id {:<3} {}\n", i, n.offset, node_type_name(n.type), n.revision,
               n.identifier, node_summary(report.table, n));
  }
  std::vector<const Problem*> problems;
  for (const auto& p : report.problems) problems.push_back(&p);
  for (const auto& p : nesting.problems) problems.push_back(&p);
  if (problems.empty()) {
    fmt::print("no problems\n");
  } else {
    fmt::print("{}, {}:\n", counted(report.count(Severity::error), "error"),
               counted(report.count(Severity::warning) + nesting.problems.size(), "warning"));
    for (const auto* p : problems)
      fmt::print("  {:<7} at {:#05x} [{}] {}\n", to_string(p->severity), p->offset, to_string(p->check), p->message);
  }
  fmt::print("nesting (Linux arm-smmu-v3 + iommufd, IOMMU_VIOMMU_ALLOC):\n");
  if (nesting.root_complexes.empty()) fmt::print("  no PCI root complex\n");
  for (const auto& rc : nesting.root_complexes) {
    fmt::print("  {}: {}\n", root_complex_label(rc.index, rc.segment, rc.offset), memory_text(rc.memory));
    print_routes(rc.routes, "RID");
    fmt::print("    verdict: {} - {}\n", to_string(rc.verdict), rc.reason);
  }
  for (const auto& nc : nesting.named_components) {
    fmt::print("  named component \"{}\" (node {:#05x}): {}\n", nc.device_name, nc.offset, memory_text(nc.memory));
    print_routes(nc.routes, "ID");
    fmt::print("    verdict: {} - {}\n", to_string(nc.verdict), nc.reason);
  }
}

int check(std::span<const std::string_view> args) {
  std::string path = kHostIort;
  bool json = false, have_path = false;
  for (std::size_t i = 0; i < args.size(); ++i) {
    if (is_help(args[i])) {
      fmt::print("{}", check_help());
      return kOk;
    }
    if (args[i] == "--json") {
      json = true;
    } else if (!args[i].starts_with("-") && !have_path) {
      path = std::string(args[i]);
      have_path = true;
    } else {
      fmt::print(stderr, "vsmmu iort check: unexpected argument '{}'\n\n{}", args[i], check_help());
      return kUnusable;
    }
  }
  auto bytes = read_file(path);
  if (!bytes) {
    fmt::print(stderr, "vsmmu iort check: {}{}\n", bytes.error().message,
               path == kHostIort && bytes.error().err == ENOENT
                   ? " (no IORT: the host booted with a device tree, or is not arm64)"
               : bytes.error().err == EACCES ? " (the firmware tables are readable by root only)"
                                             : "");
    return kUnusable;
  }
  auto report = parse(*bytes);
  if (!report) {
    // Bytes that are not an IORT at all (too short for a signature, another signature) are a malformed input;
    // --json answers with a report (status malformed, the one error) for the script reading it, as dt check does.
    if (json)
      fmt::print("{}\n", iort_json(path, refused(report.error(), bytes->size()), NestingReport{}));
    else
      fmt::print(stderr, "vsmmu iort check: {}\n", report.error().message);
    return exit_code(HostNesting::malformed);
  }
  const auto nesting = nesting_report(report->table);
  if (json) {
    fmt::print("{}\n", iort_json(path, *report, nesting));
  } else {
    print_text(path, *report, nesting);
    fmt::print("result: {}\n", nesting_summary(*report, nesting, path));
  }
  return exit_code(host_status(*report, nesting));
}

int gen(std::span<const std::string_view> args) {
  GuestIort spec;
  HostChoice from;
  from.sim = true;  // the embedded simulated host unless --host kernel
  std::vector<std::string> devices;
  std::optional<std::vector<host::IovaRange>> windows;
  std::vector<text::GuestMap> maps;
  std::optional<std::string> out, host_iort;
  std::optional<std::size_t> host_rc;
  bool canwbs = false, its_given = false;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const auto a = args[i];
    if (is_help(a)) {
      fmt::print("{}", kGenHelp);
      return kOk;
    }
    if (a == "--canwbs") { canwbs = true; continue; }
    if (a == "--no-its") { spec.its_ids.clear(); its_given = true; continue; }
    if (a == "--no-rmr") { spec.msi_rmr = false; continue; }
    auto taken = from.take(args, i);
    if (!taken) return unusable(taken.error());
    if (*taken) continue;
    constexpr std::string_view with_value[] = {"--smmu",       "--map",   "--its",    "--host-iort",
                                               "--host-rc",    "--msi-window", "--revision", "--oem-id",
                                               "--oem-table-id", "--oem-revision", "-o", "--device"};
    if (std::find(std::begin(with_value), std::end(with_value), a) == std::end(with_value)) {
      fmt::print(stderr, "vsmmu iort gen: unknown option '{}'\n\n{}", a, kGenHelp);
      return kUnusable;
    }
    auto v = value_of(args, i);
    if (!v) return kUnusable;
    auto num = [&](std::string_view what) -> Result<std::uint64_t> { return text::number(*v, what); };
    if (a == "--smmu") {
      auto s = text::guest_smmu(*v);
      if (!s) return unusable(s.error());
      spec.smmus.push_back(*s);
    } else if (a == "--map") {
      auto m = text::guest_map(*v);
      if (!m) return unusable(m.error());
      maps.push_back(*m);
    } else if (a == "--its") {
      auto n = num("ITS ID");
      if (!n) return unusable(n.error());
      if (!its_given) spec.its_ids.clear();
      its_given = true;
      spec.its_ids.push_back(static_cast<std::uint32_t>(*n));
    } else if (a == "--host-iort") {
      host_iort = *v;
    } else if (a == "--host-rc") {
      auto n = num("host root complex");
      if (!n) return unusable(n.error());
      host_rc = *n;
    } else if (a == "--msi-window") {
      auto w = parse_msi_windows(*v);
      if (!w) return unusable(w.error());
      windows = *w;
    } else if (a == "--device") {
      devices.push_back(*v);
    } else if (a == "--revision") {
      auto n = num("revision");
      if (!n) return unusable(n.error());
      spec.identity.revision = static_cast<std::uint8_t>(*n);
    } else if (a == "--oem-id") {
      spec.identity.oem_id = *v;
    } else if (a == "--oem-table-id") {
      spec.identity.oem_table_id = *v;
    } else if (a == "--oem-revision") {
      auto n = num("OEM revision");
      if (!n) return unusable(n.error());
      spec.identity.oem_revision = static_cast<std::uint32_t>(*n);
    } else {
      out = *v;  // -o
    }
  }
  if (!out || spec.smmus.empty()) {
    fmt::print(stderr, "vsmmu iort gen: {} is required\n\n{}", out ? "--smmu" : "-o FILE", kGenHelp);
    return kUnusable;
  }
  if (maps.empty()) maps.push_back(text::GuestMap{GuestRidMap{0, 0x10000, 0, 0}, 0});
  if (spec.msi_rmr) {
    const bool from_host = !windows;
    auto w = windows ? Result<std::vector<host::IovaRange>>(*windows) : host_msi_windows(from, devices);
    if (!w) return unusable(w.error());
    std::vector<std::string> names;
    for (const auto& r : *w) {
      spec.msi_windows.push_back(RmrRange{r.start, r.size()});
      names.push_back(host::to_string(r));
    }
    if (from_host) fmt::print("host MSI window{}: {}\n", w->size() > 1 ? "s" : "", fmt::join(names, ", "));
  }
  bool host_has_canwbs = false;
  if (host_iort) {
    auto bytes = read_file(*host_iort);
    if (!bytes) return unusable(bytes.error());
    auto host = parse(*bytes);
    if (!host) return unusable(host.error());
    auto flag = host_canwbs(host->table, host_rc);
    if (!flag) return unusable(flag.error());
    host_has_canwbs = *flag;
    fmt::print("host {}: root complex {} {} CANWBS\n", *host_iort, host_rc.value_or(0), *flag ? "has" : "lacks");
  }
  for (const auto& m : maps) {
    auto rc = std::find_if(spec.root_complexes.begin(), spec.root_complexes.end(),
                           [&](const GuestRootComplex& r) { return r.segment == m.segment; });
    if (rc == spec.root_complexes.end()) {
      spec.root_complexes.push_back(GuestRootComplex{m.segment, {}, canwbs || host_has_canwbs});
      rc = spec.root_complexes.end() - 1;
    }
    rc->maps.push_back(m.map);
  }
  auto table = build_guest(spec);
  if (!table) return unusable(table.error());
  auto check_back = parse(*table);
  if (!check_back || !check_back->valid()) {
    fmt::print(stderr, "vsmmu iort gen: internal error: the generated table does not validate\n");
    return kProblems;
  }
  if (auto w = write_file(*out, *table); !w) return unusable(w.error());
  fmt::print("wrote {}: {} bytes, IORT revision {}, {} nodes ({} vSMMUs, {} root complexes{})\n", *out, table->size(),
             spec.identity.revision, check_back->table.nodes.size(), spec.smmus.size(), spec.root_complexes.size(),
             std::any_of(spec.root_complexes.begin(), spec.root_complexes.end(),
                         [](const GuestRootComplex& r) { return r.canwbs; })
                 ? ", CANWBS"
                 : "");
  return kOk;
}

int patch(std::span<const std::string_view> args) {
  std::optional<std::string> in, out;
  std::optional<std::size_t> rc;
  bool canwbs = false, cpio = false, force = false;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const auto a = args[i];
    if (is_help(a)) {
      fmt::print("{}", kPatchHelp);
      return kOk;
    }
    if (a == "--canwbs") {
      canwbs = true;
    } else if (a == "--cpio") {
      cpio = true;
    } else if (a == "--force") {
      force = true;
    } else if (a == "--rc" || a == "-o") {
      auto v = value_of(args, i);
      if (!v) return kUnusable;
      if (a == "-o") {
        out = *v;
      } else {
        auto n = text::number(*v, "root complex index");
        if (!n) return unusable(n.error());
        rc = *n;
      }
    } else if (!a.starts_with("-") && !in) {
      in = std::string(a);
    } else {
      fmt::print(stderr, "vsmmu iort patch: unexpected argument '{}'\n\n{}", a, kPatchHelp);
      return kUnusable;
    }
  }
  if (!canwbs || !in || !out) {
    fmt::print(stderr, "vsmmu iort patch: {} is required\n\n{}", !canwbs ? "--canwbs" : !in ? "IN" : "-o OUT", kPatchHelp);
    return kUnusable;
  }
  auto bytes = read_file(*in);
  if (!bytes) return unusable(bytes.error());
  auto patched = set_canwbs(*bytes, rc, force ? IfUnsafe::force : IfUnsafe::refuse);
  if (!patched) {
    fmt::print(stderr, "vsmmu iort patch: {}\n", patched.error().message);
    // Bytes that are not an IORT cannot be patched at all; every other failure is a refusal (set_canwbs).
    return patched.error().where == "iort.parse" ? kUnusable : kProblems;
  }
  for (const auto& c : patched->changes)
    fmt::print("root complex {} (node {:#05x}): memory access flags {:#04x} -> {:#04x}{}\n", c.rc.index, c.rc.offset,
               c.before, c.after, c.forced ? " (forced)" : "");
  for (const auto& note : patched->notes) fmt::print("note: {}\n", note);
  fmt::print("OEM revision {} -> {}, checksum {:#04x}\n", patched->oem_revision_before, patched->oem_revision_after,
             patched->table[layout::kChecksum]);
  const auto data = cpio ? acpi::cpio::newc(acpi::cpio::acpi_override("IORT", patched->table)) : patched->table;
  if (auto w = write_file(*out, data); !w) return unusable(w.error());
  if (cpio)
    fmt::print("wrote {}: cpio with kernel/firmware/acpi/IORT.aml ({} bytes); boot with: cat {} initrd.img > "
               "initrd-override.img\n",
               *out, patched->table.size(), *out);
  else
    fmt::print("wrote {}: {} bytes\n", *out, data.size());
  return kOk;
}

}  // namespace

int iort_command(std::span<const std::string_view> args) {
  return dispatch_subcommand("iort", args, usage, {{"check", check}, {"gen", gen}, {"patch", patch}});
}

}  // namespace vsmmu::tools

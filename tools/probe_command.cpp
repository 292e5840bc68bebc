// vsmmu probe: can this host give a VM a nested SMMUv3, for which devices, and if not, exactly why. The
// assessment is nesting/nesting_probe.hpp's; this file picks the host, the devices, and prints.
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "host/kernel/kernel_host.hpp"
#include "host/sim/sim_host.hpp"
#include "nesting/nesting_probe.hpp"
#include "smmu/format.hpp"
#include "tools/commands.hpp"
#include "tools/host_choice.hpp"
#include "tools/subcommands.hpp"

namespace vsmmu::tools {
namespace {

using namespace vsmmu::nesting;
using nlohmann::json;

constexpr const char* kHelp =
    "usage: vsmmu probe [--host kernel|sim[:PROFILE]] [--hardware FILE|NAME] [--json] [DEVICE...]\n\n"
    "Says whether this host can give a VM a nested SMMUv3 (guest stage 1, host stage 2), for which devices,\n"
    "and if not, exactly why. For each device it binds it, reads and decodes the physical SMMU's ID registers\n"
    "(IOMMU_GET_HW_INFO), then proves nesting by doing it: IOAS, NEST_PARENT HWPT, attach, vIOMMU, vDEVICE,\n"
    "an abort nested HWPT attached; and asks for dirty tracking, plain (DIRTY_TRACKING, HTTU) and under\n"
    "nesting (NEST_PARENT|DIRTY_TRACKING), and reads the host's MSI window for it (reserved_regions).\n"
    "Everything it makes is destroyed and the device left unbound.\n"
    "Devices are grouped by physical SMMU, with the ID registers a vSMMU there would show a guest.\n\n"
    "  --host kernel        the real host: /dev/iommu and VFIO cdevs (default)\n"
    "  --host sim[:PROFILE] the simulated host with kernel profile PROFILE (default \"upstream\"; embedded: {})\n"
    "  --hardware FILE|NAME the simulated host's hardware profile (default \"default\"; embedded: {})\n"
    "  --json               machine-readable report on stdout\n"
    "  DEVICE               kernel: /dev/vfio/devices/vfioN, vfioN or a PCI address (default: every VFIO cdev);\n"
    "                       sim: a device name or BDF of the hardware profile (default: all of them)\n\n"
    "exit status:\n"
    "  0  every device probed can nest\n"
    "  1  some device cannot (or the probe failed for it): the report says why\n"
    "  2  nothing to probe: no /dev/iommu, no VFIO device, a bad profile or option\n\n"
    "example:\n"
    "  sudo vsmmu probe\n"
    "  sudo vsmmu probe 0000:01:00.0 --json | jq '.devices[].verdict'\n"
    "  vsmmu probe --host sim\n"
    "  vsmmu probe --host sim:nested-dirty --hardware mmu-600-r1p0\n";

void print_help(std::FILE* out) {
  fmt::print(out, fmt::runtime(kHelp), fmt::join(host::sim::embedded_kernel_profile_names(), ", "),
             fmt::join(host::sim::embedded_hardware_profile_names(), ", "));
}

int unusable(const Error& e, std::string_view hint = {}) {
  fmt::print(stderr, "vsmmu probe: {}{}\n", e.to_string(), hint);
  return kUnusable;
}

struct Options {
  HostChoice host;  // the kernel unless --host sim
  bool json = false;
  std::vector<std::string> devices;
};

// Parses the arguments; nullopt after printing help (exit 0) or a usage error (exit 2), said in `status`.
std::optional<Options> parse(std::span<const std::string_view> args, int& status) {
  Options o;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const auto a = args[i];
    if (is_help(a)) {
      print_help(stdout);
      status = kOk;
      return std::nullopt;
    }
    auto taken = o.host.take(args, i);
    if (!taken) {
      fmt::print(stderr, "vsmmu probe: {}\n\n", taken.error().message);
      print_help(stderr);
      status = kUnusable;
      return std::nullopt;
    }
    if (*taken) continue;
    if (a == "--json") {
      o.json = true;
    } else if (!a.starts_with("-")) {
      o.devices.emplace_back(a);
    } else {
      fmt::print(stderr, "vsmmu probe: unexpected argument '{}'\n\n", a);
      print_help(stderr);
      status = kUnusable;
      return std::nullopt;
    }
  }
  if (auto c = o.host.check(); !c) {
    fmt::print(stderr, "vsmmu probe: {}\n", c.error().message);
    status = kUnusable;
    return std::nullopt;
  }
  return o;
}

std::string hex(std::uint64_t v) { return fmt::format("{:#x}", v); }

json error_json(const Error& e) { return {{"errno", e.err}, {"where", e.where}, {"message", e.message}}; }

json features_json(const SmmuFeatures& f) {
  const auto& id = f.id;
  return {{"stage1", id.s1p},
          {"stage2", id.s2p},
          {"coherent", id.cohacc},
          {"httu", f.httu_name()},
          {"s2fwb", id.fwb},
          {"ril", id.ril},
          {"ats", id.ats},
          {"sid_bits", id.sidsize},
          {"ssid_bits", id.ssidsize},
          {"oas_bits", id.oas_bits()},
          {"granules", {{"4k", id.gran4k}, {"16k", id.gran16k}, {"64k", id.gran64k}}},
          {"errata_repeat_tlbi_cfgi", f.errata_repeat_tlbi_cfgi},
          {"iidr", {{"implementer", hex(id.implementer)}, {"product", hex(id.product_id)}, {"variant", id.variant},
                    {"revision", id.revision}}},
          {"arch", fmt::format("{}.{}", id.arch_major_rev + 3, id.arch_minor_rev)}};
}

json hw_info_json(const host::HwInfo& hw) {
  json idr = json::array();
  for (auto v : hw.idr) idr.push_back(hex(v));
  return {{"type", hw.type},         {"flags", hex(hw.flags)}, {"idr", idr},
          {"iidr", hex(hw.iidr)},    {"aidr", hex(hw.aidr)},   {"capabilities", hex(hw.capabilities)},
          {"max_pasid_log2", hw.max_pasid_log2}};
}

json dirty_json(const std::optional<DirtyTracking>& d) {
  if (!d) return nullptr;
  return {{"available", d->available}, {"detail", d->detail}};
}

json guest_json(const GuestIdRegisters& g) {
  return {{"idr", {hex(g.idr0.value()), hex(g.idr1.value()), hex(g.idr2.value()), hex(g.idr3.value()),
                   hex(g.idr4.value()), hex(g.idr5.value())}},
          {"iidr", hex(g.iidr.value())},
          {"aidr", hex(g.aidr.value())}};
}

// What each wish left on auto gives (nesting::AutoValue): {"oas_bits": {"value": 44, "why": ...}, "ril": {"value":
// true, ...}, ...}; bits as numbers, features as booleans.
bool auto_is_bits(const std::string& field) { return field.ends_with("_bits"); }
json auto_json(const std::vector<AutoValue>& values) {
  json out = json::object();
  for (const auto& a : values)
    out[a.field] = {{"value", auto_is_bits(a.field) ? json(a.value) : json(a.value != 0)}, {"why", a.why}};
  return out;
}
std::string_view auto_name(const std::string& field) {
  static const std::pair<std::string_view, std::string_view> names[] = {
      {"oas_bits", "OAS"}, {"ipa_bits", "IPA"}, {"ssid_bits", "SSIDSIZE"}, {"ril", "RIL"},
      {"ats", "ATS"},      {"stall", "stalls"}, {"msi", "MSI"}};
  for (const auto& [key, name] : names)
    if (key == field) return name;
  return field;
}
std::string auto_text(const AutoValue& a) {
  if (auto_is_bits(a.field)) return fmt::format("{} bits", a.value);
  return a.value ? "on" : "off";
}

// The host's MSI window for the device (docs/interrupts.md): {"base", "last", "size", "check"}, or null with
// "msi_window_error" beside it when unknown.
json msi_window_json(const DeviceReport& d) {
  if (!d.msi_window) return d.msi_window_error ? json{{"error", error_json(*d.msi_window_error)}} : json(nullptr);
  return {{"base", hex(d.msi_window->start)}, {"last", hex(d.msi_window->last)}, {"size", hex(d.msi_window->size())},
          {"check", d.msi_window_check}};
}

json report_json(const ProbeReport& r) {
  json devices = json::array();
  for (const auto& d : r.devices) {
    json steps = json::array();
    for (const auto& s : d.steps)
      steps.push_back({{"step", s.name}, {"ok", !s.error}, {"error", s.error ? error_json(*s.error) : json(nullptr)}});
    const auto& l = d.location;
    devices.push_back({{"device", d.device},
                       {"location", {{"pci_address", l.pci_address}, {"root_complex", l.root_complex},
                                     {"smmu", l.smmu}, {"stream_id", l.stream_id ? json(*l.stream_id) : json(nullptr)}}},
                       {"verdict", to_string(d.verdict)},
                       {"reason", d.reason},
                       {"advice", d.advice},
                       {"steps", steps},
                       {"hw_info", d.hw_info ? hw_info_json(*d.hw_info) : json(nullptr)},
                       {"features", d.features ? features_json(*d.features) : json(nullptr)},
                       {"dirty_tracking", dirty_json(d.dirty)},
                       {"nested_dirty_tracking", dirty_json(d.nested_dirty)},
                       {"msi_window", msi_window_json(d)}});
  }
  json smmus = json::array();
  for (const auto& g : r.smmus) {
    json names = json::array();
    for (auto i : g.devices) names.push_back(r.devices[i].device);
    smmus.push_back({{"name", g.name},
                     {"named_by_host", g.named_by_host},
                     {"devices", names},
                     {"features", features_json(g.features)},
                     {"guest_ipa_bits", g.guest ? json(smmu::address_bits(g.guest->idr5.get(smmu::Idr5::OAS))) : json(nullptr)},
                     {"auto", auto_json(g.auto_values)},
                     {"guest_id_registers", g.guest ? guest_json(*g.guest) : json(nullptr)},
                     {"guest_error", g.guest ? json(nullptr) : error_json(g.guest.error())}});
  }
  return {{"host", r.host},
          {"devices", devices},
          {"smmus", smmus},
          {"possible", r.possible()},
          {"all_possible", r.all_possible()}};
}

void print_text(const ProbeReport& r) {
  fmt::print("host: {}\n", r.host);
  for (const auto& d : r.devices) {
    fmt::print("\n{}\n", d.where());
    switch (d.verdict) {
      case NestingVerdict::possible: fmt::print("  nesting: possible\n"); break;
      case NestingVerdict::not_possible: fmt::print("  nesting: not possible: {}\n", d.reason); break;
      case NestingVerdict::unknown: fmt::print("  nesting: unknown, the probe failed: {}\n", d.reason); break;
    }
    if (!d.advice.empty()) fmt::print("  what to do: {}\n", d.advice);
    if (d.features) fmt::print("  physical SMMU: {}\n", d.features->summary());
    std::vector<std::string> done;
    for (const auto& s : d.steps)
      if (!s.error) done.push_back(s.name);
    if (!done.empty()) fmt::print("  done: {}\n", fmt::join(done, ", "));
    for (const auto& s : d.steps)
      if (s.error) fmt::print("  refused: {}: {}\n", s.name, s.error->to_string());
    if (d.dirty) fmt::print("  dirty tracking (DIRTY_TRACKING): {}: {}\n", d.dirty->available ? "yes" : "no", d.dirty->detail);
    if (d.nested_dirty)
      fmt::print("  nested dirty tracking (NEST_PARENT|DIRTY_TRACKING): {}: {}\n", d.nested_dirty->available ? "yes" : "no",
                 d.nested_dirty->detail);
    if (d.msi_window)
      fmt::print("  host MSI window: {} (the guest's IORT RMR / DT reserved-memory must map it 1:1; guest RAM must "
                 "avoid it){}\n", host::to_string(*d.msi_window),
                 d.msi_window_check.empty() ? "" : fmt::format("; {}", d.msi_window_check));
    else if (d.msi_window_error)
      fmt::print("  host MSI window: unknown: {}\n", d.msi_window_error->to_string());
    else
      fmt::print("  host MSI window: none reported\n");
  }
  for (const auto& g : r.smmus) {
    std::vector<std::string> names;
    for (auto i : g.devices) names.push_back(r.devices[i].device);
    fmt::print("\n{}: {}\n", g.name, fmt::join(names, ", "));
    if (!g.guest) {
      fmt::print("  guest ID registers (every wish auto): none: {}\n", g.guest.error().message);
      continue;
    }
    for (const auto& a : g.auto_values) fmt::print("  {} auto -> {}: {}\n", auto_name(a.field), auto_text(a), a.why);
    const auto& v = *g.guest;
    fmt::print("  guest ID registers (every wish auto): IDR0 {:#010x} IDR1 {:#010x} IDR3 {:#010x} IDR5 {:#010x} IIDR {:#010x} "
               "AIDR {:#010x}\n    {}\n    {}\n    {}\n    {}\n",
               v.idr0.value(), v.idr1.value(), v.idr3.value(), v.idr5.value(), v.iidr.value(), v.aidr.value(), v.idr0,
               v.idr1, v.idr3, v.idr5);
  }
  fmt::print("\nsummary: {} of {} devices can nest\n", r.possible(), r.devices.size());
}

}  // namespace

int probe_command(std::span<const std::string_view> args) {
  int status = kOk;
  auto o = parse(args, status);
  if (!o) return status;

  auto opened = open_host(o->host, o->devices);
  if (!opened)
    return unusable(opened.error(), o->host.sim || opened.error().where != "open"
                                        ? ""
                                        : "\n(`vsmmu probe --host sim` shows what the probe reports on a simulated host)");
  const auto& h = opened->host;
  o->devices = opened->devices;
  const auto report = probe(*h, o->devices);
  if (o->json)
    fmt::print("{}\n", report_json(report).dump(2));
  else
    print_text(report);
  return report.all_possible() ? kOk : kProblems;
}

}  // namespace vsmmu::tools

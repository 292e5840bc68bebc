#include "tools/host_choice.hpp"

#include <algorithm>
#include <cerrno>

#include <fmt/format.h>

#include "acpi/spec_text.hpp"
#include "base/try.hpp"
#include "host/handles.hpp"
#include "host/kernel/kernel_host.hpp"
#include "host/sim/sim_host.hpp"

namespace vsmmu::tools {

Result<bool> HostChoice::take(std::span<const std::string_view> args, std::size_t& i) {
  const auto a = args[i];
  if (a != "--host" && a != "--hardware") return false;
  if (i + 1 >= args.size()) return fail(EINVAL, "host", "{} needs a value", a);
  const std::string v(args[++i]);
  if (a == "--hardware") {
    hardware = v;
  } else if (v == "kernel") {
    given = true;
    sim = false;
  } else if (v == "sim" || v.starts_with("sim:")) {
    given = sim = true;
    if (v.size() > 4) kernel_profile = v.substr(4);
  } else {
    return fail(EINVAL, "host", "--host {}: expected kernel, sim or sim:PROFILE", v);
  }
  return true;
}

Result<void> HostChoice::check() const {
  if (hardware && !sim)
    return fail(EINVAL, "host", "--hardware describes the simulated host; add --host sim{}",
                given ? " instead of --host kernel" : "");
  return {};
}

Result<OpenedHost> open_host(const HostChoice& choice, std::vector<std::string> devices) {
  OpenedHost o;
  if (choice.sim) {
    VSMMU_TRY_ASSIGN(auto kernel, host::sim::resolve_kernel_profile(choice.kernel_profile));
    VSMMU_TRY_ASSIGN(auto hardware, host::sim::resolve_hardware_profile(choice.hardware.value_or("default")));
    if (devices.empty())
      for (const auto& d : hardware.devices) devices.push_back(d.name);
    VSMMU_TRY_ASSIGN(o.host, host::sim::SimHost::create(std::move(kernel), std::move(hardware)));
  } else {
    VSMMU_TRY_ASSIGN(o.host, host::KernelHost::open());
    if (devices.empty()) devices = host::KernelHost::vfio_devices();
    if (devices.empty())
      return fail(ENOENT, "host",
                  "no VFIO device cdev in /dev/vfio/devices: bind the devices to vfio-pci on a kernel with "
                  "CONFIG_VFIO_DEVICE_CDEV=y, or name them (0000:01:00.0)");
  }
  o.devices = std::move(devices);
  return o;
}

Result<std::vector<host::IovaRange>> host_msi_windows(host::Host& host, std::span<const std::string> devices) {
  std::vector<host::IovaRange> windows;
  for (const auto& d : devices) {
    auto id = host.bind_device(d);
    if (!id)
      return fail(id.error().err, "host", "cannot read the MSI window of {} on {}: {}; pass --msi-window BASE,SIZE",
                  d, host.name(), id.error().to_string());
    host::BoundDevice bound(host, *id);
    auto regions = host.reserved_regions(*id);
    if (!regions)
      return fail(regions.error().err, "host", "cannot read the MSI window of {} on {}: {}; pass --msi-window BASE,SIZE",
                  d, host.name(), regions.error().to_string());
    if (auto w = host::msi_window(*regions); w && std::find(windows.begin(), windows.end(), *w) == windows.end())
      windows.push_back(*w);
  }
  if (windows.empty())
    return fail(ENOENT, "host", "{} reports no MSI window for {}; pass --msi-window BASE,SIZE",
                host.name(), devices.empty() ? std::string("any device (none given)") : fmt::format("{}", fmt::join(devices, ", ")));
  std::sort(windows.begin(), windows.end());
  return windows;
}

Result<std::vector<host::IovaRange>> host_msi_windows(const HostChoice& choice, std::vector<std::string> devices) {
  VSMMU_TRY(choice.check());
  auto opened = open_host(choice, std::move(devices));
  if (!opened)
    return fail(opened.error().err, "host", "{}; without a host to read the MSI window from, pass --msi-window "
                "BASE,SIZE", opened.error().message);
  return host_msi_windows(*opened->host, opened->devices);
}

Result<std::vector<host::IovaRange>> parse_msi_windows(std::string_view text) {
  std::vector<std::uint64_t> numbers;
  while (true) {
    const auto comma = text.find(',');
    VSMMU_TRY_ASSIGN(auto n, acpi::text::number(text.substr(0, comma), "MSI window"));
    numbers.push_back(n);
    if (comma == std::string_view::npos) break;
    text.remove_prefix(comma + 1);
  }
  if (numbers.size() % 2 != 0)
    return fail(EINVAL, "msi-window", "--msi-window takes BASE,SIZE pairs; {} numbers given", numbers.size());
  std::vector<host::IovaRange> out;
  for (std::size_t i = 0; i < numbers.size(); i += 2) {
    const std::uint64_t base = numbers[i], size = numbers[i + 1];
    if (size == 0 || base + size - 1 < base)
      return fail(EINVAL, "msi-window", "the MSI window {:#x},{:#x} is empty or wraps past 2^64", base, size);
    out.push_back(host::IovaRange{base, base + size - 1});
  }
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace vsmmu::tools

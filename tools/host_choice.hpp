// The host a vsmmu command works on, as `--host kernel|sim[:PROFILE]` and `--hardware FILE|NAME` choose it
// (vsmmu probe, iort gen, dt gen), the devices it has, and what the guest's firmware tables need from it: the
// host's MSI windows (Host::reserved_regions; docs/interrupts.md).
#pragma once

#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.hpp"
#include "host/host.hpp"

namespace vsmmu::tools {

struct HostChoice {
  bool sim = false;                       // the command's default decides (probe: kernel; iort/dt gen: sim)
  bool given = false;                     // --host was given
  std::string kernel_profile = "upstream";
  std::optional<std::string> hardware;

  // Takes args[i] (and its value, advancing i) when it is --host or --hardware: true if taken, an EINVAL naming
  // the option when its value is missing or wrong, false for any other argument.
  Result<bool> take(std::span<const std::string_view> args, std::size_t& i);
  // --hardware without the simulated host: EINVAL saying so.
  Result<void> check() const;
};

struct OpenedHost {
  std::unique_ptr<host::Host> host;
  std::vector<std::string> devices;       // those asked for, or every device the host has
};

// Opens the chosen host. Without devices named: every device of the simulated host's profile, or every VFIO
// cdev of the kernel host (none: ENOENT saying how to get one).
Result<OpenedHost> open_host(const HostChoice& choice, std::vector<std::string> devices);

// The host's distinct MSI windows of `devices`, lowest first: each device is bound, its reserved regions read,
// and unbound. Fails naming the device and saying to pass --msi-window when one cannot be bound or read, or when
// none has a window.
Result<std::vector<host::IovaRange>> host_msi_windows(host::Host& host, std::span<const std::string> devices);

// The same on the host `choice` opens (its devices, or all of them); a host that cannot be opened is refused
// saying to pass --msi-window.
Result<std::vector<host::IovaRange>> host_msi_windows(const HostChoice& choice, std::vector<std::string> devices);

// "--msi-window BASE,SIZE[,BASE,SIZE...]" as the firmware-table commands take it: windows, lowest first.
Result<std::vector<host::IovaRange>> parse_msi_windows(std::string_view text);

}  // namespace vsmmu::tools

// A PCI function's address, "segment:bus:device.function", the one parser of it for every host backend.
// Linux names a PCI function "%04x:%02x:%02x.%d" (domain, bus, slot, function: drivers/pci/probe.c,
// pci_setup_device's dev_set_name), which is its directory under /sys/bus/pci/devices/ and what `lspci -D`
// prints; plain `lspci` leaves the domain out ("01:00.0"). Linux's PCI domain is the ACPI segment group.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "base/error.hpp"

namespace vsmmu::host {

struct Bdf {
  std::uint32_t segment = 0;   // PCI segment (Linux: domain); 16 bits in ACPI, wider for VMD domains
  std::uint8_t bus = 0;
  std::uint8_t device = 0;     // 0..31
  std::uint8_t function = 0;   // 0..7
  // The requester ID within the segment: bus[15:8], device[7:3], function[2:0] (PCIe Base Spec, "Routing ID").
  std::uint16_t rid() const { return static_cast<std::uint16_t>(bus << 8 | device << 3 | function); }
  // As sysfs names it: "0000:01:00.0", lower-case hexadecimal.
  std::string to_string() const;
};

struct ParsedBdf {
  Bdf bdf;
  bool has_segment = false;  // false: the short form "BB:DD.F", segment 0 until the caller knows better
};

// Accepts "SSSS:BB:DD.F" (a segment of 4 to 8 hex digits) and "BB:DD.F": hexadecimal in either case, bus and
// device of exactly two digits, device <= 1f, function one digit 0-7, nothing before or after. EINVAL otherwise,
// the message naming the text and the forms allowed.
Result<ParsedBdf> parse_bdf(std::string_view text);

}  // namespace vsmmu::host

// The uncompressed "newc" cpio archive (SVR4 with no CRC, magic 070701) that Linux's initramfs unpacker
// and its ACPI table upgrade (CONFIG_ACPI_TABLE_UPGRADE, drivers/acpi/tables.c) read from the front of
// an initrd. Only what a table override needs: directories and regular files, owned by root.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace vsmmu::acpi::cpio {

struct Entry {
  std::string path;                // relative, '/'-separated, e.g. "kernel/firmware/acpi/IORT.aml"
  std::uint32_t mode = 0100644;    // file type and permission bits (040755 for a directory)
  std::vector<std::uint8_t> data;  // empty for a directory
};

// The archive: each entry's 110-byte ASCII header, its NUL-terminated name and data each padded to 4
// bytes, the TRAILER!!! entry, and zero padding to a 512-byte block as GNU cpio writes it.
std::vector<std::uint8_t> newc(std::span<const Entry> entries);

// The entries for one ACPI table override: the directories kernel/, kernel/firmware/,
// kernel/firmware/acpi/ and kernel/firmware/acpi/<SIGNATURE>.aml holding `table`.
std::vector<Entry> acpi_override(std::string_view signature, std::span<const std::uint8_t> table);

}  // namespace vsmmu::acpi::cpio

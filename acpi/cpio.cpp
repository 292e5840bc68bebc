#include "acpi/cpio.hpp"

#include <fmt/format.h>

namespace vsmmu::acpi::cpio {
namespace {

void pad(std::vector<std::uint8_t>& out, std::size_t align) {
  while (out.size() % align) out.push_back(0);
}

void append_entry(std::vector<std::uint8_t>& out, std::uint32_t ino, std::string_view name, std::uint32_t mode,
                  std::uint32_t nlink, std::span<const std::uint8_t> data) {
  // Fields in order: ino, mode, uid, gid, nlink, mtime, filesize, devmajor, devminor, rdevmajor,
  // rdevminor, namesize (with the NUL), check; each 8 hex digits. mtime 0 keeps archives reproducible.
  const auto header = fmt::format("070701{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}",
                                  ino, mode, 0, 0, nlink, 0, data.size(), 0, 0, 0, 0, name.size() + 1, 0);
  out.insert(out.end(), header.begin(), header.end());
  out.insert(out.end(), name.begin(), name.end());
  out.push_back(0);
  pad(out, 4);
  out.insert(out.end(), data.begin(), data.end());
  pad(out, 4);
}

}  // namespace

std::vector<std::uint8_t> newc(std::span<const Entry> entries) {
  std::vector<std::uint8_t> out;
  std::uint32_t ino = 1;
  for (const auto& e : entries) {
    const bool dir = (e.mode & 0170000) == 0040000;
    append_entry(out, ino++, e.path, e.mode, dir ? 2 : 1, e.data);
  }
  append_entry(out, 0, "TRAILER!!!", 0, 1, {});
  pad(out, 512);
  return out;
}

std::vector<Entry> acpi_override(std::string_view signature, std::span<const std::uint8_t> table) {
  return {
      Entry{"kernel", 040755, {}},
      Entry{"kernel/firmware", 040755, {}},
      Entry{"kernel/firmware/acpi", 040755, {}},
      Entry{fmt::format("kernel/firmware/acpi/{}.aml", signature), 0100644, {table.begin(), table.end()}},
  };
}

}  // namespace vsmmu::acpi::cpio

// Reading and writing whole table files with errors as values (the CLI and tests share them).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "base/error.hpp"

namespace vsmmu::acpi {

// The whole file; fails with the errno of open/read (ENOENT, EACCES ...), naming the path.
Result<std::vector<std::uint8_t>> read_file(const std::string& path);
// Creates or truncates `path` and writes `bytes`; fails with the errno of open/write/close.
Result<void> write_file(const std::string& path, std::span<const std::uint8_t> bytes);

}  // namespace vsmmu::acpi

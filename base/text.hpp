#pragma once
// Counts as messages write them: "1 error", "2 errors", "0 warnings".
#include <cstddef>
#include <string>
#include <string_view>

#include <fmt/format.h>

namespace vsmmu {

// `n` and the noun, plural unless n is 1; `many` for a noun whose plural is not noun + "s".
inline std::string counted(std::size_t n, std::string_view one, std::string_view many = {}) {
  if (n == 1) return fmt::format("1 {}", one);
  return many.empty() ? fmt::format("{} {}s", n, one) : fmt::format("{} {}", n, many);
}

}  // namespace vsmmu

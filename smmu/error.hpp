// Errors are values: std::expected<T, Error> at every module boundary. An Error carries the errno a
// caller can branch on, where it happened, and a sentence an operator can act on.
#pragma once

#include <cerrno>
#include <expected>
#include <iosfwd>
#include <string>
#include <utility>

#include <fmt/format.h>

namespace vsmmu {

struct Error {
  int err = EINVAL;      // errno value (the kernel's, or the closest one for a local failure)
  std::string where;     // the call or component: "IOMMU_HWPT_ALLOC", "smmu.walk", "iort.parse"
  std::string message;   // what happened, why, and what to do

  std::string to_string() const;
};

// For test failure messages and any stream-based caller.
std::ostream& operator<<(std::ostream& os, const Error& e);

template <class T>
using Result = std::expected<T, Error>;

template <class... Args>
std::unexpected<Error> fail(int err, std::string where, fmt::format_string<Args...> f, Args&&... args) {
  return std::unexpected(Error{err, std::move(where), fmt::format(f, std::forward<Args>(args)...)});
}

}  // namespace vsmmu

template <>
struct fmt::formatter<vsmmu::Error> : fmt::formatter<std::string_view> {
  auto format(const vsmmu::Error& e, fmt::format_context& ctx) const {
    return fmt::formatter<std::string_view>::format(e.to_string(), ctx);
  }
};

// Errors are values: Result<T> at every module boundary. An Error carries the errno a caller can branch on,
// where it happened, and a sentence an operator can act on. A Result may not be dropped unread ([[nodiscard]]
// on the type: a call whose failure does not matter says so with a (void) cast). Propagation: base/try.hpp.
#pragma once

#include <cerrno>
#include <expected>
#include <iosfwd>
#include <string>
#include <string_view>
#include <utility>

#include <fmt/format.h>

namespace vsmmu {

struct Error {
  int err = EINVAL;      // errno value (the kernel's, or the closest one for a local failure)
  std::string where;     // the call or component: "IOMMU_HWPT_ALLOC", "smmu.walk", "iort.parse"
  std::string message;   // what happened, why, and what to do

  // "where: message (ENAME, errno N)": the errno once, at the end.
  std::string to_string() const;
  // The same failure as the layer above sees it: that layer's `where`, and a message that says what it was
  // doing, then the inner "where: message" once; the errno is kept (and printed once, by to_string).
  [[nodiscard]] Error context(std::string_view outer_where, std::string_view doing) const;
};

// For test failure messages and any stream-based caller.
std::ostream& operator<<(std::ostream& os, const Error& e);

template <class T>
class [[nodiscard]] Result : public std::expected<T, Error> {
 public:
  using std::expected<T, Error>::expected;
  Result() = default;
  Result(std::expected<T, Error> e) : std::expected<T, Error>(std::move(e)) {}  // NOLINT: implicit on purpose
};

template <class... Args>
std::unexpected<Error> fail(int err, std::string where, fmt::format_string<Args...> f, Args&&... args) {
  return std::unexpected(Error{err, std::move(where), fmt::format(f, std::forward<Args>(args)...)});
}

// An inner failure passed up with this layer's context (Error::context): its errno, one errno suffix.
template <class... Args>
std::unexpected<Error> fail(const Error& inner, std::string_view where, fmt::format_string<Args...> f, Args&&... args) {
  return std::unexpected(inner.context(where, fmt::format(f, std::forward<Args>(args)...)));
}

}  // namespace vsmmu

template <>
struct fmt::formatter<vsmmu::Error> : fmt::formatter<std::string_view> {
  auto format(const vsmmu::Error& e, fmt::format_context& ctx) const {
    return fmt::formatter<std::string_view>::format(e.to_string(), ctx);
  }
};

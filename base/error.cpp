#include "base/error.hpp"

#include <cstring>
#include <ostream>

namespace vsmmu {

std::string Error::to_string() const {
  return fmt::format("{}: {} ({}, errno {})", where, message, strerrorname_np(err) ? strerrorname_np(err) : "?", err);
}

Error Error::context(std::string_view outer_where, std::string_view doing) const {
  return Error{err, std::string(outer_where), fmt::format("{}: {}: {}", doing, where, message)};
}

std::ostream& operator<<(std::ostream& os, const Error& e) { return os << e.to_string(); }

}  // namespace vsmmu

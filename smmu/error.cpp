#include "smmu/error.hpp"

#include <cstring>
#include <ostream>

namespace vsmmu {

std::string Error::to_string() const {
  return fmt::format("{}: {} ({}, errno {})", where, message, strerrorname_np(err) ? strerrorname_np(err) : "?", err);
}

std::ostream& operator<<(std::ostream& os, const Error& e) { return os << e.to_string(); }

}  // namespace vsmmu

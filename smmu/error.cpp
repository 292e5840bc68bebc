#include "smmu/error.hpp"

#include <cstring>

namespace vsmmu {

std::string Error::to_string() const {
  return fmt::format("{}: {} ({}, errno {})", where, message, strerrorname_np(err) ? strerrorname_np(err) : "?", err);
}

}  // namespace vsmmu

// What the benchmarks share: setup failures end the benchmark run with the error's message.
#pragma once

#include <stdexcept>
#include <type_traits>
#include <utility>

#include "base/error.hpp"

namespace vsmmu::bench {

template <class T>
T must(Result<T> r) {
  if (!r) throw std::runtime_error(r.error().to_string());
  if constexpr (!std::is_void_v<T>) return std::move(*r);
}

}  // namespace vsmmu::bench

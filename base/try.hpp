// Propagating a failed Result (base/error.hpp) out of a function that returns a Result, in one line.
//   VSMMU_TRY(expr);                    // expr's error is returned; its value (if any) is dropped
//   VSMMU_TRY_ASSIGN(auto x, expr);     // x = expr's value, or expr's error is returned
//   VSMMU_TRY_ASSIGN(existing, expr);   // the same into a variable declared before
// To add this layer's context on the way up, write it out: if (!r) return fail(r.error(), where, "...").
#pragma once

#include <expected>
#include <utility>

#define VSMMU_TRY_CONCAT_(a, b) a##b
#define VSMMU_TRY_CONCAT(a, b) VSMMU_TRY_CONCAT_(a, b)

#define VSMMU_TRY(...)                                                                 \
  do {                                                                                 \
    auto&& vsmmu_try_result_ = (__VA_ARGS__);                                          \
    if (!vsmmu_try_result_) return std::unexpected(std::move(vsmmu_try_result_).error()); \
  } while (0)

#define VSMMU_TRY_ASSIGN_(tmp, lhs, ...)                               \
  auto&& tmp = (__VA_ARGS__);                                          \
  if (!tmp) return std::unexpected(std::move(tmp).error());            \
  lhs = std::move(*tmp)

#define VSMMU_TRY_ASSIGN(lhs, ...) VSMMU_TRY_ASSIGN_(VSMMU_TRY_CONCAT(vsmmu_try_, __LINE__), lhs, __VA_ARGS__)

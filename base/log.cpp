#include "base/log.hpp"

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>

namespace vsmmu::log {
namespace {

Level from_env() {
  const char* v = std::getenv("VSMMU_LOG");
  if (!v) return Level::warn;
  std::string_view s(v);
  if (s == "error") return Level::error;
  if (s == "info") return Level::info;
  if (s == "debug") return Level::debug;
  return Level::warn;
}

std::atomic<int>& level_store() {
  static std::atomic<int> level{static_cast<int>(from_env())};
  return level;
}

constexpr std::string_view name(Level l) {
  switch (l) {
    case Level::error: return "error";
    case Level::warn: return "warn";
    case Level::info: return "info";
    case Level::debug: return "debug";
  }
  return "?";
}

}  // namespace

Level threshold() { return static_cast<Level>(level_store().load(std::memory_order_relaxed)); }
void set_threshold(Level level) { level_store().store(static_cast<int>(level), std::memory_order_relaxed); }

void emit(Level level, std::string_view component, std::string_view message) {
  static std::mutex m;  // whole lines, even from several threads
  std::lock_guard lock(m);
  fmt::print(stderr, "vsmmu {} [{}] {}\n", name(level), component, message);
}

}  // namespace vsmmu::log

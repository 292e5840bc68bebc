// The one logging path: fmt-formatted lines to stderr, filtered by VSMMU_LOG=error|warn|info|debug
// (default warn). Every layer logs through here; nothing formats by hand.
#pragma once

#include <string_view>

#include <fmt/format.h>

namespace vsmmu::log {

enum class Level : int { error = 0, warn = 1, info = 2, debug = 3 };

Level threshold();
void set_threshold(Level level);
void emit(Level level, std::string_view component, std::string_view message);

template <class... Args>
void write(Level level, std::string_view component, fmt::format_string<Args...> f, Args&&... args) {
  if (level <= threshold()) emit(level, component, fmt::format(f, std::forward<Args>(args)...));
}
template <class... Args>
void error(std::string_view component, fmt::format_string<Args...> f, Args&&... args) {
  write(Level::error, component, f, std::forward<Args>(args)...);
}
template <class... Args>
void warn(std::string_view component, fmt::format_string<Args...> f, Args&&... args) {
  write(Level::warn, component, f, std::forward<Args>(args)...);
}
template <class... Args>
void info(std::string_view component, fmt::format_string<Args...> f, Args&&... args) {
  write(Level::info, component, f, std::forward<Args>(args)...);
}
template <class... Args>
void debug(std::string_view component, fmt::format_string<Args...> f, Args&&... args) {
  write(Level::debug, component, f, std::forward<Args>(args)...);
}

}  // namespace vsmmu::log

#include "nesting/stall_table.hpp"

#include <iterator>

namespace vsmmu::nesting {

std::optional<std::uint16_t> StallTable::add(std::uint32_t vsid, std::uint32_t cookie) {
  if (stalls_.size() >= max_) return std::nullopt;
  // Fewer than 2^16 stalls are outstanding (max_ is a 16-bit STALL_MAX), so a free STAG is always found.
  for (;;) {
    const std::uint16_t stag = next_stag_++;
    if (stalls_.emplace(std::pair{vsid, stag}, cookie).second) return stag;
  }
}

std::optional<std::uint32_t> StallTable::take(std::uint32_t vsid, std::uint16_t stag) {
  auto it = stalls_.find({vsid, stag});
  if (it == stalls_.end()) return std::nullopt;
  const std::uint32_t cookie = it->second;
  stalls_.erase(it);
  return cookie;
}

std::vector<std::pair<std::uint16_t, std::uint32_t>> StallTable::take_stream(std::uint32_t vsid) {
  std::vector<std::pair<std::uint16_t, std::uint32_t>> out;
  auto it = stalls_.lower_bound({vsid, 0});
  while (it != stalls_.end() && it->first.first == vsid) {
    out.emplace_back(it->first.second, it->second);
    it = stalls_.erase(it);
  }
  return out;
}

std::vector<std::pair<std::uint32_t, std::uint32_t>> StallTable::take_all() {
  std::vector<std::pair<std::uint32_t, std::uint32_t>> out;
  out.reserve(stalls_.size());
  for (const auto& [key, cookie] : stalls_) out.emplace_back(key.first, cookie);
  stalls_.clear();
  return out;
}

bool StallTable::has_stream(std::uint32_t vsid) const {
  auto it = stalls_.lower_bound({vsid, 0});
  return it != stalls_.end() && it->first.first == vsid;
}

}  // namespace vsmmu::nesting

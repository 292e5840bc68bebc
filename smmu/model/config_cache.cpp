#include "smmu/model/config_cache.hpp"

#include <algorithm>

namespace vsmmu::smmu::model {
namespace {

// Makes room for one more entry: the architecture lets a cache drop an entry whenever it likes.
template <class Map>
void make_room(Map& map, std::size_t capacity) {
  if (!map.empty() && map.size() >= capacity) map.erase(map.begin());
}

}  // namespace

const StreamEntry* ConfigCache::stream(std::uint32_t sid) const {
  auto it = streams_.find(sid);
  return it == streams_.end() ? nullptr : &it->second;
}

const ContextEntry* ConfigCache::context(std::uint32_t sid, std::uint32_t ssid) const {
  auto it = contexts_.find(context_key(sid, ssid));
  return it == contexts_.end() ? nullptr : &it->second;
}

void ConfigCache::insert_stream(std::uint32_t sid, const StreamEntry& e) {
  if (stream_capacity_ == 0) return;
  if (!streams_.contains(sid)) make_room(streams_, stream_capacity_);
  streams_.insert_or_assign(sid, e);
}

void ConfigCache::insert_context(std::uint32_t sid, std::uint32_t ssid, const ContextEntry& e) {
  if (context_capacity_ == 0) return;
  std::uint64_t k = context_key(sid, ssid);
  if (!contexts_.contains(k)) make_room(contexts_, context_capacity_);
  contexts_.insert_or_assign(k, e);
}

void ConfigCache::invalidate_streams(std::uint64_t first_sid, std::uint64_t count) {
  auto in_range = [&](std::uint64_t sid) { return sid >= first_sid && sid - first_sid < count; };
  std::erase_if(streams_, [&](const auto& kv) { return in_range(kv.first); });
  std::erase_if(contexts_, [&](const auto& kv) { return in_range(kv.first >> 32); });
}

void ConfigCache::invalidate_context(std::uint32_t sid, std::uint32_t ssid) { contexts_.erase(context_key(sid, ssid)); }

void ConfigCache::invalidate_contexts(std::uint32_t sid) {
  std::erase_if(contexts_, [&](const auto& kv) { return (kv.first >> 32) == sid; });
}

void ConfigCache::clear() {
  streams_.clear();
  contexts_.clear();
}

}  // namespace vsmmu::smmu::model

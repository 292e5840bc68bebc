// The messages the daemon starts (MSI, NOTICE: REPLY|ASYNC, tag 0) that a Client meets while reading, kept until
// the VMM takes them. At most `max` are kept; beyond, those read are dropped and counted, with what the daemon
// itself dropped (T::dropped), in the `dropped` of the next one kept. Not thread-safe: the Client's mutex guards it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <utility>
#include <vector>

namespace vsmmu::service {

template <class T>  // T has std::uint32_t vsmmu, dropped
class KeptMessages {
 public:
  explicit KeptMessages(std::size_t max) : max_(max) {}

  void keep(T message) {
    if (kept_.size() >= max_) {
      dropped_ += 1 + message.dropped;
      return;
    }
    message.dropped += std::exchange(dropped_, 0);
    kept_.push_back(std::move(message));
  }

  // Those of `vsmmu` (0: every vSMMU), oldest first, at most `max`.
  std::vector<T> take(std::uint32_t vsmmu, std::size_t max) {
    std::vector<T> out;
    for (auto it = kept_.begin(); it != kept_.end() && out.size() < max;) {
      if (vsmmu != 0 && it->vsmmu != vsmmu) {
        ++it;
        continue;
      }
      out.push_back(std::move(*it));
      it = kept_.erase(it);
    }
    return out;
  }

 private:
  std::size_t max_;
  std::deque<T> kept_;
  std::uint32_t dropped_ = 0;  // read but not kept, for the next kept one
};

}  // namespace vsmmu::service

#include "host/handles.hpp"

#include "base/log.hpp"

namespace vsmmu::host {

Result<void> HostObject::reset() {
  if (!host_) return {};
  auto r = host_->destroy(id_);
  if (!r && r.error().err == EBUSY) return r;  // still referenced: keep ownership so a later reset can retry
  host_ = nullptr;
  id_ = 0;
  return r;
}

void HostObject::destroy_logged() {
  if (!host_) return;
  ObjectId id = id_;
  if (auto r = reset(); !r) log::error("host", "destroying object {} failed: {}", id, r.error());
  host_ = nullptr;  // a destructor cannot retry; the error above names what leaked
}

void BoundDevice::unbind_logged() {
  if (!host_) return;
  if (auto r = host_->unbind_device(id_); !r) log::error("host", "unbinding device {} failed: {}", id_, r.error());
  host_ = nullptr;
}

void Attachment::detach_logged() {
  if (!host_) return;
  if (auto r = host_->detach(dev_); !r) log::error("host", "detaching device {} failed: {}", dev_, r.error());
  host_ = nullptr;
}

}  // namespace vsmmu::host

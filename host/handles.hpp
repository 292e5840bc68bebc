// RAII ownership of host objects: whatever path a caller takes, every object it allocated is destroyed,
// in the order the kernel needs (a nested HWPT before its vIOMMU, a vIOMMU before its nest parent ...).
// Compose handles as members declared parent-first: C++ destroys them child-first.
#pragma once

#include <unistd.h>

#include <utility>

#include "host/host.hpp"

namespace vsmmu::host {

// An owned file descriptor.
class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(UniqueFd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  UniqueFd& operator=(UniqueFd&& o) noexcept {
    if (this != &o) {
      reset();
      fd_ = std::exchange(o.fd_, -1);
    }
    return *this;
  }
  ~UniqueFd() { reset(); }
  int get() const { return fd_; }
  int release() { return std::exchange(fd_, -1); }
  void reset() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }
  explicit operator bool() const { return fd_ >= 0; }

 private:
  int fd_ = -1;
};

// One iommufd object (IOAS, HWPT, vIOMMU, vDEVICE, fault queue), destroyed with IOMMU_DESTROY.
class HostObject {
 public:
  HostObject() = default;
  HostObject(Host& host, ObjectId id) : host_(&host), id_(id) {}
  HostObject(HostObject&& o) noexcept : host_(std::exchange(o.host_, nullptr)), id_(std::exchange(o.id_, 0)) {}
  HostObject& operator=(HostObject&& o) noexcept {
    if (this != &o) {
      destroy_logged();
      host_ = std::exchange(o.host_, nullptr);
      id_ = std::exchange(o.id_, 0);
    }
    return *this;
  }
  ~HostObject() { destroy_logged(); }

  ObjectId id() const { return id_; }
  explicit operator bool() const { return host_ != nullptr; }
  // Destroys now and reports the kernel's answer; the handle is empty afterwards either way
  // unless the kernel said EBUSY (still in use), in which case it keeps owning the object.
  Result<void> reset();
  ObjectId release() {
    host_ = nullptr;
    return std::exchange(id_, 0);
  }

 private:
  void destroy_logged();
  Host* host_ = nullptr;
  ObjectId id_ = 0;
};

// A vEVENTQ or fault queue: its fd must be closed before the object can be destroyed (else EBUSY).
class QueueObject {
 public:
  QueueObject() = default;
  QueueObject(Host& host, ObjectId id, int fd) : object_(host, id), fd_(fd) {}
  QueueObject(QueueObject&&) noexcept = default;
  QueueObject& operator=(QueueObject&& o) noexcept {
    if (this != &o) {
      fd_.reset();  // close before the old object is destroyed by the assignment below
      object_ = std::move(o.object_);
      fd_ = std::move(o.fd_);
    }
    return *this;
  }
  ObjectId id() const { return object_.id(); }
  int fd() const { return fd_.get(); }
  explicit operator bool() const { return static_cast<bool>(object_); }

 private:
  // Members die in reverse order: the fd is closed first, then the object destroyed.
  HostObject object_;
  UniqueFd fd_;
};

// A bound VFIO device: unbinding (closing the cdev) makes it block DMA.
class BoundDevice {
 public:
  BoundDevice() = default;
  BoundDevice(Host& host, DeviceId id) : host_(&host), id_(id) {}
  BoundDevice(BoundDevice&& o) noexcept : host_(std::exchange(o.host_, nullptr)), id_(std::exchange(o.id_, 0)) {}
  BoundDevice& operator=(BoundDevice&& o) noexcept {
    if (this != &o) {
      unbind_logged();
      host_ = std::exchange(o.host_, nullptr);
      id_ = std::exchange(o.id_, 0);
    }
    return *this;
  }
  ~BoundDevice() { unbind_logged(); }
  DeviceId id() const { return id_; }
  explicit operator bool() const { return host_ != nullptr; }

 private:
  void unbind_logged();
  Host* host_ = nullptr;
  DeviceId id_ = 0;
};

// A device attached to a page table; detached (blocking DMA) on destruction.
class Attachment {
 public:
  Attachment() = default;
  Attachment(Host& host, DeviceId dev) : host_(&host), dev_(dev) {}
  Attachment(Attachment&& o) noexcept : host_(std::exchange(o.host_, nullptr)), dev_(o.dev_) {}
  Attachment& operator=(Attachment&& o) noexcept {
    if (this != &o) {
      detach_logged();
      host_ = std::exchange(o.host_, nullptr);
      dev_ = o.dev_;
    }
    return *this;
  }
  ~Attachment() { detach_logged(); }
  explicit operator bool() const { return host_ != nullptr; }
  void release() { host_ = nullptr; }

 private:
  void detach_logged();
  Host* host_ = nullptr;
  DeviceId dev_ = 0;
};

}  // namespace vsmmu::host

#include "testing/memfd_ram.hpp"

#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "base/try.hpp"

namespace vsmmu::testkit {

Result<std::unique_ptr<MemfdRam>> MemfdRam::create(std::uint64_t gpa, std::uint64_t size, const char* name) {
  std::unique_ptr<MemfdRam> r(new MemfdRam());
  r->fd_ = host::UniqueFd(::memfd_create(name, MFD_CLOEXEC));
  if (!r->fd_) return fail(errno, "guest RAM", "memfd_create: {}", std::strerror(errno));
  if (::ftruncate(r->fd_.get(), static_cast<off_t>(size)) != 0)
    return fail(errno, "guest RAM", "sizing the memfd to {:#x} bytes: {}", size, std::strerror(errno));
  void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, r->fd_.get(), 0);
  if (p == MAP_FAILED) return fail(errno, "guest RAM", "mapping {:#x} bytes: {}", size, std::strerror(errno));
  r->base_ = static_cast<std::byte*>(p);
  r->gpa_ = gpa;
  r->size_ = size;
  VSMMU_TRY(r->view_.add_borrowed(gpa, std::span(r->base_, size)));
  return r;
}

MemfdRam::~MemfdRam() {
  if (base_) ::munmap(base_, size_);
}

}  // namespace vsmmu::testkit

// Guest RAM as a VMM that talks to vsmmud owns it: a memfd (the fd it sends with ADD_REGION), its mapping in
// this process, and the guest-physical view of that mapping the guest side reads and writes (the scripted
// driver's tables and queues, DMA data). For the demo, the service tests, the e2e program and the benchmarks.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>

#include "base/error.hpp"
#include "host/handles.hpp"
#include "smmu/memory.hpp"

namespace vsmmu::testkit {

class MemfdRam {
 public:
  // [gpa, gpa + size), zero-filled.
  static Result<std::unique_ptr<MemfdRam>> create(std::uint64_t gpa, std::uint64_t size, const char* name = "guest-ram");
  ~MemfdRam();
  MemfdRam(const MemfdRam&) = delete;
  MemfdRam& operator=(const MemfdRam&) = delete;

  int fd() const { return fd_.get(); }
  std::uint64_t gpa() const { return gpa_; }
  std::uint64_t size() const { return size_; }
  smmu::RegionMemory& view() { return view_; }
  std::span<std::byte> bytes() { return {base_, size_}; }

 private:
  MemfdRam() = default;
  host::UniqueFd fd_;
  std::byte* base_ = nullptr;
  std::uint64_t gpa_ = 0, size_ = 0;
  smmu::RegionMemory view_;
};

}  // namespace vsmmu::testkit

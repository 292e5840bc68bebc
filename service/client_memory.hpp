// A client's guest RAM in the daemon: the memfd regions it sent (ADD_REGION), mapped into the daemon and
// into one IOAS as stage 2 (nesting::GuestMemory), on the host that serves the client. Shared by the
// connection and its vSMMUs: the last of them to go unmaps it, so no vSMMU ever reads unmapped memory.
#pragma once

#include <cstdint>
#include <atomic>
#include <map>
#include <memory>
#include <mutex>

#include "host/handles.hpp"
#include "host/host.hpp"
#include "nesting/guest_memory.hpp"

namespace vsmmu::service {

class ClientMemory {
 public:
  // `host` is shared when the client has its own (the kernel host: one iommufd per client).
  static Result<std::shared_ptr<ClientMemory>> create(host::Host& host, std::shared_ptr<host::Host> owned_host);
  ~ClientMemory();

  nesting::GuestMemory& memory() { return *memory_; }
  host::Host& host() { return *host_; }
  // Maps [fd_offset, +length) of the memfd at `gpa`, in the daemon and in the IOAS. The fd is taken.
  Result<void> add(std::uint64_t gpa, std::uint64_t length, host::UniqueFd fd, std::uint64_t fd_offset);
  Result<void> remove(std::uint64_t gpa);
  std::size_t regions() const;

  // ---- the VM's dirty log (live migration; nesting/dirty_tracking.hpp)
  Result<nesting::DirtyStatus> dirty_start();
  Result<void> dirty_stop();
  // DIRTY_GET: maps [bitmap_offset, +DirtyTracker::bitmap_bytes(region size)) of `bitmap_fd` shared and harvests
  // the region's bitmap into it. The region is one of this client's, or one it removed while tracking whose
  // last bits no clearing harvest has taken yet (DirtyTracker::region_removing keeps them).
  Result<nesting::DirtyHarvest> dirty_get(std::uint64_t region_gpa, int bitmap_fd, std::uint64_t bitmap_offset,
                                          std::uint32_t flags);
  // ClientMemory objects alive in this process: each holds one IOAS on the host (DaemonStatsReply).
  static std::size_t live();

 private:
  struct Mapping {
    host::UniqueFd fd;
    void* addr = nullptr;
    std::uint64_t length = 0;
  };
  ClientMemory() = default;

  std::shared_ptr<host::Host> owned_host_;  // destroyed last
  host::Host* host_ = nullptr;
  mutable std::mutex mu_;
  std::map<std::uint64_t, Mapping> mappings_;          // by GPA; outlive memory_
  std::unique_ptr<nesting::GuestMemory> memory_;       // destroyed first (its IOAS mappings, then the IOAS)
  static std::atomic<std::size_t> live_;
};

}  // namespace vsmmu::service

// A VM in a box, for the demo, the benchmarks, the sim tests and the e2e program: guest RAM mapped into the
// host's IOAS, a VirtualSmmu over it, and the scripted guest driver (smmu/driver) bringing the vSMMU up the way
// Linux's arm-smmu-v3 does and then building what a guest builds: CD tables, stage-1 page tables, STEs, and the
// invalidations an unmap needs. It talks to the vSMMU only through SmmuMmio and guest RAM, as a guest does, so
// the vSMMU may as well sit behind vsmmud (create_remote: a service::RemoteVsmmu over guest RAM the VMM maps).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <vector>

#include "nesting/guest_memory.hpp"
#include "nesting/vsmmu_endpoint.hpp"
#include "nesting/virtual_smmu.hpp"
#include "smmu/driver/smmu_driver.hpp"
#include "smmu/table_builder.hpp"

namespace vsmmu::testkit {

struct GuestHarnessConfig {
  nesting::VirtualSmmuConfig vsmmu;
  std::vector<nesting::DeviceSpec> devices;
  std::uint64_t ram_gpa = 0x4000'0000;          // the guest RAM this harness allocates (create)
  std::uint64_t ram_size = 64ULL << 20;
  std::uint64_t table_pool_size = 16ULL << 20;  // at the start of its RAM: stream table, queues, CDs, page tables
  smmu::driver::Options driver;                  // sid_bits follows the vSMMU's SIDSIZE unless set lower
};

class GuestHarness {
 public:
  // Allocates guest RAM (memfd, mapped into a new IOAS), creates the vSMMU and starts the driver.
  static Result<std::unique_ptr<GuestHarness>> create(host::Host& host, const GuestHarnessConfig& config);
  // The same inside RAM that already exists (a second vSMMU of the same VM): uses [gpa, gpa+size) of it.
  static Result<std::unique_ptr<GuestHarness>> create_in(nesting::GuestMemory& memory, std::uint64_t gpa, std::uint64_t size,
                                                         const GuestHarnessConfig& config);

  // The guest inside a vSMMU that lives elsewhere (vsmmud): `ram` is the VMM's own view of guest RAM, which
  // must hold [gpa, gpa+size) and outlive the harness; `sid_bits_hint` the largest vSID's width.
  static Result<std::unique_ptr<GuestHarness>> create_remote(std::unique_ptr<nesting::VsmmuEndpoint> endpoint,
                                                             smmu::RegionMemory& ram, std::uint64_t gpa, std::uint64_t size,
                                                             const GuestHarnessConfig& config);

  ~GuestHarness();

  // Live migration of a remote guest (create_remote): the guest - its driver's state, and its tables, queues and
  // buffers in RAM - goes on against `destination`, a vSMMU on another host that loaded this one's saved state,
  // over `ram`, the destination VMM's copy of guest RAM (which must hold the harness's range and outlive it).
  // Nothing is written to either: a guest does not know it moved. Returns the source's endpoint (the caller
  // destroys the source vSMMU with it).
  Result<std::unique_ptr<nesting::VsmmuEndpoint>> migrate(std::unique_ptr<nesting::VsmmuEndpoint> destination,
                                                          smmu::RegionMemory& ram);

  // In process only (create, create_in).
  nesting::GuestMemory& memory() { return *memory_; }
  nesting::VirtualSmmu& vsmmu() { return *vsmmu_; }
  // Either way.
  nesting::VsmmuEndpoint& endpoint() { return *endpoint_; }
  smmu::driver::SmmuDriver& driver() { return *driver_; }

  // The stage-1 page tables of an address space (ASID), made on first use (4KB granule, 48-bit VA).
  Result<smmu::TableBuilder*> address_space(std::uint16_t asid);
  // Points the device's stream (and substream) at the address space: CD, STE, CFGI_CD + CFGI_STE + CMD_SYNC.
  Result<void> attach(std::uint32_t vsid, std::uint16_t asid, std::uint32_t ssid = 0);
  // Page-aligned guest memory for data buffers (after the table pool), zero-filled.
  Result<std::uint64_t> alloc(std::uint64_t size);
  Result<void> map(std::uint16_t asid, std::uint64_t va, std::uint64_t gpa, std::uint64_t size,
                   const smmu::MapAttributes& attrs = {});
  // Clears the PTEs; with `invalidate`, then TLBI_NH_VA per page (ranges with RIL) + CMD_SYNC, as Linux's
  // io-pgtable + arm_smmu_tlb_inv_range do.
  Result<void> unmap(std::uint16_t asid, std::uint64_t va, std::uint64_t size, bool invalidate = true);
  // The guest's view of its RAM.
  std::span<std::byte> bytes(std::uint64_t gpa, std::uint64_t size);
  // Moves host events into the guest queue (the VMM's job), then reads them as the guest's event handler does.
  Result<smmu::driver::DrainedEvents> events();

  // In process only: moves the guest onto a fresh vSMMU in the same GuestMemory, as a live migration does
  // (nesting/migration.cpp): save_state(), the vSMMU destroyed (its host objects released, its devices
  // unbound), then `devices()` called for the new one's devices - only now, since a VFIO cdev is bound by one
  // open file at a time - and VirtualSmmu::restore() with the same config and the state. The guest driver
  // carries on unchanged: its structures are in guest RAM and the registers are restored. On failure the
  // harness has no vSMMU left and may only be destroyed.
  Result<void> reload(const std::function<std::vector<nesting::DeviceSpec>()>& devices);

 private:
  class MovableRam;       // create_remote: the guest's RAM, replaced by migrate()
  GuestHarness();
  Result<void> start(const GuestHarnessConfig& config, std::uint64_t gpa, std::uint64_t size);
  Result<void> start_driver(const GuestHarnessConfig& config, std::uint64_t gpa, std::uint64_t size);

  nesting::VirtualSmmuConfig vsmmu_config_;  // in process: what reload() creates the next vSMMU with
  std::unique_ptr<nesting::GuestMemory> owned_memory_;
  nesting::GuestMemory* memory_ = nullptr;
  nesting::VirtualSmmu* vsmmu_ = nullptr;                 // in process: endpoint_ is it
  std::unique_ptr<nesting::VsmmuEndpoint> endpoint_;
  smmu::PhysicalMemory* view_ = nullptr;
  smmu::RegionMemory* remote_ram_ = nullptr;
  std::unique_ptr<MovableRam> movable_ram_;               // view_, when remote
  std::uint64_t gpa_ = 0, size_ = 0;
  std::optional<smmu::TablePageAllocator> pool_;
  std::optional<smmu::driver::SmmuDriver> driver_;
  std::map<std::uint16_t, std::unique_ptr<smmu::TableBuilder>> spaces_;
  std::uint64_t data_next_ = 0, data_end_ = 0;
};

}  // namespace vsmmu::testkit

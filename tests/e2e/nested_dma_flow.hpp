// The e2e tier's main flow, shared by the guest program e2e_vsmmu (the real arm-smmu-v3 + iommufd driver on
// QEMU's SMMUv3 and edu device) and the sim test that runs it on the simulated host's "qemu-virt" profile, so
// that the simulator is held to what the real kernel does.
//
// A GuestHarness (guest RAM as a memfd mapped into the IOAS, a VirtualSmmu, the scripted guest driver) over any
// Host; a device with a 4 KiB buffer of its own that copies guest memory in and out (QEMU's edu; a simulated
// DMA engine). Every host-side step goes through the VirtualSmmu, driven by the guest driver:
//   1. GET_HW_INFO and the guest's ID registers derived from it; the driver probes and enables the vSMMU;
//   2. stage 1 maps VA A (a pattern) and VA B; the device copies A -> its buffer -> B; B holds the pattern and
//      no other page changed;
//   2b. live migration within the guest: GuestMemory::dirty().start() is conservative on a host whose SMMU
//       cannot track (QEMU's SMMUv3 has no HTTU; arm-smmu-v3 refuses NEST_PARENT|DIRTY_TRACKING) and says why;
//       one harvest of guest RAM reports every page dirty; stop; the vSMMU's state saved, the vSMMU torn down
//       (its device unbound), the state restored onto a fresh vSMMU in the same guest with the device bound
//       anew; the device copies A -> its buffer -> a page mapped after the load, and a TLBI + CMD_SYNC completes.
//       Steps 3-6 then run on the restored vSMMU;
//   3. unmap B + TLBI_NH_VA + CMD_SYNC: the copy to B is blocked and F_TRANSLATION with the vSID reaches the
//      guest's event queue;
//   4. an ILLEGAL vSTE (stage-2 Config on a stage-1-only vSMMU): C_BAD_STE, and the device's DMA is blocked;
//   5. a command batch with an illegal command at index 2: the commands before it go to the host in one
//      HWPT_INVALIDATE, CMDQ_CONS.ERR = CERROR_ILL at index 2; then edge-case commands the planner forwards,
//      which the host accepts (Linux 7.3 checks no invalidation fields);
//   6. where the device can raise an MSI (FlowOptions::msi): the host's MSI window (Host::reserved_regions on
//      step 1's bind), the same the vSMMU read for the device, reserved in the IOAS; the guest's stage 1 maps it
//      1:1 (as a Linux guest maps an IORT RMR); the host enables the device's MSI, the device raises one and it
//      arrives; without the 1:1 map (unmap + TLBI + CMD_SYNC) the MSI is blocked, F_TRANSLATION at the MSI
//      address reaches the guest's event queue, the vSMMU counts an MSI-window fault and tells the VMM in one
//      notice; a second blocked MSI is counted but no second notice; with the map back the MSI arrives again;
//      MSI disabled;
//   6b. PASIDs: the guest's SSIDSIZE at most the host's; a vSTE with S1CDMax > 0 (a linear CD table in guest RAM,
//       S1DSS substream0): a nested HWPT where the guest's SSIDSIZE allows it (edu's untagged DMA through CD 0),
//       C_BAD_STE naming S1CDMax and SSIDSIZE where not; CFGI_CD with an SSID (CERROR_ILL beyond SSIDSIZE) and
//       CFGI_CD_ALL; the flow's vSTE again and a copy;
//   7. teardown; 7b. the host's kernel on its own (device bound anew): a nested HWPT from a vSTE with S1CDMax > 0,
//      IOMMU_HWPT_INVALIDATE with CFGI_CD(SSID) and CFGI_CD_ALL, a fault queue and a nested HWPT with
//      FAULT_ID_VALID attached (answers reported), the fault fd's read/write/poll/close checked; a vSMMU asking
//      for more SSID bits than the host has is refused; a second vSMMU on the same device after it.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "testing/guest_harness.hpp"
#include "host/host.hpp"
#include "base/error.hpp"

namespace vsmmu::e2e {

// A DMA master with a buffer of its own, as QEMU's edu device (docs/e2e.md). Addresses are IOVAs (here guest
// stage-1 VAs). A transfer the SMMU blocks is not an error of the call: edu cannot tell, so the flow checks
// memory and the guest's event queue.
class CopyDevice {
 public:
  static constexpr std::uint64_t kBufferBytes = 4096;
  virtual ~CopyDevice() = default;
  // Called once the vSMMU has bound the device (a VFIO cdev allows region access only then).
  virtual Result<void> prepare() = 0;
  virtual Result<void> to_device(std::uint64_t iova, std::uint64_t len) = 0;    // RAM -> buffer
  virtual Result<void> from_device(std::uint64_t iova, std::uint64_t len) = 0;  // buffer -> RAM
};

// The physical SMMU the e2e tier runs on: QEMU 11.1's emulated SMMUv3 (-M virt,iommu=smmuv3) as the real
// kernel's IOMMU_GET_HW_INFO reported it. The sim profile "qemu-virt" must report the same.
inline constexpr std::array<std::uint32_t, 6> kQemuSmmuv3Idr = {0x0d44101b, 0x02730010, 0, 0x00001414, 0, 0x74};
inline constexpr std::uint32_t kQemuSmmuv3Iidr = 0;
inline constexpr std::uint32_t kQemuSmmuv3Aidr = 1;

// A device that raises MSIs (QEMU's edu: an MSI capability the host kernel programs when the VMM enables MSI
// through VFIO_DEVICE_SET_IRQS). The host maps its interrupt doorbell into the nest parent's stage 2 inside its
// MSI window and points the device's MSI address there; under nesting that write is a stage-1 input address
// like any DMA, so the guest's stage 1 must map the window 1:1 for the interrupt to arrive.
// The host's MSI window is not the device's to tell: the flow reads it through the Host seam
// (Host::reserved_regions) on a bind of its own, as the vSMMU does on its binding.
class MsiSource {
 public:
  virtual ~MsiSource() = default;
  // MSI on, one vector (edu: an eventfd as its trigger).
  virtual Result<void> enable_msi() = 0;
  // The MSI address the host programmed into the device (an IOVA in the window).
  virtual Result<std::uint64_t> msi_address() = 0;
  // The device raises an interrupt; true if it arrived (edu: the trigger fired) within `wait`. The device's
  // interrupt status is acknowledged afterwards either way.
  virtual Result<bool> raise_and_wait(std::chrono::milliseconds wait) = 0;
  // MSI off, the trigger closed. Harmless when MSI is off.
  virtual Result<void> disable_msi() = 0;
};

struct FlowOptions {
  // The device behind the vSMMU. `bind` is what the vSMMU binds (a cdev fd it takes over, or a path/name);
  // made anew for each vSMMU. `path` names the device for a bind of its own (GET_HW_INFO, the second vSMMU).
  std::function<nesting::DeviceSpec()> bind;
  std::string path;
  std::uint32_t vsid = 0x10;
  // After the first vSMMU is gone: drop what the caller holds on the device (its BAR mapping and cdev fd), so
  // that the kernel unbinds it and a second vSMMU can bind it again.
  std::function<void()> release;
  // Live iommufd objects on the host, where the host can count them (the simulated one); the kernel cannot.
  std::function<std::optional<std::size_t>()> host_objects;
  // How long to wait for the first fault record on the event fds.
  std::chrono::milliseconds event_wait{3000};
  // F_TRANSLATION records one blocked 4 KiB transfer raises: QEMU's DMA goes on after a fault in 4-byte pieces,
  // each translated and recorded on its own (the sim profile's fault_retry_bytes = 4).
  std::uint64_t faults_per_blocked_page = 1024;
  // GET_HW_INFO must report QEMU's SMMUv3 (kQemuSmmuv3*).
  bool expect_qemu_smmuv3 = true;
  // The device's MSIs (step 6), where it has them; without, step 6 is skipped with a note.
  MsiSource* msi = nullptr;
  // How long an MSI may take to reach its trigger (ITS, LPI, the host's handler under TCG), and how long a
  // blocked one is waited for.
  std::chrono::milliseconds msi_wait{5000};
  std::chrono::milliseconds msi_blocked_wait{2000};
};

struct StepResult {
  std::string name;
  bool ok = false;
  std::string detail;
  bool info = false;  // a fact reported, not a check
};

// The flow's steps as they finish, each also handed to `on_step` at once (the guest prints it).
class Report {
 public:
  explicit Report(std::function<void(const StepResult&)> on_step = {}) : on_step_(std::move(on_step)) {}
  bool check(bool ok, std::string name, std::string detail);
  // A fact, not a check (printed as INFO, never failing).
  void note(std::string name, std::string detail);
  const std::vector<StepResult>& steps() const { return steps_; }
  std::size_t failures() const;

 private:
  std::function<void(const StepResult&)> on_step_;
  std::vector<StepResult> steps_;
};

// "PASS name: detail", "FAIL ...", "INFO ...": the lines the e2e program prints.
std::string format_step(const StepResult& s);

void run_nested_dma_flow(host::Host& host, CopyDevice& device, const FlowOptions& options, Report& report);

}  // namespace vsmmu::e2e

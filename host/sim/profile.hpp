// Profiles of the simulated host, as files a user writes (JSON; docs/sim-host.md):
// - a kernel profile says which kernel the simulated host behaves like where kernels differ (today's
//   upstream, or a forward-looking one that accepts NEST_PARENT|DIRTY_TRACKING);
// - a hardware profile says what hardware it has: physical SMMUs (ID registers, S2FWB, HTTU, errata),
//   PCIe root complexes (CANWBS, ATS), devices (name, BDF, StreamID, root complex) and simulated DMA engines.
// Parsing is strict: every unknown key or bad value is an error naming the file, the key and what is allowed.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.hpp"
#include "host/bdf.hpp"
#include "host/sim/its_doorbell.hpp"
#include "host/reserved_regions.hpp"
#include "smmu/model/smmu_model.hpp"
#include "smmu/id_features.hpp"
#include "smmu/registers.hpp"

namespace vsmmu::host::sim {

// Where kernels differ in what the simulated host accepts (docs/kernel-rules.md, "Kernel versions").
struct KernelProfile {
  std::string name;
  std::string description;
  std::string source;  // "embedded" or the file it was read from, for messages

  // IOMMU_HWPT_ALLOC with NEST_PARENT|DIRTY_TRACKING. Upstream refuses it (EOPNOTSUPP: no stage-2 dirty
  // tracking for nesting yet); a forward-looking kernel accepts it when the SMMU has HTTU dirty state and
  // coherent table walks, so live migration of a nested guest can be built and tested today.
  bool nest_parent_dirty_tracking = false;
  // The stricter per-opcode field validation of vIOMMU invalidations in flight upstream (RES0 bits, ASID
  // width, range fields only with RIL, ATC_INV size <= 52, SSID only with SSIDSIZE): EIO when violated.
  bool strict_invalidation_fields = false;
  // Abort and bypass nested HWPTs attach without a vDEVICE (the GBPA case, ~6.19 on); before, ENOENT.
  bool nested_attach_without_vdevice = true;
  // IOMMU_GET_HW_INFO sets IOMMU_HW_CAP_PCI_ATS_NOT_SUPPORTED for a device that cannot use ATS (~7.1 on).
  bool ats_not_supported_capability = true;
  // Attaching a HWPT that has a fault queue to a device that cannot stall fails with EINVAL: kernels whose
  // iommufd_fault_iopf_enable calls iommu_dev_enable_feature(IOMMU_DEV_FEAT_IOPF), which arm-smmu-v3 refuses
  // without master->stall_enabled (~6.11 to ~6.15). Upstream since FEAT_IOPF became a no-op attaches it, and
  // arm_smmu_enable_iopf does nothing for such a device (its faults never reach the queue).
  bool iopf_attach_needs_stall = false;
};

// IDR5.STALL_MAX of a profile SMMU that stalls when the profile does not say.
inline constexpr unsigned kDefaultStallMax = 64;

// One physical SMMUv3: its ID registers as the hardware reports them, after the profile's named settings
// were applied to the base values.
struct SmmuSpec {
  std::string name;
  smmu::model::ModelConfig config;  // ID registers (and the model's cache sizes)
  // Erratum numbers listed in the profile on top of those its IIDR implies (the driver's
  // arm_smmu_device_iidr_probe); see docs/sim-host.md for the ones the simulated driver knows.
  std::vector<std::string> errata;
  // Its driver's software MSI window (IOMMU_RESV_SW_MSI): reserved in an IOAS while one of its devices is
  // attached to a domain there, and reported as the devices' "msi" reserved region. Profile key "msi_window":
  // [base, size]; arm-smmu-v3's MSI_IOVA_BASE/MSI_IOVA_LENGTH unless given.
  IovaRange msi_window = kArmSmmuV3SwMsi;

  smmu::IdFeatures features() const { return smmu::IdFeatures::of(config.ids()); }
  // The StreamID bits the simulated driver's stream table covers: IDR1.SIDSIZE, capped at 2^24 StreamIDs for
  // a 2-level table (a 2^16-entry level 1, as Linux caps it) and 2^16 for a linear one.
  unsigned usable_sid_bits() const;
};

struct RootComplexSpec {
  std::string name;
  std::size_t smmu = 0;        // index into HardwareProfile::smmus
  std::uint16_t segment = 0;   // PCI segment number
  bool canwbs = false;         // IORT memory access flags: CANWBS (coherent, write-back cacheable, shareable)
  bool ats = false;            // IORT ATS attribute: the root complex supports ATS
};

struct DeviceSpec {
  std::string name;
  Bdf bdf;
  std::uint32_t sid = 0;        // physical StreamID (the IORT maps the RID; identity unless "sid" is given)
  std::size_t root_complex = 0; // index into HardwareProfile::root_complexes
  bool ats = false;             // the device has an ATS capability
  unsigned pasid_bits = 0;      // PASID capability width (0: none)
  bool pasid_exec = false;
  bool pasid_priv = false;
  // The firmware says the device tolerates stalled transactions ("dma-can-stall": a DT property, an IORT named
  // component flag, or HiSilicon's PCI quirk for its integrated accelerators). With its SMMU's STALL_MODEL
  // "stall" that makes the driver's master->stall_enabled; "forced" makes every device's.
  bool stall = false;
};

// A simulated DMA master on a device: splits a transfer into bursts, each translated by the SMMU on its own,
// and stops at the first burst that faults (the bursts before it have landed) - unless fault_retry_bytes is
// set: then, as QEMU's DMA helpers do, it goes on through the rest of the transfer in pieces of that size, each
// translated (and, if it faults, recorded) on its own, and the pieces that translate land.
struct DmaEngineSpec {
  std::string name;
  std::size_t device = 0;            // index into HardwareProfile::devices
  std::uint64_t burst_bytes = 4096;  // power of two
  bool privileged = false;           // PnU of its transactions
  std::uint64_t fault_retry_bytes = 0;  // 0: stop at the first fault; else a power of two (QEMU: 4)
};

// The simulated host-physical address space: RAM (the drivers' tables and queues, the memory IOASes map) is
// placed from here up to the SMMUs' smallest OAS; devices' MMIO (the ITS) lies below.
inline constexpr std::uint64_t kHostRamBase = 256ULL << 20;

struct HardwareProfile {
  std::string name;
  std::string description;
  std::string source;
  // The GICv3 ITS the host's MSIs go to (its_doorbell.hpp): its control frame; GITS_TRANSLATER is at
  // its_base + 0x10040. QEMU virt's by default.
  std::uint64_t its_base = ItsDoorbell::kQemuVirtBase;
  std::vector<SmmuSpec> smmus;
  std::vector<RootComplexSpec> root_complexes;
  std::vector<DeviceSpec> devices;
  std::vector<DmaEngineSpec> dma_engines;

  // Lookups by name or, for devices, by BDF ("0000:01:00.0" or "01:00.0").
  std::optional<std::size_t> find_device(std::string_view name_or_bdf) const;
  std::optional<std::size_t> find_dma_engine(std::string_view engine) const;
  std::optional<std::size_t> find_smmu(std::string_view smmu_name) const;
};

// Parses a profile from JSON text; `source` names it in messages (a path, or "embedded:<name>").
Result<KernelProfile> parse_kernel_profile(std::string_view json_text, std::string_view source);
Result<HardwareProfile> parse_hardware_profile(std::string_view json_text, std::string_view source);

// Reads a profile file.
Result<KernelProfile> load_kernel_profile(const std::string& path);
Result<HardwareProfile> load_hardware_profile(const std::string& path);

// The profiles built into the library (the files under host/sim/profiles/, embedded at build time).
// Kernel: "upstream" (the default) and "nested-dirty". Hardware: "default".
Result<KernelProfile> embedded_kernel_profile(std::string_view name);
Result<HardwareProfile> embedded_hardware_profile(std::string_view name);
std::vector<std::string> embedded_kernel_profile_names();
std::vector<std::string> embedded_hardware_profile_names();

// A name of an embedded profile, or a path to a file (anything with a '/' or ending in ".json").
Result<KernelProfile> resolve_kernel_profile(std::string_view name_or_path);
Result<HardwareProfile> resolve_hardware_profile(std::string_view name_or_path);

}  // namespace vsmmu::host::sim

// `vsmmu probe`'s assessment, reusable by the daemon: can this host give a VM a nested SMMUv3, for which
// devices, and if not, exactly why. It reads the physical SMMU's ID registers (GET_HW_INFO), and then proves
// nesting by doing it through the Host seam - IOAS, NEST_PARENT HWPT, attach, vIOMMU, vDEVICE, an abort
// nested HWPT attached - because the kernel's answer (drivers/iommu/arm/arm-smmu-v3/arm-smmu-v3-iommufd.c,
// arm_smmu_get_viommu_size; docs/kernel-rules.md, "vIOMMU allocation")
// depends on things the registers do not show: errata, the IORT's CANWBS, the kernel's configuration. Every
// object it makes is owned by an RAII handle (host/handles.hpp), so each device is left unbound and
// the host holds nothing afterwards, whatever failed.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "host/host.hpp"
#include "nesting/id_registers.hpp"
#include "smmu/id_features.hpp"

namespace vsmmu::nesting {

// What GET_HW_INFO says of the physical SMMU, for the properties nesting depends on: its ID registers decoded
// (IHI 0070 6.3; nesting needs IDR0.S1P and S2P, IDR3.FWB lets the kernel nest without CANWBS, dirty tracking
// needs IDR0.HTTU >= access_dirty and COHACC) and the errata flags the kernel reports with them.
struct SmmuFeatures {
  smmu::IdFeatures id;
  bool errata_repeat_tlbi_cfgi = false; // hw_info flags bit 0

  bool dirty_capable() const { return id.httu_dirty() && id.cohacc; }
  const char* httu_name() const {  // "none", "access", "dirty"
    return id.httu == smmu::Httu::none ? "none" : id.httu == smmu::Httu::access ? "access" : "dirty";
  }
  // "stage 1+2, S2FWB, HTTU dirty, RIL, ATS, SIDSIZE 16, SSIDSIZE 20, OAS 48, granules 4K 16K 64K"
  std::string summary() const;
};

// Fails (EOPNOTSUPP) when the hw_info is not an ARM SMMUv3's.
Result<SmmuFeatures> decode_features(const host::HwInfo& hw);

enum class NestingVerdict {
  possible,      // every step of a nested setup succeeded
  not_possible,  // the host refused a step for a reason that will not go away by retrying
  unknown,       // a step failed for a transient reason (ENOMEM, ...): run the probe again
};
const char* to_string(NestingVerdict v);  // "possible", "not_possible", "unknown"

// One host call the probe made, and the host's answer.
struct ProbeStep {
  std::string name;            // "bind", "GET_HW_INFO", "IOAS", "NEST_PARENT HWPT", ...
  std::optional<Error> error;  // nullopt: it succeeded
};

struct DirtyTracking {
  bool available = false;
  std::string detail;  // why not, or what makes it work
};

struct DeviceReport {
  std::string device;                         // as given: cdev path, BDF, or profile name
  host::DeviceLocation location;
  NestingVerdict verdict = NestingVerdict::unknown;
  std::string reason;                         // empty when possible: the refusal, explained
  std::string advice;                         // what to do about it, when something can be done
  std::vector<ProbeStep> steps;               // in order, up to and including the first failure
  std::optional<host::HwInfo> hw_info;
  std::optional<SmmuFeatures> features;
  std::optional<DirtyTracking> dirty;         // IOMMU_HWPT_ALLOC DIRTY_TRACKING (stage 1, HTTU)
  std::optional<DirtyTracking> nested_dirty;  // NEST_PARENT|DIRTY_TRACKING (stage-2 dirty under nesting)
  // The host's software MSI window for it (Host::reserved_regions; docs/interrupts.md): what the guest's IORT
  // RMR / DT reserved-memory must describe and guest RAM must avoid. nullopt with msi_window_error when the
  // host could not tell, without either when it reports none.
  std::optional<host::IovaRange> msi_window;
  std::optional<Error> msi_window_error;
  // The cross-check with IOMMU_IOAS_IOVA_RANGES once the device is attached to the nest parent: empty when not
  // made, else what it found ("reserved in the IOAS" or the disagreement).
  std::string msi_window_check;

  // "nic0 (0000:01:00.0, root complex pcie0, SMMU smmu0, StreamID 0x100)": the device and what is known of it.
  std::string where() const;
};

// What one wish left on "auto" (VsmmuWishes) gives a guest on a physical SMMU, and why.
struct AutoValue {
  std::string field;                  // "oas_bits", "ipa_bits", "ssid_bits", "ril", "ats", "stall", "msi"
  unsigned value = 0;                 // bits, or 0/1
  std::string why;                    // "the host's", "the host has 52; auto stops at 48", ...
};

// Devices that share a physical SMMU, and what a vSMMU over it would show the guest.
struct SmmuGroup {
  std::string name;                   // the host's name for it, or "SMMU n (identical ID registers)"
  bool named_by_host = false;         // false: grouped by identical ID registers, which two SMMUs may share
  host::HwInfo hw_info;               // capabilities: ATS_NOT_SUPPORTED if any device has it
  SmmuFeatures features;
  std::vector<std::size_t> devices;   // indices into ProbeReport::devices
  Result<GuestIdRegisters> guest = fail(ENODEV, "vsmmu.probe", "not derived");  // derive_id_registers, default wishes
  std::vector<AutoValue> auto_values;  // what `guest` took for each auto wish (empty without `guest`)
};

struct ProbeReport {
  std::string host;                   // Host::name()
  std::vector<DeviceReport> devices;
  std::vector<SmmuGroup> smmus;
  std::size_t possible() const;       // how many devices can nest
  bool all_possible() const { return !devices.empty() && possible() == devices.size(); }
};

// Probes one device: binds it, reads and decodes GET_HW_INFO, builds a nested setup and tries dirty tracking,
// then tears everything down. Never fails: a refusal is the report's verdict.
DeviceReport probe_device(host::Host& host, const std::string& device);

// Probes each device and groups them by physical SMMU.
ProbeReport probe(host::Host& host, const std::vector<std::string>& devices);

}  // namespace vsmmu::nesting

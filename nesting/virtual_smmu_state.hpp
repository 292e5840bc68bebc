// VirtualSmmu's per-device state (private to nesting/virtual_smmu*.cpp, stream_binding.cpp,
// command_execution.cpp, event_forwarding.cpp). Members are declared so that C++ destroys the stream first
// (detach, then its nested HWPT and vDEVICE), then the binding.
#pragma once

#include <optional>
#include <string>

#include "host/handles.hpp"
#include "nesting/viommu.hpp"
#include "nesting/virtual_smmu.hpp"

namespace vsmmu::nesting {

struct VirtualSmmu::Device {
  std::uint32_t vsid = 0;
  std::string name;
  host::BoundDevice bound;
  Viommu* viommu = nullptr;
  Viommu::Stream stream;
  std::optional<std::string> problem;  // why its current configuration was refused, if it was
  // Set when a CFGI_STE* found the translating vSTE unchanged: the host keeps the same nested HWPT (attaching
  // it again changes nothing), so the CDs the STE locates must be invalidated explicitly (IHI 0070 4.3.1).
  bool cds_stale = false;
  // The host's software MSI window for it (Host::reserved_regions), held against guest RAM while it is here.
  std::optional<host::IovaRange> msi_window;
  MsiWindowReservation msi_reservation;
  bool msi_notice_sent = false;  // a stage-1 fault in the window was reported to the VMM
  bool can_stall = false;        // Host::device_can_stall: its nested HWPT may take the fault queue
};

// A device bound to iommufd with its physical SMMU's IOMMU_GET_HW_INFO, before it joins the vSMMU.
struct VirtualSmmu::BoundCandidate {
  std::unique_ptr<Device> dev;
  host::HwInfo hw;
  std::string what;  // device_name(): "vsmmu0 device nic0 (vSID 0x10)"
};

}  // namespace vsmmu::nesting

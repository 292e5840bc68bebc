// VirtualSmmu's host-side state (private to nesting/virtual_smmu*.cpp). Members are declared parent-first so
// C++ destroys them child-first, in the order the kernel needs: a vEVENTQ and nested HWPTs before their
// vIOMMU, the vIOMMU before its nest parent; a device's attachment before its HWPT reference and vDEVICE.
#pragma once

#include <array>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "host/handles.hpp"
#include "host/veventq_reader.hpp"
#include "nesting/virtual_smmu.hpp"

namespace vsmmu::nesting {

// A nested HWPT for one vSTE, shared by every device whose vSTE is identical.
struct VirtualSmmu::NestedHwpt {
  host::HostObject hwpt;
  std::array<std::uint64_t, 2> vste{};
};

struct VirtualSmmu::PhysicalSmmu {
  std::string label;                     // "physical SMMU 1 (first device nic0)"
  host::HwInfo hw;
  bool repeat_invalidations = false;     // hw_info flags: erratum, issue TLBI/CFGI + SYNC twice
  host::HostObject parent;               // NEST_PARENT HWPT on the guest's IOAS: stage 2
  host::HostObject viommu;
  host::HostObject abort_hwpt;           // vSTE {V, Config=abort}
  host::HostObject bypass_hwpt;          // vSTE {V, Config=bypass}: stage 2 only
  std::map<std::array<std::uint64_t, 2>, std::weak_ptr<NestedHwpt>> nested;
  host::QueueObject veventq;             // while the guest's event queue is enabled
  std::optional<host::VeventqReader> reader;
  // Reused per batch: the entries and guest indices bound for this vIOMMU.
  std::vector<smmu::Command> entries;
  std::vector<std::uint32_t> guest_index;
};

struct VirtualSmmu::Device {
  std::uint32_t vsid = 0;
  std::string name;
  host::BoundDevice bound;
  PhysicalSmmu* smmu = nullptr;
  host::HostObject vdevice;
  std::shared_ptr<NestedHwpt> hwpt;      // when translating
  host::Attachment attachment;           // detached (blocking DMA) when destroyed
  StreamState state = StreamState::blocked;
  std::optional<std::string> problem;
  // Set when a CFGI_STE* found the translating vSTE unchanged: the host keeps the same nested HWPT (attaching
  // it again changes nothing), so the CDs the STE locates must be invalidated explicitly (IHI 0070 4.3.1).
  bool cds_stale = false;
};

}  // namespace vsmmu::nesting

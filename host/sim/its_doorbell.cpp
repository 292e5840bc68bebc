#include "host/sim/its_doorbell.hpp"

#include <cstring>

#include "base/log.hpp"

namespace vsmmu::host::sim {

void ItsDoorbell::write(std::uint32_t device_id, std::uint64_t pa, std::span<const std::byte> data) {
  if (pa != translater_pa() || (data.size() != 2 && data.size() != 4)) {
    ++ignored_;
    log::debug("sim.its", "DeviceID {:#x}: a {}-byte write at {:#x} of the ITS translation frame is not an MSI "
               "(GITS_TRANSLATER is {:#x}, written with 2 or 4 bytes); ignored", device_id, data.size(), pa,
               translater_pa());
    return;
  }
  std::uint32_t event_id = 0;
  std::memcpy(&event_id, data.data(), data.size());  // little-endian, zero-extended
  ++counts_[{device_id, event_id}];
  ++total_;
}

void ItsDoorbell::write_without_device(std::uint64_t pa, std::uint64_t bytes) {
  ++ignored_;
  log::debug("sim.its", "a {}-byte write at {:#x} of the ITS translation frame comes from no device; ignored", bytes,
             pa);
}

std::uint64_t ItsDoorbell::delivered(std::uint32_t device_id, std::uint32_t event_id) const {
  auto it = counts_.find({device_id, event_id});
  return it == counts_.end() ? 0 : it->second;
}

}  // namespace vsmmu::host::sim

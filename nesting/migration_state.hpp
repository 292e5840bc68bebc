// A vSMMU's migration state: what a destination needs to give the guest the same SMMU (docs/migration.md).
// Guest RAM travels separately (the VMM copies it); the guest's stream table, CD tables, stage-1 page tables
// and queues live there, so the destination rebuilds its vIOMMUs, vDEVICEs and nested HWPTs from the guest's
// own tables once the registers say where they are.
//
// The format is versioned, self-describing and checked:
//   bytes 0-7    magic "VSMMUSTA"
//   bytes 8-11   format version (kStateFormatVersion), little-endian
//   bytes 12-15  header size (32)
//   bytes 16-23  body size
//   bytes 24-27  CRC-32 (IEEE 802.3, as zlib and Ethernet compute it) of the body
//   bytes 28-31  0
//   body         a CBOR map (RFC 8949) whose keys name what they hold: the ID registers and the programmed
//                registers by their architectural names (IHI 0070 6.3), the devices by vSID, the event
//                records not yet in the guest's queue as their four doublewords (IHI 0070 7.3).
// A reader refuses another version, a short or long blob, a checksum that does not match, and a body that
// lacks a field, each with its own message.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "base/error.hpp"
#include "nesting/id_registers.hpp"
#include "nesting/viommu.hpp"
#include "smmu/event.hpp"
#include "smmu/register_file.hpp"

namespace vsmmu::nesting {

inline constexpr std::uint32_t kStateFormatVersion = 1;
inline constexpr std::size_t kStateHeaderSize = 32;

struct SavedDevice {
  std::uint32_t vsid = 0;
  std::string name;                              // on the source, for messages
  StreamState state = StreamState::blocked;      // what its stream did on the source
};

struct VsmmuState {
  std::string name;                              // the source vSMMU's
  GuestIdRegisters ids;                          // what the guest was promised
  smmu::RegisterState registers;
  std::vector<SavedDevice> devices;              // by vSID
  std::vector<smmu::Event> events;               // host records not yet in the guest's event queue, oldest first
  std::uint64_t events_lost = 0;                 // records the host lost for it, not yet reported as overflow
};

std::vector<std::byte> encode_state(const VsmmuState& state);
// The header around a body (encode_state's last step; the fuzzer seals arbitrary bodies with it).
std::vector<std::byte> seal_state(std::span<const std::byte> body);
// EBADMSG: not a state, truncated, corrupted, or a field missing; EPROTONOSUPPORT: another format version.
Result<VsmmuState> decode_state(std::span<const std::byte> blob);

}  // namespace vsmmu::nesting

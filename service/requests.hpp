// A client's request, decoded and checked against every rule of docs/protocol.md that needs no state: the
// header, the body under the zero-extension rule, the tail, which fds belong (none where none belong, exactly
// one where one is needed), alignments and ranges. The daemon executes only what decode_request returns; the
// fuzzer (tests/fuzz/service) drives it with arbitrary packets.
#pragma once

#include <cstddef>
#include <cstdint>
#include <expected>
#include <optional>
#include <span>
#include <string>
#include <variant>
#include <vector>

#include "service/protocol.hpp"

namespace vsmmu::service {

inline constexpr std::uint64_t kMmioSpan = 0x20000;   // SMMUv3 register pages 0 and 1 (IHI 0070 6.1)
inline constexpr std::uint64_t kRegionAlign = 4096;   // guest RAM regions: page aligned (IOMMU_IOAS_MAP_FILE)
inline constexpr std::size_t kMaxNameLength = 64;     // vSMMU, device and DMA engine names
inline constexpr std::uint64_t kBitmapAlign = 4096;   // DIRTY_GET's bitmap_offset: the daemon maps the file there

// A device as a request names it: on the kernel host by the packet's fd (fd_index 0), on the simulated host
// by name.
struct DeviceRef {
  std::uint32_t vsid = 0;
  std::string name;
  int fd_index = -1;
};

struct HelloArgs { HelloRequest fixed; };
struct CreateArgs {
  CreateRequest fixed;   // policy, wishes (checked by check_wishes), budgets, flags
  std::string name;      // may be empty
  DeviceRef device;
};
struct DestroyArgs {};
struct AddRegionArgs { std::uint64_t gpa = 0, length = 0, fd_offset = 0; };  // the memfd: fd_index 0
struct RemoveRegionArgs { std::uint64_t gpa = 0; };
struct AttachArgs { DeviceRef device; };
struct DetachArgs { std::uint32_t vsid = 0; };
struct MmioReadArgs { std::uint64_t offset = 0; unsigned width = 0; };
struct MmioWriteArgs { std::uint64_t offset = 0, value = 0; unsigned width = 0; bool posted = false; };
struct SetIrqArgs { IrqLine line = IrqLine::eventq; bool has_fd = false; };  // the eventfd: fd_index 0
struct StatsArgs {};
struct SimDmaArgs {
  DmaDirection direction = DmaDirection::write;
  std::uint64_t iova = 0;
  std::uint32_t length = 0;
  std::string engine;
  std::span<const std::byte> data;  // a write's bytes (into the packet)
  std::optional<std::uint32_t> ssid;
};
// Live migration (Header::vsmmu 0 for the dirty log, the vSMMU for its state).
struct DirtyStartArgs {};
struct DirtyStopArgs {};
struct DirtyGetArgs { std::uint64_t region_gpa = 0, bitmap_offset = 0; std::uint32_t flags = 0; };  // fd_index 0
struct SaveStateArgs {};                                          // the file to write: fd_index 0
struct LoadStateArgs { std::uint64_t state_bytes = 0; };          // the file to read: fd_index 0
using RequestArgs = std::variant<HelloArgs, CreateArgs, DestroyArgs, AddRegionArgs, RemoveRegionArgs, AttachArgs,
                                 DetachArgs, MmioReadArgs, MmioWriteArgs, SetIrqArgs, StatsArgs, SimDmaArgs,
                                 DirtyStartArgs, DirtyStopArgs, DirtyGetArgs, SaveStateArgs, LoadStateArgs>;

struct Request {
  Header header;
  RequestArgs args;
};

// What the rules depend on: the host the daemon drives (devices by fd or by name; SIM_DMA only on sim) and the
// largest packet it accepts (a SIM_DMA read's reply must fit in one).
struct DecodeContext {
  HostKind host = HostKind::sim;
  std::uint32_t max_message = 0;
};

// Decodes one packet from a client with the `fds` count that came with it. A refusal names the op, the field
// and the reason; reserved ops (15, 21-31) are refused with ENOSYS, the daemon's own (MSI 13, NOTICE 14) with
// EINVAL.
std::expected<Request, Refusal> decode_request(std::span<const std::byte> packet, std::size_t fds,
                                               const DecodeContext& context);

}  // namespace vsmmu::service

// The vsmmud wire protocol, version 1 (docs/protocol.md): what a VMM and the daemon say to each other over a
// UNIX SOCK_SEQPACKET socket, one message per packet, file descriptors beside it (SCM_RIGHTS).
//
// Every message is a Header, then the body of its op. Both are size-first: Header::size is the whole packet;
// every body begins with its own size, and a body may be followed by a tail (names, DMA data) whose lengths
// the body gives. Structs grow only at their end. The zero-extension rule (as the kernel's
// copy_struct_from_user): a receiver that knows a shorter struct accepts a longer one only if every byte it
// does not know is zero; one that knows a longer struct reads the missing fields as zero. Nothing here is
// unversioned: HELLO agrees on the version and on the limits (fds per message, message size, regions, ...)
// before anything else is accepted. Integers are little-endian (both ends run on one host).
//
// This file is the one definition of the format: the daemon (service/server), both clients and the fuzzer
// parse and build messages only through it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "base/error.hpp"

namespace vsmmu::service {

inline constexpr std::uint32_t kProtocolVersion = 1;
inline constexpr std::uint32_t kMagic = 0x554d4d53;  // "SMMU": the first word of HELLO's body

enum class Op : std::uint16_t {
  hello = 1,
  create_vsmmu = 2,
  destroy_vsmmu = 3,
  add_region = 4,
  remove_region = 5,
  attach_device = 6,
  detach_device = 7,
  mmio_read = 8,
  mmio_write = 9,
  set_irq = 10,
  stats = 11,
  sim_dma = 12,        // the simulated host only: a device's DMA engine reads or writes (tests, the demo)
  msi = 13,            // daemon -> client only (kFeatureMsi): a vSMMU's MSI to an address outside guest RAM
  notice = 14,         // daemon -> client only (kFeatureNotice): a vSMMU's one-line notice for the VMM's operator
  // 15 and 21-31: reserved (docs/protocol.md); the daemon answers ENOSYS.
  dirty_start = 16,    // live migration (docs/migration.md): the VM's dirty log on
  dirty_stop = 17,     //   and off
  dirty_get = 18,      //   one region's dirty bitmap, into the VMM's bitmap file
  save_state = 19,     //   a vSMMU's state, into the VMM's file
  load_state = 20,     //   a saved state, into a vSMMU the guest has not programmed
};
inline constexpr std::uint16_t kLastOp = 31;
std::string_view op_name(std::uint16_t op);
bool op_known(std::uint16_t op);       // defined in version 1 (reserved numbers included)
// 15 and 21-31: numbers held for later ops; version 1 answers them ENOSYS.
bool op_reserved(std::uint16_t op);
// Ops only the daemon sends, unsolicited (REPLY|ASYNC, tag 0): MSI, NOTICE. A client sending one is refused (EINVAL).
bool op_from_daemon(std::uint16_t op);

// Header::flags
inline constexpr std::uint16_t kFlagReply = 1u << 0;   // daemon -> client: the answer to request `tag`
inline constexpr std::uint16_t kFlagPosted = 1u << 1;  // client -> daemon: answer only if it fails (MMIO_WRITE)
inline constexpr std::uint16_t kFlagAsync = 1u << 2;   // daemon -> client: a posted request's failure, or
                                                        //   (with tag 0) a message the daemon starts (MSI, NOTICE)
inline constexpr std::uint16_t kKnownFlags = kFlagReply | kFlagPosted | kFlagAsync;

struct Header {
  std::uint32_t size = 0;      // the whole packet, header included
  std::uint16_t op = 0;        // Op
  std::uint16_t flags = 0;
  std::uint64_t tag = 0;       // chosen by the client; a reply carries its request's
  std::uint32_t vsmmu = 0;     // the vSMMU a request is for (0: none); CREATE's reply names the new one
  std::int32_t status = 0;     // replies: 0, or the errno of the failure (ErrorReply follows); requests: 0
};
static_assert(sizeof(Header) == 24 && std::is_trivially_copyable_v<Header>);

// ---- bodies. Each begins with `size` (its own size as the sender built it); a tail follows at `size`.

// HELLO: the first request on a connection. The client offers a version range and the limits it wants; the
// reply carries the version chosen and the limits the daemon enforces on this connection.
struct HelloRequest {
  std::uint32_t size = sizeof(HelloRequest);
  std::uint32_t magic = kMagic;
  std::uint32_t version_min = kProtocolVersion;
  std::uint32_t version_max = kProtocolVersion;
  std::uint64_t features = 0;             // kFeature* the client can use
  std::uint32_t max_message = 0;          // the largest packet the client accepts (0: no preference)
  std::uint32_t reserved = 0;
};
inline constexpr std::uint64_t kFeaturePostedWrites = 1u << 0;  // MMIO_WRITE with kFlagPosted
inline constexpr std::uint64_t kFeatureSimDma = 1u << 1;        // SIM_DMA (the daemon runs the simulated host)
inline constexpr std::uint64_t kFeatureMigration = 1u << 2;     // DIRTY_START/STOP/GET, SAVE_STATE, LOAD_STATE
inline constexpr std::uint64_t kFeatureMsi = 1u << 3;           // MSI messages; CREATE_VSMMU's MSI wish
inline constexpr std::uint64_t kFeatureNotice = 1u << 4;        // NOTICE messages
inline constexpr std::uint64_t kKnownFeatures =
    kFeaturePostedWrites | kFeatureSimDma | kFeatureMigration | kFeatureMsi | kFeatureNotice;

enum class HostKind : std::uint32_t { sim = 1, kernel = 2 };
struct HelloReply {
  std::uint32_t size = sizeof(HelloReply);
  std::uint32_t version = kProtocolVersion;
  std::uint64_t features = 0;             // offered & supported
  std::uint32_t host = 0;                 // HostKind
  std::uint32_t max_message = 0;          // the largest packet the daemon accepts (and sends)
  std::uint32_t max_fds = 0;              // fds per packet
  std::uint32_t max_vsmmus = 0;           // per connection
  std::uint32_t max_devices = 0;          // per connection, all its vSMMUs together
  std::uint32_t max_regions = 0;          // guest RAM regions per connection
  std::uint32_t max_pending = 0;          // requests in flight before the daemon stops reading
  std::uint32_t reserved = 0;
};

// The VMM's wishes for the guest's ID registers (nesting::VsmmuWishes); a field counts only if its bit is
// set in `present`. A clear bit is "auto": the daemon derives the field from the host (VsmmuWishes says how),
// the default for every field.
struct WireWishes {
  std::uint32_t present = 0;              // kWish* bits
  std::uint8_t ipa_bits = 0, oas_bits = 0, sid_bits = 0, ssid_bits = 0;
  std::uint8_t ril = 0, ats = 0, st_level = 0, tt_endian = 0;
  std::uint8_t gran4k = 0, gran16k = 0, gran64k = 0, cmdq_log2 = 0;
  // msi and stall were reserved (zero), so a daemon that predates one refuses its bit as unknown.
  std::uint8_t eventq_log2 = 0, msi = 0, stall = 0, reserved[1] = {};
};
static_assert(sizeof(WireWishes) == 20 && offsetof(WireWishes, msi) == 17 && offsetof(WireWishes, stall) == 18);
enum : std::uint32_t {
  kWishIpaBits = 1u << 0, kWishOasBits = 1u << 1, kWishSidBits = 1u << 2, kWishSsidBits = 1u << 3,
  kWishRil = 1u << 4, kWishAts = 1u << 5, kWishStLevel = 1u << 6, kWishTtEndian = 1u << 7,
  kWishGran4k = 1u << 8, kWishGran16k = 1u << 9, kWishGran64k = 1u << 10, kWishCmdqLog2 = 1u << 11,
  kWishEventqLog2 = 1u << 12, kWishMsi = 1u << 13, kWishStall = 1u << 14,
  kKnownWishes = (1u << 15) - 1,
};

// A device: on the kernel host its VFIO cdev fd rides in the packet (exactly one); on the simulated host
// its name follows the body (name_len bytes, no fd).
// CREATE_VSMMU: the vSMMU and its first device (the guest's ID registers follow that device's SMMU). Guest RAM
// must be added first: the vSMMU's queues and tables live there. Tail: the vSMMU's name, then the device's.
enum class Policy : std::uint32_t { batched = 0, per_command = 1 };
struct CreateRequest {
  std::uint32_t size = sizeof(CreateRequest);
  std::uint32_t policy = 0;               // Policy
  WireWishes wishes;
  std::uint32_t commands_per_access = 0;  // 0: the daemon's default
  std::uint32_t host_calls_per_access = 0;
  std::uint32_t flags = 0;                // kCreateGbpaAbort, kCreateMsiDelivery
  std::uint32_t vsid = 0;                 // the first device's StreamID in the guest
  std::uint32_t name_len = 0;             // the vSMMU's name (empty: the daemon names it)
  std::uint32_t device_name_len = 0;      // the simulated host's device name
};
inline constexpr std::uint32_t kCreateGbpaAbort = 1u << 0;
// The VMM delivers this vSMMU's MSI messages to the guest's interrupt controller (needs kFeatureMsi): the MSI
// wish's "auto" is then on (nesting::VsmmuWishes::msi_delivery).
inline constexpr std::uint32_t kCreateMsiDelivery = 1u << 1;
inline constexpr std::uint32_t kKnownCreateFlags = kCreateGbpaAbort | kCreateMsiDelivery;
struct CreateReply {
  std::uint32_t size = sizeof(CreateReply);
  std::uint32_t handle = 0;               // the vSMMU, for Header::vsmmu
  std::uint32_t idr[6] = {};              // IDR0-5 as the guest reads them
  std::uint32_t iidr = 0, aidr = 0;
};

// DESTROY_VSMMU on Header::vsmmu: the vSMMU, its devices and its host objects go.
struct DestroyRequest {
  std::uint32_t size = sizeof(DestroyRequest);
  std::uint32_t reserved = 0;
};

// ATTACH_DEVICE (hot-plug) and DETACH_DEVICE on Header::vsmmu. Attach's tail: the device name (sim host).
struct AttachRequest {
  std::uint32_t size = sizeof(AttachRequest);
  std::uint32_t vsid = 0;
  std::uint32_t device_name_len = 0;
  std::uint32_t reserved = 0;
};
struct DetachRequest {
  std::uint32_t size = sizeof(DetachRequest);
  std::uint32_t vsid = 0;
};

// ADD_REGION: guest RAM [gpa, gpa+length) is the memfd (one fd in the packet) from fd_offset; the daemon maps
// it and maps it into the connection's IOAS as stage 2. REMOVE_REGION by its gpa.
struct AddRegionRequest {
  std::uint32_t size = sizeof(AddRegionRequest);
  std::uint32_t reserved = 0;
  std::uint64_t gpa = 0;
  std::uint64_t length = 0;
  std::uint64_t fd_offset = 0;
};
struct RemoveRegionRequest {
  std::uint32_t size = sizeof(RemoveRegionRequest);
  std::uint32_t reserved = 0;
  std::uint64_t gpa = 0;
};

// MMIO on Header::vsmmu: offset from the base of page 0 (page 1 at 0x10000), width 4 or 8. Writes may be
// posted (kFlagPosted): no reply unless they fail, and every later request on that vSMMU sees them done.
struct MmioReadRequest {
  std::uint32_t size = sizeof(MmioReadRequest);
  std::uint32_t width = 0;
  std::uint64_t offset = 0;
};
struct MmioReadReply {
  std::uint32_t size = sizeof(MmioReadReply);
  std::uint32_t reserved = 0;
  std::uint64_t value = 0;
};
struct MmioWriteRequest {
  std::uint32_t size = sizeof(MmioWriteRequest);
  std::uint32_t width = 0;
  std::uint64_t offset = 0;
  std::uint64_t value = 0;
};

// SET_IRQ on Header::vsmmu: the eventfd (one fd in the packet) the daemon signals for an interrupt line; no
// fd clears it.
enum class IrqLine : std::uint32_t { eventq = 0, gerror = 1, cmd_sync = 2 };
struct SetIrqRequest {
  std::uint32_t size = sizeof(SetIrqRequest);
  std::uint32_t line = 0;                 // IrqLine
};

// STATS: with Header::vsmmu, that vSMMU's figures; without, the connection's and the daemon's.
struct StatsRequest {
  std::uint32_t size = sizeof(StatsRequest);
  std::uint32_t reserved = 0;
};
struct VsmmuStatsReply {
  std::uint32_t size = sizeof(VsmmuStatsReply);
  std::uint32_t reserved = 0;
  std::uint64_t host_calls = 0, hwpt_allocs = 0, hwpt_shared = 0, attaches = 0, ste_unchanged = 0;
  std::uint64_t invalidate_calls = 0, forwarded = 0, host_time_ns = 0;
  std::uint64_t commands = 0, coalesced = 0, syncs = 0, ste_reinstalls = 0, command_errors = 0, bad_stes = 0;
  std::uint64_t events = 0, events_lost = 0, deferred = 0;
  std::uint64_t host_objects = 0;         // what the vSMMU holds on the host now
  std::uint64_t posted_failures = 0;      // posted writes that failed (each also sent as a kFlagAsync reply)
  // Appended after version 1 (zero: a daemon that does not report them). The host's MSI window of the vSMMU's
  // devices (docs/interrupts.md): base and size of the lowest, and how many distinct windows its devices have
  // (more than one behind physical SMMUs whose drivers differ); all 0 when the host reports none.
  std::uint64_t msi_window_base = 0, msi_window_size = 0, msi_windows = 0;
  std::uint64_t msi_window_faults = 0;    // stage-1 faults inside a device's window (VirtualSmmuStats)
  // Appended after msi_window_faults: stalls forwarded to the guest and how they ended (VirtualSmmuStats;
  // docs/virtual-smmu.md, "Stalls and I/O page faults").
  std::uint64_t stalls = 0, stalls_resumed = 0, stalls_aborted = 0, stalls_dropped = 0;
};
// What a version-1 daemon sends; a client accepts it, the appended fields reading as zero.
inline constexpr std::size_t kVsmmuStatsReplyV1Size = offsetof(VsmmuStatsReply, msi_window_base);
struct DaemonStatsReply {
  std::uint32_t size = sizeof(DaemonStatsReply);
  std::uint32_t reserved = 0;
  std::uint64_t clients = 0;              // connections now
  std::uint64_t vsmmus = 0;               // vSMMUs now, all connections
  std::uint64_t host_objects = 0;         // host objects the daemon holds now, all connections
  std::uint64_t connection_vsmmus = 0;    // this connection's vSMMUs, regions and host objects
  std::uint64_t connection_regions = 0;
  std::uint64_t connection_host_objects = 0;
  std::uint64_t requests = 0;             // requests served since start, all connections
  std::uint64_t refused = 0;              // requests answered with an error, all connections
  std::uint64_t host_live_objects = 0;    // the simulated host's own count of live iommufd objects (0 on kernel)
};

// SIM_DMA (daemon on the simulated host only): a DMA by the profile's engine at an IOVA through the device's
// SMMU. Tail: engine name, then for a write the data. Reply: DmaReply, then for a read the bytes read.
enum class DmaDirection : std::uint32_t { write = 0, read = 1 };
struct SimDmaRequest {
  std::uint32_t size = sizeof(SimDmaRequest);
  std::uint32_t direction = 0;            // DmaDirection
  std::uint64_t iova = 0;
  std::uint32_t length = 0;               // bytes to move (a write's data is the tail after the name)
  std::uint32_t engine_len = 0;
  std::uint32_t ssid = 0;
  std::uint32_t flags = 0;                // kDmaSsidValid
};
inline constexpr std::uint32_t kDmaSsidValid = 1u << 0;
struct SimDmaReply {
  std::uint32_t size = sizeof(SimDmaReply);
  std::uint32_t faulted = 0;              // 1: the DMA stopped at a fault (the event went to the guest)
  std::uint64_t bytes = 0;                // bytes that landed before the fault
};

// MSI (daemon -> client, kFeatureMsi; Header: REPLY|ASYNC, tag 0, vsmmu = the vSMMU): the vSMMU's MSI write
// (EVENTQ_IRQ_CFG0-2, GERROR_IRQ_CFG0-2, CMD_SYNC CS=IRQ; IHI 0070 3.18) to an address that is not the
// connection's guest RAM (those the daemon writes itself): the VMM delivers it (an ITS doorbell: inject the LPI).
// One raised by a request is sent before that request's reply.
struct MsiMessage {
  std::uint32_t size = sizeof(MsiMessage);
  std::uint32_t reserved = 0;
  std::uint64_t address = 0;              // the doorbell, as the guest programmed it (IRQ_CFG0.ADDR, MSIAddr)
  std::uint32_t data = 0;                 // the payload (IRQ_CFG1, MSIData)
  std::uint32_t dropped = 0;              // MSIs of this connection dropped before this one (the client was
};                                        //   not reading: kMaxQueuedMsis unsent), since the last one sent
static_assert(sizeof(MsiMessage) == 24 && offsetof(MsiMessage, address) == 8 && offsetof(MsiMessage, data) == 16);
// The daemon queues at most this many unsent MSIs per connection; more are dropped (and counted in `dropped`).
inline constexpr std::uint32_t kMaxQueuedMsis = 256;

// NOTICE (daemon -> client, kFeatureNotice; Header: REPLY|ASYNC, tag 0, vsmmu = the vSMMU): a one-line notice
// for the VMM's operator (nesting/notice.hpp), which the daemon also logs at warning. Tail: the text, text_len
// bytes (at most kMaxNoticeText; the daemon cuts a longer one), no NUL.
struct NoticeMessage {
  std::uint32_t size = sizeof(NoticeMessage);
  std::uint32_t kind = 0;                 // nesting::NoticeKind (1: msi_window_fault)
  std::uint32_t vsid = 0;                 // the device it concerns
  std::uint32_t dropped = 0;              // notices of this connection dropped before this one (not reading)
  std::uint32_t text_len = 0;
  std::uint32_t reserved = 0;
};
static_assert(sizeof(NoticeMessage) == 24 && offsetof(NoticeMessage, text_len) == 16);
inline constexpr std::uint32_t kMaxNoticeText = 1024;
// Like MSIs, a notice is dropped when this many packets wait unsent (the client is not reading).
inline constexpr std::uint32_t kMaxQueuedNotices = kMaxQueuedMsis;

// ---- live migration (docs/migration.md; docs/protocol.md "Live migration")

// DIRTY_START (Header::vsmmu 0): the VM-wide dirty log of the connection's guest RAM, every nest parent of its
// vSMMUs (nesting/dirty_tracking.hpp). EALREADY when it is on.
struct DirtyStartRequest {
  std::uint32_t size = sizeof(DirtyStartRequest);
  std::uint32_t flags = 0;                // none defined: 0
};
// How the daemon tracks (DirtyStartReply::mode): the nest parents in hardware (exactly the pages written), or
// conservatively (every page of every region dirty in every round; the reason says which nest parent cannot).
enum class DirtyLogMode : std::uint32_t { hardware = 1, conservative = 2 };
struct DirtyStartReply {
  std::uint32_t size = sizeof(DirtyStartReply);
  std::uint32_t mode = 0;                 // DirtyLogMode
  std::uint32_t parents = 0;              // nest parents on the VM's IOAS
  std::uint32_t tracking = 0;             //   of which track dirty pages in hardware
  std::uint32_t reason_len = 0;           // the tail: why conservative (empty for hardware)
};
// DIRTY_STOP (Header::vsmmu 0): the dirty log off; what was not harvested is forgotten. Reply: EmptyReply.
struct DirtyStopRequest {
  std::uint32_t size = sizeof(DirtyStopRequest);
  std::uint32_t reserved = 0;
};
// DIRTY_GET (Header::vsmmu 0): the dirty bitmap of the region that starts at region_gpa (bit i: the page at
// region_gpa + i * 4 KiB, bit i % 8 of byte i / 8), written into the packet's one fd (the VMM's bitmap file)
// at bitmap_offset, DirtyTracker::bitmap_bytes(region size) bytes; cleared unless kDirtyGetNoClear.
struct DirtyGetRequest {
  std::uint32_t size = sizeof(DirtyGetRequest);
  std::uint32_t flags = 0;                // kDirtyGetNoClear
  std::uint64_t region_gpa = 0;
  std::uint64_t bitmap_offset = 0;        // a multiple of 4096 (it is mapped)
};
inline constexpr std::uint32_t kDirtyGetNoClear = 1u << 0;       // report without clearing
struct DirtyGetReply {
  std::uint32_t size = sizeof(DirtyGetReply);
  std::uint32_t flags = 0;                // kDirtyConservative, kDirtyRemoved
  std::uint64_t pages = 0;                // bits that describe the region
  std::uint64_t dirty = 0;                // of which set
};
inline constexpr std::uint32_t kDirtyConservative = 1u << 0;     // every page reported (no exact information)
inline constexpr std::uint32_t kDirtyRemoved = 1u << 1;          // the region was removed: its last bits
// SAVE_STATE on Header::vsmmu: the vSMMU's state (nesting/migration_state.hpp) written into the packet's one fd
// (a memfd: truncated to the state's length, written from offset 0).
struct SaveStateRequest {
  std::uint32_t size = sizeof(SaveStateRequest);
  std::uint32_t reserved = 0;
};
struct SaveStateReply {
  std::uint32_t size = sizeof(SaveStateReply);
  std::uint32_t reserved = 0;
  std::uint64_t state_bytes = 0;          // the state's length in the file
};
// LOAD_STATE on Header::vsmmu (created, its devices attached, not programmed by the guest): state_bytes read
// from offset 0 of the packet's one fd. Reply: EmptyReply.
struct LoadStateRequest {
  std::uint32_t size = sizeof(LoadStateRequest);
  std::uint32_t flags = 0;                // none defined: 0
  std::uint64_t state_bytes = 0;          // 1 to kMaxStateBytes
};
// The largest state LOAD_STATE reads (E2BIG above): a vSMMU's state is its registers, its devices and the event
// records the host held for it, kilobytes in practice.
inline constexpr std::uint64_t kMaxStateBytes = 64ULL << 20;
// The layouts docs/protocol.md gives (the size-first rule lets them grow only at their end).
static_assert(sizeof(DirtyStartRequest) == 8 && sizeof(DirtyStartReply) == 20 && offsetof(DirtyStartReply, reason_len) == 16);
static_assert(sizeof(DirtyStopRequest) == 8);
static_assert(sizeof(DirtyGetRequest) == 24 && offsetof(DirtyGetRequest, region_gpa) == 8 &&
              offsetof(DirtyGetRequest, bitmap_offset) == 16);
static_assert(sizeof(DirtyGetReply) == 24 && offsetof(DirtyGetReply, pages) == 8 && offsetof(DirtyGetReply, dirty) == 16);
static_assert(sizeof(SaveStateRequest) == 8 && sizeof(SaveStateReply) == 16 && offsetof(SaveStateReply, state_bytes) == 8);
static_assert(sizeof(LoadStateRequest) == 16 && offsetof(LoadStateRequest, state_bytes) == 8);

// The success reply of the requests that return nothing else (DESTROY_VSMMU, ADD_REGION, REMOVE_REGION,
// ATTACH_DEVICE, DETACH_DEVICE, a non-posted MMIO_WRITE, SET_IRQ, DIRTY_STOP, LOAD_STATE): a body of its size
// alone.
struct EmptyReply {
  std::uint32_t size = sizeof(EmptyReply);
};

// Every failed request is answered with Header::status = errno and this body; tail: the field, then the reason.
struct ErrorReply {
  std::uint32_t size = sizeof(ErrorReply);
  std::uint16_t op = 0;                   // the request's op
  std::uint16_t reserved = 0;
  std::uint32_t field_len = 0;
  std::uint32_t reason_len = 0;
};

// ---- parsing and building

// What the daemon (or a client) refuses in a message: the request, the field, why.
struct Refusal {
  int err = EINVAL;
  std::uint16_t op = 0;
  std::string field;
  std::string reason;
  std::string to_string() const;   // "CREATE_VSMMU: wishes.sid_bits: ..."
};

// One received packet, checked at the header level, with the fds that came with it (owned by the caller).
struct Packet {
  Header header;
  std::span<const std::byte> body;  // after the header
};

// Checks the header of a received packet: its size equals the packet's, flags and op known for the
// direction (`from_client`; an error reply may echo any op, the ENOSYS one an unknown op), status zero in
// requests. The body is not read.
std::optional<Refusal> parse_header(std::span<const std::byte> packet, bool from_client, Packet& out);

// The body of `packet` as T under the zero-extension rule, and its tail. Fails if the body is shorter than
// `min_size` (the fields version 1 requires), its size field is out of range, or an unknown byte is not zero.
template <class T>
struct Body {
  T fixed{};
  std::span<const std::byte> tail;
};
std::optional<Refusal> decode_body_bytes(std::uint16_t op, std::span<const std::byte> body, void* out,
                                         std::size_t known, std::size_t min_size, std::span<const std::byte>& tail);
template <class T>
std::optional<Refusal> decode_body(const Packet& packet, Body<T>& out, std::size_t min_size = sizeof(T)) {
  static_assert(std::is_trivially_copyable_v<T>);
  return decode_body_bytes(packet.header.op, packet.body, &out.fixed, sizeof(T), min_size, out.tail);
}

// Splits a tail into the pieces the body announces (lengths in order); the rest must be empty unless
// `rest` is given. Fails naming the length field that does not fit.
std::optional<Refusal> split_tail(std::uint16_t op, std::span<const std::byte> tail,
                                  std::span<const std::pair<const char*, std::uint32_t>> pieces,
                                  std::vector<std::span<const std::byte>>& out);

std::string_view as_text(std::span<const std::byte> bytes);

// Builds a packet: header (size filled in), body, tail pieces.
template <class T>
std::vector<std::byte> build(Header h, const T& body, std::initializer_list<std::span<const std::byte>> tail = {}) {
  static_assert(std::is_trivially_copyable_v<T>);
  std::size_t total = sizeof(Header) + sizeof(T);
  for (auto t : tail) total += t.size();
  h.size = static_cast<std::uint32_t>(total);
  // Appended, not memcpy'd at offsets: g++ 12 cannot prove the offsets within `total` once the tail's sizes are
  // unknown and rejects the memcpys (-Wstringop-overflow, an error here).
  std::vector<std::byte> out;
  out.reserve(total);
  const auto append = [&out](std::span<const std::byte> piece) { out.insert(out.end(), piece.begin(), piece.end()); };
  append(std::as_bytes(std::span(&h, 1)));
  append(std::as_bytes(std::span(&body, 1)));
  for (auto t : tail) append(t);
  return out;
}
std::span<const std::byte> bytes_of(std::string_view s);

// An error reply to `request` (Header::status = refusal.err).
std::vector<std::byte> build_error(const Header& request, const Refusal& refusal, std::uint16_t extra_flags = 0);
// Reads an error reply back into a Refusal (the client's side).
Refusal parse_error(const Packet& reply);

// The wishes' own rules: only known bits present, booleans 0 or 1, reserved bytes zero. Whether the host can
// honour them is the daemon's to say (nesting::derive_id_registers).
std::optional<Refusal> check_wishes(std::uint16_t op, const WireWishes& w);

}  // namespace vsmmu::service

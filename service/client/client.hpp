// The C++ client of vsmmud (service/protocol.hpp): one connection to the daemon, one method per op. A VMM
// written in C++ uses it directly, or through RemoteVsmmu (remote_vsmmu.hpp) as it would use the in-process
// VirtualSmmu; the C API (vsmmu_client.h) is a thin layer over it.
//
// Every failure is an Error: a refusal by the daemon has `where` "vsmmud <OP>", the daemon's "field: reason" as
// its message and the reply's status as errno; a reply that does not follow the protocol is EPROTO; a daemon
// that went away is EPIPE or ECONNRESET (never SIGPIPE: send_packet uses MSG_NOSIGNAL); one that does not
// answer within the timeout (if one is set) is ETIMEDOUT.
//
// Thread safety: every member may be called from any thread. One mutex serializes the requests: a request is
// sent and its reply awaited with the mutex held, so at most one request is in flight on a connection (a VMM
// that wants vSMMUs to proceed in parallel opens one Client per vSMMU). Posted MMIO writes are the exception:
// they are sent and not waited for; the daemon answers only their failures, as ASYNC replies, which the client
// keeps for take_posted_failures() whenever it meets them while reading; MSI messages (kFeatureMsi) likewise
// for take_msis(), NOTICE messages (kFeatureNotice) for take_notices().
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "base/error.hpp"
#include "host/handles.hpp"
#include "nesting/notice.hpp"
#include "service/client/kept_messages.hpp"
#include "service/protocol.hpp"

namespace vsmmu::service {

// What CREATE_VSMMU sets up besides its first device.
struct VsmmuOptions {
  std::string name;                        // empty: the daemon names it
  Policy policy = Policy::batched;
  WireWishes wishes;                       // present = 0: every field from the host
  std::uint32_t commands_per_access = 0;   // 0: the daemon's default
  std::uint32_t host_calls_per_access = 0; // 0: the daemon's default
  bool gbpa_abort = false;                 // GBPA.ABORT's reset value (kCreateGbpaAbort)
  // The VMM delivers the vSMMU's MSI messages (take_msis, RemoteVsmmu::set_msi_handler) to the guest's interrupt
  // controller: kCreateMsiDelivery, needs msis(); the MSI wish's auto is then on.
  bool msi_delivery = false;
};

// A device behind a vSMMU as the client names it: by name on the simulated host, by its VFIO cdev fd on the
// kernel host (borrowed: the daemon receives its own copy). Exactly one of the two.
struct RemoteDevice {
  std::uint32_t vsid = 0;
  std::string name;
  int fd = -1;
};

// A SIM_DMA: the simulated host's DMA engine `engine` writes `data` at `iova`, or reads `read_length` bytes.
struct SimDma {
  std::string engine;
  std::uint64_t iova = 0;
  DmaDirection direction = DmaDirection::write;
  std::span<const std::byte> data;         // a write's bytes
  std::uint32_t read_length = 0;           // a read's length
  std::optional<std::uint32_t> ssid;
  // The vSMMU the engine's device sits behind, or 0. Header::vsmmu: naming it orders the DMA after that
  // vSMMU's posted writes (protocol.hpp, MMIO).
  std::uint32_t vsmmu = 0;
};
struct SimDmaResult {
  SimDmaReply reply;
  std::vector<std::byte> data;             // a read's bytes (reply.bytes of them)
};

// DIRTY_START's answer: how the daemon tracks the VM's dirty pages (docs/protocol.md "Live migration").
struct DirtyStart {
  DirtyLogMode mode = DirtyLogMode::hardware;
  std::string reason;                      // conservative: which nest parent cannot track, and why
  std::uint32_t parents = 0;               // nest parents on the VM's IOAS
  std::uint32_t tracking = 0;              //   of which track in hardware
};
// One region's DIRTY_GET: its bitmap is in the VMM's file.
struct DirtyRound {
  std::uint64_t pages = 0;                 // bits that describe the region
  std::uint64_t dirty = 0;                 // of which set
  bool conservative = false;               // every page reported (no exact information this round)
  bool removed = false;                    // the region was removed: its last bits
};

// A posted MMIO write the daemon could not do (an ASYNC reply).
struct PostedFailure {
  std::uint32_t vsmmu = 0;
  std::uint64_t tag = 0;                   // the write's request tag
  Error error;                             // "vsmmud MMIO_WRITE", "field: reason", the daemon's errno
};
struct PostedFailures {
  std::vector<PostedFailure> kept;         // the first kMaxKeptFailures since the last take
  std::uint64_t dropped = 0;               // how many more came
};

// A vSMMU's MSI to an address outside guest RAM (an MSI message, kFeatureMsi): the VMM delivers it.
struct Msi {
  std::uint32_t vsmmu = 0;
  std::uint64_t address = 0;
  std::uint32_t data = 0;
  std::uint32_t dropped = 0;               // MSIs the daemon dropped before this one (the client was not reading)
};

// A vSMMU's notice for the VMM's operator (a NOTICE message, kFeatureNotice), which the daemon also logged.
struct ReceivedNotice {
  std::uint32_t vsmmu = 0;
  std::uint32_t dropped = 0;               // notices dropped before this one (the client was not reading)
  nesting::Notice notice;                  // kind (a later daemon's kinds pass as they are), vSID, text
};

class Client {
 public:
  static constexpr std::size_t kMaxKeptFailures = 64;
  static constexpr std::size_t kMaxKeptMsis = 4096;  // beyond, MSIs read are dropped (Msi::dropped of the next)
  static constexpr std::size_t kMaxKeptNotices = 256;  // likewise (ReceivedNotice::dropped)
  // The largest receive buffer the client allocates, whatever max_message the daemon announces.
  static constexpr std::uint32_t kMaxBuffer = 16u << 20;
  // The smallest max_message a version-1 daemon may announce: every fixed reply, with room for its error text.
  static constexpr std::uint32_t kMinMessage = 512;

  // The HELLO a client offers by default: protocol version 1, every feature this client knows.
  static HelloRequest default_offer();

  // Connects to the daemon's socket and says HELLO. `timeout` bounds every wait for a reply (and for the
  // daemon to take a request); zero waits for ever.
  static Result<std::unique_ptr<Client>> connect(const std::string& socket_path, const HelloRequest& offer = default_offer(),
                                                 std::chrono::milliseconds timeout = {});
  // The same over a socket already connected (a socketpair, a socket passed by a parent process).
  static Result<std::unique_ptr<Client>> adopt(host::UniqueFd connected_socket, const HelloRequest& offer = default_offer(),
                                               std::chrono::milliseconds timeout = {});

  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // The daemon's answer to HELLO: version, features, host kind, limits.
  const HelloReply& hello() const { return hello_; }
  bool posted_writes() const { return (hello_.features & kFeaturePostedWrites) != 0; }
  // Sets SO_RCVTIMEO and SO_SNDTIMEO (zero: wait for ever).
  Result<void> set_timeout(std::chrono::milliseconds timeout);

  // ---- vSMMUs and their devices
  // The vSMMU and its first device; guest RAM must be added first. The reply's handle names it from now on.
  Result<CreateReply> create_vsmmu(const VsmmuOptions& options, const RemoteDevice& device);
  Result<void> destroy_vsmmu(std::uint32_t handle);
  Result<void> attach_device(std::uint32_t handle, const RemoteDevice& device);
  Result<void> detach_device(std::uint32_t handle, std::uint32_t vsid);

  // ---- guest RAM: [gpa, gpa + length) is `memfd` (borrowed) from fd_offset
  Result<void> add_region(std::uint64_t gpa, std::uint64_t length, int memfd, std::uint64_t fd_offset = 0);
  Result<void> remove_region(std::uint64_t gpa);

  // ---- the guest's accesses (offset from page 0; width 4 or 8)
  Result<std::uint64_t> mmio_read(std::uint32_t handle, std::uint64_t offset, unsigned width);
  // Posted when `posted` and the daemon offered kFeaturePostedWrites: returns once the request is sent; a
  // failure comes back later (take_posted_failures). Otherwise waits for the daemon's answer.
  Result<void> mmio_write(std::uint32_t handle, std::uint64_t offset, std::uint64_t value, unsigned width,
                          bool posted = true);
  // The eventfd (borrowed) the daemon signals for `line`; -1 clears it.
  Result<void> set_irq(std::uint32_t handle, IrqLine line, int eventfd);

  // ---- figures
  Result<VsmmuStatsReply> vsmmu_stats(std::uint32_t handle);
  Result<DaemonStatsReply> daemon_stats();

  // ---- the simulated host only
  Result<SimDmaResult> sim_dma(const SimDma& dma);

  // ---- live migration (kFeatureMigration; docs/protocol.md "Live migration (16-20)")
  bool migration() const { return (hello_.features & kFeatureMigration) != 0; }
  // The VM's dirty log, over all of this connection's guest RAM.
  Result<DirtyStart> dirty_start();
  Result<void> dirty_stop();
  // The dirty bitmap of the region at `region_gpa`, written by the daemon into `bitmap_fd` (borrowed; a memfd at
  // least bitmap_offset + 8 * ceil(pages / 64) bytes long) at `bitmap_offset` (page aligned). `flags`:
  // kDirtyGetNoClear.
  Result<DirtyRound> dirty_get(std::uint64_t region_gpa, int bitmap_fd, std::uint64_t bitmap_offset = 0,
                               std::uint32_t flags = 0);
  // The vSMMU's state written by the daemon into `fd` (borrowed: a memfd; truncated, written from 0); its length.
  Result<std::uint64_t> save_state_to(std::uint32_t handle, int fd);
  // Loads `state_bytes` from offset 0 of `fd` (borrowed) into the vSMMU.
  Result<void> load_state_from(std::uint32_t handle, int fd, std::uint64_t state_bytes);
  // The same through a memfd the client makes.
  Result<std::vector<std::byte>> save_state(std::uint32_t handle);
  Result<void> load_state(std::uint32_t handle, std::span<const std::byte> state);

  // The posted writes that failed since the last call: those met while reading replies, and those already
  // waiting on the socket (read without blocking).
  PostedFailures take_posted_failures();

  // ---- MSIs (kFeatureMsi; docs/protocol.md "MSI (13)")
  bool msis() const { return (hello_.features & kFeatureMsi) != 0; }
  // The MSI messages received for `vsmmu` (0: every vSMMU), oldest first, at most `max`: those met while reading
  // replies and those waiting on the socket (read without blocking). The socket (socket_fd()) is readable when
  // one waits.
  std::vector<Msi> take_msis(std::uint32_t vsmmu = 0, std::size_t max = SIZE_MAX);
  int socket_fd() const { return socket_.get(); }

  // ---- notices (kFeatureNotice; docs/protocol.md "NOTICE (14)"): as take_msis.
  bool notices() const { return (hello_.features & kFeatureNotice) != 0; }
  std::vector<ReceivedNotice> take_notices(std::uint32_t vsmmu = 0, std::size_t max = SIZE_MAX);

 private:
  Client(host::UniqueFd socket, std::chrono::milliseconds timeout);

  Result<void> say_hello(const HelloRequest& offer);
  // Sends one request with a fresh tag (mu_ held) and, unless it is posted, reads until its reply: a refusal
  // becomes its Error. The reply's body lies in buffer_ until the next read.
  template <class T>
  Result<Packet> call(Op op, std::uint32_t vsmmu, const T& body,
                      std::initializer_list<std::span<const std::byte>> tail = {}, std::span<const int> fds = {},
                      std::uint16_t flags = 0);
  Result<Packet> await_reply(Op op, std::uint64_t tag);
  // Reads one packet: a reply is returned, an ASYNC failure kept (nullopt), a stale reply dropped (nullopt).
  Result<std::optional<Packet>> receive_one(Op awaited, std::uint64_t tag);
  void keep_posted_failure(const Packet& packet);
  void keep_unsolicited(const Packet& packet);  // MSI, NOTICE
  void read_waiting();  // mu_ held: every packet waiting on the socket, without blocking
  // The fixed part of a reply's body; its tail must be empty unless `tail` takes it.
  template <class T>
  Result<T> decode(Op op, const Packet& reply, std::span<const std::byte>* tail = nullptr,
                   std::size_t min_size = sizeof(T));
  Result<void> decode_empty(Op op, const Packet& reply);

  host::UniqueFd socket_;
  std::chrono::milliseconds timeout_;
  HelloReply hello_;
  std::mutex mu_;
  std::uint64_t next_tag_ = 1;
  std::vector<std::byte> buffer_;
  PostedFailures posted_;
  KeptMessages<Msi> msis_{kMaxKeptMsis};
  KeptMessages<ReceivedNotice> notices_{kMaxKeptNotices};
};

}  // namespace vsmmu::service

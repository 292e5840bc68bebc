// The C API (vsmmu_client.h) over Client. No exception crosses it: each entry point catches and answers
// -ENOMEM (std::bad_alloc) or -EIO (anything else), with the text in the client's error buffer.
#include "service/client/vsmmu_client.h"

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <exception>
#include <memory>
#include <new>

#include "service/client/client.hpp"

using vsmmu::Error;
using namespace vsmmu::service;

// The C names of the protocol's numbers are the protocol's numbers.
static_assert(VSMMU_HOST_SIM == static_cast<std::uint32_t>(HostKind::sim));
static_assert(VSMMU_HOST_KERNEL == static_cast<std::uint32_t>(HostKind::kernel));
static_assert(VSMMU_FEATURE_POSTED_WRITES == kFeaturePostedWrites && VSMMU_FEATURE_SIM_DMA == kFeatureSimDma &&
              VSMMU_FEATURE_MIGRATION == kFeatureMigration && VSMMU_FEATURE_MSI == kFeatureMsi &&
              VSMMU_FEATURE_NOTICE == kFeatureNotice);
static_assert(VSMMU_NOTICE_MSI_WINDOW_FAULT == static_cast<std::uint32_t>(vsmmu::nesting::NoticeKind::msi_window_fault) &&
              VSMMU_NOTICE_TEXT_MAX == kMaxNoticeText);
static_assert(VSMMU_DIRTY_MODE_HARDWARE == static_cast<std::uint32_t>(DirtyLogMode::hardware));
static_assert(VSMMU_DIRTY_MODE_CONSERVATIVE == static_cast<std::uint32_t>(DirtyLogMode::conservative));
static_assert(VSMMU_DIRTY_NO_CLEAR == kDirtyGetNoClear && VSMMU_DIRTY_CONSERVATIVE == kDirtyConservative &&
              VSMMU_DIRTY_REMOVED == kDirtyRemoved && VSMMU_STATE_MAX_BYTES == kMaxStateBytes);
static_assert(VSMMU_POLICY_BATCHED == static_cast<std::uint32_t>(Policy::batched));
static_assert(VSMMU_POLICY_PER_COMMAND == static_cast<std::uint32_t>(Policy::per_command));
static_assert(VSMMU_CREATE_GBPA_ABORT == kCreateGbpaAbort && VSMMU_CREATE_MSI_DELIVERY == kCreateMsiDelivery);
static_assert(VSMMU_IRQ_EVENTQ == static_cast<std::uint32_t>(IrqLine::eventq));
static_assert(VSMMU_IRQ_GERROR == static_cast<std::uint32_t>(IrqLine::gerror));
static_assert(VSMMU_IRQ_CMD_SYNC == static_cast<std::uint32_t>(IrqLine::cmd_sync));
static_assert(VSMMU_DMA_WRITE == static_cast<std::uint32_t>(DmaDirection::write));
static_assert(VSMMU_DMA_READ == static_cast<std::uint32_t>(DmaDirection::read));
static_assert(VSMMU_WISH_IPA_BITS == kWishIpaBits && VSMMU_WISH_OAS_BITS == kWishOasBits &&
              VSMMU_WISH_SID_BITS == kWishSidBits && VSMMU_WISH_SSID_BITS == kWishSsidBits &&
              VSMMU_WISH_RIL == kWishRil && VSMMU_WISH_ATS == kWishAts && VSMMU_WISH_ST_LEVEL == kWishStLevel &&
              VSMMU_WISH_TT_ENDIAN == kWishTtEndian && VSMMU_WISH_GRAN4K == kWishGran4k &&
              VSMMU_WISH_GRAN16K == kWishGran16k && VSMMU_WISH_GRAN64K == kWishGran64k &&
              VSMMU_WISH_CMDQ_LOG2 == kWishCmdqLog2 && VSMMU_WISH_EVENTQ_LOG2 == kWishEventqLog2 &&
              VSMMU_WISH_MSI == kWishMsi && VSMMU_WISH_STALL == kWishStall);
static_assert(offsetof(vsmmu_wishes, stall) == offsetof(WireWishes, stall));
static_assert(sizeof(vsmmu_wishes) == sizeof(WireWishes));

struct vsmmu_client {
  std::unique_ptr<Client> client;
  char error[512] = {};
};

namespace {

thread_local char connect_error[512];

template <std::size_t N>
void set_text(char (&buffer)[N], std::string_view text) {
  const auto end = fmt::format_to_n(buffer, N - 1, "{}", text).out;
  *end = '\0';
}

int report(vsmmu_client* c, const Error& e) {
  set_text(c->error, e.to_string());
  return e.err > 0 ? -e.err : -EIO;
}
int report(vsmmu_client* c, int err, std::string_view what) { return report(c, Error{err, "vsmmu_client", std::string(what)}); }

// Runs `body` for a client, with no exception escaping; a NULL client has nowhere for its text: -EINVAL.
template <class F>
int guarded(vsmmu_client* c, F&& body) noexcept {
  if (!c) return -EINVAL;
  try {
    return body(*c->client);
  } catch (const std::bad_alloc&) {
    set_text(c->error, "vsmmu_client: out of memory (ENOMEM, errno 12)");
    return -ENOMEM;
  } catch (const std::exception& e) {
    set_text(c->error, e.what());
    return -EIO;
  } catch (...) {
    set_text(c->error, "vsmmu_client: an unknown exception");
    return -EIO;
  }
}
template <class T>
int done(vsmmu_client* c, const vsmmu::Result<T>& r) {
  return r ? 0 : report(c, r.error());
}

// The extensible structs (vsmmu_client.h): an input `size` below this version's struct is refused, bytes past it
// must be zero (the kernel's copy_struct_from_user rule); an output is filled up to the smaller of the two sizes,
// the caller's extra bytes zeroed, and `size` says how many bytes the library filled.
template <class T>
int copy_in(vsmmu_client* c, const T* user, T& out, const char* what) {
  if (!user) return report(c, EINVAL, fmt::format("{}: NULL", what));
  std::uint32_t size;
  std::memcpy(&size, user, sizeof size);
  if (size < sizeof(T))
    return report(c, EINVAL, fmt::format("{}.size is {}; this library's struct has {} bytes", what, size, sizeof(T)));
  const auto* extra = reinterpret_cast<const unsigned char*>(user) + sizeof(T);
  if (std::any_of(extra, extra + (size - sizeof(T)), [](unsigned char b) { return b != 0; }))
    return report(c, E2BIG, fmt::format("{}: this library knows {} of its {} bytes; the others must be zero", what,
                                        sizeof(T), size));
  std::memcpy(&out, user, sizeof(T));
  return 0;
}
template <class T>
int copy_out(vsmmu_client* c, T value, T* user, const char* what) {
  if (!user) return report(c, EINVAL, fmt::format("{}: NULL", what));
  std::uint32_t size;
  std::memcpy(&size, user, sizeof size);
  if (size < 2 * sizeof(std::uint32_t))
    return report(c, EINVAL, fmt::format("{}.size is {}: set it to sizeof the struct", what, size));
  const std::size_t n = std::min<std::size_t>(size, sizeof(T));
  value.size = static_cast<std::uint32_t>(n);
  std::memcpy(user, &value, n);
  std::memset(reinterpret_cast<unsigned char*>(user) + n, 0, size - n);
  return 0;
}

WireWishes wire_wishes(const vsmmu_wishes& w) {
  WireWishes out;
  out.present = w.present;
  out.ipa_bits = w.ipa_bits;
  out.oas_bits = w.oas_bits;
  out.sid_bits = w.sid_bits;
  out.ssid_bits = w.ssid_bits;
  out.ril = w.ril;
  out.ats = w.ats;
  out.st_level = w.st_level;
  out.tt_endian = w.tt_endian;
  out.gran4k = w.gran4k;
  out.gran16k = w.gran16k;
  out.gran64k = w.gran64k;
  out.cmdq_log2 = w.cmdq_log2;
  out.eventq_log2 = w.eventq_log2;
  out.msi = w.msi;
  out.stall = w.stall;
  std::copy(std::begin(w.reserved), std::end(w.reserved), std::begin(out.reserved));
  return out;
}

RemoteDevice device_of(std::uint32_t vsid, const char* name, int fd) {
  return name ? RemoteDevice{vsid, name, -1} : RemoteDevice{vsid, {}, fd};
}

}  // namespace

extern "C" {

int vsmmu_client_connect(const char* socket_path, vsmmu_client** client) {
  if (!client) return -EINVAL;
  *client = nullptr;
  try {
    if (!socket_path) {
      set_text(connect_error, "vsmmu_client: socket_path is NULL (EINVAL, errno 22)");
      return -EINVAL;
    }
    auto c = std::make_unique<vsmmu_client>();
    auto connected = Client::connect(socket_path);
    if (!connected) {
      set_text(connect_error, connected.error().to_string());
      return connected.error().err > 0 ? -connected.error().err : -EIO;
    }
    c->client = std::move(*connected);
    *client = c.release();
    return 0;
  } catch (const std::bad_alloc&) {
    set_text(connect_error, "vsmmu_client: out of memory (ENOMEM, errno 12)");
    return -ENOMEM;
  } catch (...) {
    set_text(connect_error, "vsmmu_client: an unexpected exception while connecting");
    return -EIO;
  }
}

void vsmmu_client_close(vsmmu_client* client) { delete client; }

const char* vsmmu_client_last_error(const vsmmu_client* client) { return client ? client->error : connect_error; }

int vsmmu_client_set_timeout(vsmmu_client* client, uint32_t milliseconds) {
  return guarded(client, [&](Client& c) { return done(client, c.set_timeout(std::chrono::milliseconds(milliseconds))); });
}

int vsmmu_client_daemon_info(vsmmu_client* client, vsmmu_daemon_info* info) {
  return guarded(client, [&](Client& c) {
    const HelloReply& h = c.hello();
    vsmmu_daemon_info out{};
    out.version = h.version;
    out.features = h.features;
    out.host = h.host;
    out.max_message = h.max_message;
    out.max_fds = h.max_fds;
    out.max_vsmmus = h.max_vsmmus;
    out.max_devices = h.max_devices;
    out.max_regions = h.max_regions;
    out.max_pending = h.max_pending;
    return copy_out(client, out, info, "info");
  });
}

int vsmmu_client_add_region(vsmmu_client* client, uint64_t gpa, uint64_t length, int memfd, uint64_t fd_offset) {
  return guarded(client, [&](Client& c) { return done(client, c.add_region(gpa, length, memfd, fd_offset)); });
}

int vsmmu_client_remove_region(vsmmu_client* client, uint64_t gpa) {
  return guarded(client, [&](Client& c) { return done(client, c.remove_region(gpa)); });
}

int vsmmu_client_create_vsmmu(vsmmu_client* client, const vsmmu_create_args* args, uint32_t* handle,
                              vsmmu_id_registers* ids) {
  return guarded(client, [&](Client& c) {
    vsmmu_create_args a;
    if (int r = copy_in(client, args, a, "args"); r < 0) return r;
    if (!handle) return report(client, EINVAL, "handle: NULL");
    VsmmuOptions options;
    options.name = a.name ? a.name : "";
    options.policy = static_cast<Policy>(a.policy);
    if (a.wishes) options.wishes = wire_wishes(*a.wishes);
    options.commands_per_access = a.commands_per_access;
    options.host_calls_per_access = a.host_calls_per_access;
    constexpr std::uint32_t kKnown = VSMMU_CREATE_GBPA_ABORT | VSMMU_CREATE_MSI_DELIVERY;
    if (a.flags & ~kKnown) return report(client, EINVAL, fmt::format("args.flags: unknown bits {:#x}", a.flags & ~kKnown));
    options.gbpa_abort = (a.flags & VSMMU_CREATE_GBPA_ABORT) != 0;
    options.msi_delivery = (a.flags & VSMMU_CREATE_MSI_DELIVERY) != 0;
    auto created = c.create_vsmmu(options, device_of(a.vsid, a.device_name, a.device_fd));
    if (!created) return report(client, created.error());
    *handle = created->handle;
    if (!ids) return 0;
    vsmmu_id_registers out{};
    std::copy(std::begin(created->idr), std::end(created->idr), std::begin(out.idr));
    out.iidr = created->iidr;
    out.aidr = created->aidr;
    return copy_out(client, out, ids, "ids");
  });
}

int vsmmu_client_destroy_vsmmu(vsmmu_client* client, uint32_t handle) {
  return guarded(client, [&](Client& c) { return done(client, c.destroy_vsmmu(handle)); });
}

int vsmmu_client_attach_device(vsmmu_client* client, uint32_t handle, uint32_t vsid, const char* device_name,
                               int device_fd) {
  return guarded(client,
                 [&](Client& c) { return done(client, c.attach_device(handle, device_of(vsid, device_name, device_fd))); });
}

int vsmmu_client_detach_device(vsmmu_client* client, uint32_t handle, uint32_t vsid) {
  return guarded(client, [&](Client& c) { return done(client, c.detach_device(handle, vsid)); });
}

int vsmmu_client_mmio_read(vsmmu_client* client, uint32_t handle, uint64_t offset, uint32_t width, uint64_t* value) {
  return guarded(client, [&](Client& c) {
    if (!value) return report(client, EINVAL, "value: NULL");
    auto read = c.mmio_read(handle, offset, width);
    if (!read) return report(client, read.error());
    *value = *read;
    return 0;
  });
}

int vsmmu_client_mmio_write(vsmmu_client* client, uint32_t handle, uint64_t offset, uint64_t value, uint32_t width,
                            uint32_t flags) {
  return guarded(client, [&](Client& c) {
    if (flags & ~VSMMU_MMIO_POSTED)
      return report(client, EINVAL, fmt::format("flags: unknown bits {:#x}", flags & ~VSMMU_MMIO_POSTED));
    return done(client, c.mmio_write(handle, offset, value, width, (flags & VSMMU_MMIO_POSTED) != 0));
  });
}

int vsmmu_client_check_posted(vsmmu_client* client) {
  return guarded(client, [&](Client& c) {
    const PostedFailures failures = c.take_posted_failures();
    if (failures.kept.empty()) return 0;
    const Error& first = failures.kept.front().error;
    return report(client, Error{first.err, first.where,
                                fmt::format("{} (vSMMU {}, request {}; {} posted writes failed since the last check)",
                                            first.message, failures.kept.front().vsmmu, failures.kept.front().tag,
                                            failures.kept.size() + failures.dropped)});
  });
}

int vsmmu_client_take_msis(vsmmu_client* client, uint32_t handle, vsmmu_msi* out, uint32_t max, uint32_t* count) {
  return guarded(client, [&](Client& c) {
    if (!count || (max > 0 && !out)) return report(client, EINVAL, "vsmmu_client_take_msis: out or count is NULL");
    *count = 0;
    for (const Msi& m : c.take_msis(handle, max))
      out[(*count)++] = vsmmu_msi{m.vsmmu, m.dropped, m.address, m.data, 0};
    return 0;
  });
}

int vsmmu_client_take_notices(vsmmu_client* client, uint32_t handle, vsmmu_notice* out, uint32_t max,
                              uint32_t* count) {
  return guarded(client, [&](Client& c) {
    if (!count || (max > 0 && !out)) return report(client, EINVAL, "vsmmu_client_take_notices: out or count is NULL");
    *count = 0;
    for (const ReceivedNotice& n : c.take_notices(handle, max)) {
      vsmmu_notice& o = out[(*count)++];
      o = vsmmu_notice{n.vsmmu, static_cast<std::uint32_t>(n.notice.kind), n.notice.vsid, n.dropped, {}};
      n.notice.text.copy(o.text, VSMMU_NOTICE_TEXT_MAX);  // the client took no longer one; o.text is zeroed
    }
    return 0;
  });
}

int vsmmu_client_fd(vsmmu_client* client) {
  return guarded(client, [&](Client& c) { return c.socket_fd(); });
}

int vsmmu_client_set_irq(vsmmu_client* client, uint32_t handle, uint32_t line, int eventfd) {
  return guarded(client, [&](Client& c) { return done(client, c.set_irq(handle, static_cast<IrqLine>(line), eventfd)); });
}

int vsmmu_client_stats(vsmmu_client* client, uint32_t handle, vsmmu_stats* stats) {
  return guarded(client, [&](Client& c) {
    auto reply = c.vsmmu_stats(handle);
    if (!reply) return report(client, reply.error());
    const VsmmuStatsReply& r = *reply;
    vsmmu_stats out{};
    out.host_calls = r.host_calls;
    out.hwpt_allocs = r.hwpt_allocs;
    out.hwpt_shared = r.hwpt_shared;
    out.attaches = r.attaches;
    out.ste_unchanged = r.ste_unchanged;
    out.invalidate_calls = r.invalidate_calls;
    out.forwarded = r.forwarded;
    out.host_time_ns = r.host_time_ns;
    out.commands = r.commands;
    out.coalesced = r.coalesced;
    out.syncs = r.syncs;
    out.ste_reinstalls = r.ste_reinstalls;
    out.command_errors = r.command_errors;
    out.bad_stes = r.bad_stes;
    out.events = r.events;
    out.events_lost = r.events_lost;
    out.deferred = r.deferred;
    out.host_objects = r.host_objects;
    out.posted_failures = r.posted_failures;
    out.msi_window_base = r.msi_window_base;
    out.msi_window_size = r.msi_window_size;
    out.msi_windows = r.msi_windows;
    out.msi_window_faults = r.msi_window_faults;
    out.stalls = r.stalls;
    out.stalls_resumed = r.stalls_resumed;
    out.stalls_aborted = r.stalls_aborted;
    out.stalls_dropped = r.stalls_dropped;
    return copy_out(client, out, stats, "stats");
  });
}

int vsmmu_client_sim_dma(vsmmu_client* client, const vsmmu_dma_args* args, vsmmu_dma_result* result) {
  return guarded(client, [&](Client& c) {
    vsmmu_dma_args a;
    if (int r = copy_in(client, args, a, "args"); r < 0) return r;
    if (!a.engine) return report(client, EINVAL, "args.engine: NULL");
    if (a.length && !a.data) return report(client, EINVAL, "args.data: NULL");
    if (a.flags & ~VSMMU_DMA_SSID_VALID)
      return report(client, EINVAL, fmt::format("args.flags: unknown bits {:#x}", a.flags & ~VSMMU_DMA_SSID_VALID));
    SimDma dma;
    dma.engine = a.engine;
    dma.iova = a.iova;
    dma.direction = static_cast<DmaDirection>(a.direction);
    if (a.direction == VSMMU_DMA_READ)
      dma.read_length = a.length;
    else
      dma.data = std::span(static_cast<const std::byte*>(a.data), a.length);
    if (a.flags & VSMMU_DMA_SSID_VALID) dma.ssid = a.ssid;
    dma.vsmmu = a.vsmmu;
    auto moved = c.sim_dma(dma);
    if (!moved) return report(client, moved.error());
    if (!moved->data.empty()) std::memcpy(a.data, moved->data.data(), moved->data.size());
    vsmmu_dma_result out{};
    out.faulted = moved->reply.faulted;
    out.bytes = moved->reply.bytes;
    return copy_out(client, out, result, "result");
  });
}

int vsmmu_client_dirty_start(vsmmu_client* client, vsmmu_dirty_info* info) {
  return guarded(client, [&](Client& c) {
    auto started = c.dirty_start();
    if (!started) return report(client, started.error());
    if (!info) return 0;
    vsmmu_dirty_info out{};
    out.mode = static_cast<std::uint32_t>(started->mode);
    out.parents = started->parents;
    out.tracking = started->tracking;
    set_text(out.reason, started->reason);
    return copy_out(client, out, info, "info");
  });
}

int vsmmu_client_dirty_stop(vsmmu_client* client) {
  return guarded(client, [&](Client& c) { return done(client, c.dirty_stop()); });
}

int vsmmu_client_dirty_get(vsmmu_client* client, uint64_t region_gpa, int bitmap_fd, uint64_t bitmap_offset,
                           uint32_t flags, vsmmu_dirty_result* result) {
  return guarded(client, [&](Client& c) {
    if (flags & ~VSMMU_DIRTY_NO_CLEAR)
      return report(client, EINVAL, fmt::format("flags: unknown bits {:#x}", flags & ~VSMMU_DIRTY_NO_CLEAR));
    auto round = c.dirty_get(region_gpa, bitmap_fd, bitmap_offset, flags);
    if (!round) return report(client, round.error());
    if (!result) return 0;
    vsmmu_dirty_result out{};
    out.flags = (round->conservative ? VSMMU_DIRTY_CONSERVATIVE : 0u) | (round->removed ? VSMMU_DIRTY_REMOVED : 0u);
    out.pages = round->pages;
    out.dirty = round->dirty;
    return copy_out(client, out, result, "result");
  });
}

int vsmmu_client_save_state(vsmmu_client* client, uint32_t handle, int fd, uint64_t* state_bytes) {
  return guarded(client, [&](Client& c) {
    if (!state_bytes) return report(client, EINVAL, "state_bytes: NULL");
    auto saved = c.save_state_to(handle, fd);
    if (!saved) return report(client, saved.error());
    *state_bytes = *saved;
    return 0;
  });
}

int vsmmu_client_load_state(vsmmu_client* client, uint32_t handle, int fd, uint64_t state_bytes) {
  return guarded(client, [&](Client& c) { return done(client, c.load_state_from(handle, fd, state_bytes)); });
}

}  // extern "C"

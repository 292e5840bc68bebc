/*
 * libvsmmu-client: the C API of vsmmud, the service that gives a VM a nested virtual ARM SMMUv3 (IHI 0070).
 * A VMM in C, Rust (bindgen) or Go (cgo) connects to the daemon's UNIX socket, hands it the guest's RAM
 * (memfds), creates a vSMMU with its devices, forwards the guest's MMIO accesses to the vSMMU's register pages
 * and gives it an eventfd per interrupt line. Pure C99; link with `pkg-config --libs vsmmu-client`.
 *
 * Conventions:
 * - Every function but vsmmu_client_close and vsmmu_client_last_error returns 0 or a negative errno; the text of
 *   a failure ("vsmmud CREATE_VSMMU: wishes.sid_bits: ... (EINVAL, errno 22)") is then in
 *   vsmmu_client_last_error(client). A failure of the daemon's keeps its errno; a daemon that does not follow
 *   the protocol gives -EPROTO, one that went away -EPIPE or -ECONNRESET, one that does not answer within the
 *   timeout -ETIMEDOUT.
 * - Structs whose first field is `size` are extensible: set `size` to sizeof the struct you were compiled with.
 *   The library reads (or fills) that many bytes; fields it does not know must be zero, fields you do not know
 *   are left out.
 * - File descriptors passed in are borrowed: the daemon receives its own copy, the caller keeps and closes
 *   its own.
 * - A client may be used from several threads: its requests are serialized (one in flight at a time). The
 *   error text is the last failure on that client, from whichever thread.
 */
#ifndef VSMMU_CLIENT_H
#define VSMMU_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define VSMMU_CLIENT_API __attribute__((visibility("default")))
#else
#define VSMMU_CLIENT_API
#endif

struct vsmmu_client;

/* The daemon's host (vsmmu_daemon_info.host). */
#define VSMMU_HOST_SIM 1u    /* the simulated host: devices by name, vsmmu_client_sim_dma */
#define VSMMU_HOST_KERNEL 2u /* the kernel's iommufd: devices by their VFIO cdev fd */

/* Features the daemon agreed to (vsmmu_daemon_info.features). */
#define VSMMU_FEATURE_POSTED_WRITES (1ull << 0)
#define VSMMU_FEATURE_SIM_DMA (1ull << 1)
#define VSMMU_FEATURE_MIGRATION (1ull << 2) /* vsmmu_client_dirty_*, vsmmu_client_save_state/load_state */
#define VSMMU_FEATURE_MSI (1ull << 3)       /* the vSMMUs' MSIs outside guest RAM: vsmmu_client_take_msis */
#define VSMMU_FEATURE_NOTICE (1ull << 4)    /* the vSMMUs' notices for the operator: vsmmu_client_take_notices */

/* How guest invalidations reach the host (vsmmu_create_args.policy). */
#define VSMMU_POLICY_BATCHED 0u     /* one host call per vIOMMU between two CMD_SYNCs */
#define VSMMU_POLICY_PER_COMMAND 1u /* one host call per guest command */

/* vsmmu_create_args.flags */
#define VSMMU_CREATE_GBPA_ABORT (1u << 0) /* GBPA.ABORT resets to 1 */
/* The VMM delivers the vSMMU's MSIs (vsmmu_client_take_msis) to the guest's interrupt controller; needs
 * VSMMU_FEATURE_MSI. The MSI wish's "auto" is then on. */
#define VSMMU_CREATE_MSI_DELIVERY (1u << 1)

/* Interrupt lines (vsmmu_client_set_irq). */
#define VSMMU_IRQ_EVENTQ 0u
#define VSMMU_IRQ_GERROR 1u
#define VSMMU_IRQ_CMD_SYNC 2u

/* vsmmu_client_mmio_write's flags */
#define VSMMU_MMIO_POSTED (1u << 0) /* do not wait (when the daemon offers it); a failure comes back later */

/* vsmmu_dma_args.direction and .flags */
#define VSMMU_DMA_WRITE 0u
#define VSMMU_DMA_READ 1u
#define VSMMU_DMA_SSID_VALID (1u << 0)

/* The guest's ID registers, as the VMM wishes them; a field counts only if its VSMMU_WISH_* bit is in
 * `present`. A clear bit is "auto", the default (present = VSMMU_WISHES_AUTO): the host's value capped by what
 * the vSMMU supports (OAS and the IPA size the host's up to 48 bits, SSIDSIZE/RIL/ATS the host's, MSI on with
 * VSMMU_CREATE_MSI_DELIVERY, stalls off; docs/protocol.md "CREATE_VSMMU"). */
struct vsmmu_wishes {
  uint32_t present;
  uint8_t ipa_bits, oas_bits, sid_bits, ssid_bits;
  uint8_t ril, ats, st_level, tt_endian;
  uint8_t gran4k, gran16k, gran64k, cmdq_log2;
  uint8_t eventq_log2, msi, stall, reserved[1];
};
#define VSMMU_WISHES_AUTO 0u /* `present` with every field on auto */
#define VSMMU_WISH_IPA_BITS (1u << 0)
#define VSMMU_WISH_OAS_BITS (1u << 1)
#define VSMMU_WISH_SID_BITS (1u << 2)
#define VSMMU_WISH_SSID_BITS (1u << 3)
#define VSMMU_WISH_RIL (1u << 4)
#define VSMMU_WISH_ATS (1u << 5)
#define VSMMU_WISH_ST_LEVEL (1u << 6)
#define VSMMU_WISH_TT_ENDIAN (1u << 7)
#define VSMMU_WISH_GRAN4K (1u << 8)
#define VSMMU_WISH_GRAN16K (1u << 9)
#define VSMMU_WISH_GRAN64K (1u << 10)
#define VSMMU_WISH_CMDQ_LOG2 (1u << 11)
#define VSMMU_WISH_EVENTQ_LOG2 (1u << 12)
#define VSMMU_WISH_MSI (1u << 13) /* IDR0.MSI; needs VSMMU_FEATURE_MSI (MSIs outside guest RAM come as messages) */
#define VSMMU_WISH_STALL (1u << 14) /* IDR0.STALL_MODEL: 1 gives the host's stall model, refused on a host that terminates */

/* What the daemon said at connection: its host and the limits it enforces on this connection. */
struct vsmmu_daemon_info {
  uint32_t size;
  uint32_t version;     /* protocol version */
  uint64_t features;    /* VSMMU_FEATURE_* */
  uint32_t host;        /* VSMMU_HOST_* */
  uint32_t max_message; /* bytes per packet */
  uint32_t max_fds;     /* fds per packet */
  uint32_t max_vsmmus;  /* on this connection */
  uint32_t max_devices; /* on this connection, all its vSMMUs together */
  uint32_t max_regions; /* guest RAM regions on this connection */
  uint32_t max_pending; /* requests in flight */
  uint32_t reserved;
};

/* A vSMMU and its first device. Guest RAM must be added first. */
struct vsmmu_create_args {
  uint32_t size;
  uint32_t policy;                   /* VSMMU_POLICY_* */
  const char *name;                  /* NULL or "": the daemon names it */
  const struct vsmmu_wishes *wishes; /* NULL: every field on auto */
  const char *device_name;           /* the simulated host: the device's name */
  int32_t device_fd;                 /* the kernel host: its VFIO cdev fd (used when device_name is NULL) */
  uint32_t vsid;                     /* the device's StreamID in the guest */
  uint32_t commands_per_access;      /* 0: the daemon's default */
  uint32_t host_calls_per_access;    /* 0: the daemon's default */
  uint32_t flags;                    /* VSMMU_CREATE_* */
  uint32_t reserved;
};

/* IDR0-5, IIDR and AIDR as the guest reads them (IHI 0070 6.3.1-6.3.8). */
struct vsmmu_id_registers {
  uint32_t size;
  uint32_t idr[6];
  uint32_t iidr, aidr;
};

/* One vSMMU's figures (vsmmu_client_stats). */
struct vsmmu_stats {
  uint32_t size;
  uint32_t reserved;
  /* host calls and their effects */
  uint64_t host_calls, hwpt_allocs, hwpt_shared, attaches, ste_unchanged;
  uint64_t invalidate_calls, forwarded, host_time_ns;
  /* the guest's side */
  uint64_t commands, coalesced, syncs, ste_reinstalls, command_errors, bad_stes;
  uint64_t events, events_lost, deferred;
  uint64_t host_objects;    /* what the vSMMU holds on the host now */
  uint64_t posted_failures; /* posted writes that failed */
  /* The host's MSI window of the vSMMU's devices (the lowest, and how many distinct ones; 0 if none reported),
     which guest RAM may not overlap and the guest's IORT RMR / DT reserved-memory must map 1:1; and the stage-1
     faults seen inside a device's window (docs/interrupts.md). Zero from an older daemon. */
  uint64_t msi_window_base, msi_window_size, msi_windows;
  uint64_t msi_window_faults;
  /* Stalls forwarded to the guest, answered by its CMD_RESUME retry, aborted (by the guest or for a stream
     reconfigured or removed), and answered INVALID without reaching the guest (docs/virtual-smmu.md). Zero from
     an older daemon. */
  uint64_t stalls, stalls_resumed, stalls_aborted, stalls_dropped;
};

/* A DMA by a simulated device's engine (the simulated host only). */
struct vsmmu_dma_args {
  uint32_t size;
  uint32_t direction;  /* VSMMU_DMA_WRITE or VSMMU_DMA_READ */
  const char *engine;  /* the engine's name in the host profile */
  uint64_t iova;
  void *data;          /* a write's bytes, or a read's buffer */
  uint32_t length;     /* bytes to move */
  uint32_t flags;      /* VSMMU_DMA_SSID_VALID */
  uint32_t ssid;
  uint32_t vsmmu;      /* 0, or the vSMMU the device sits behind: the DMA then follows its posted writes */
};
struct vsmmu_dma_result {
  uint32_t size;
  uint32_t faulted; /* 1: the DMA stopped at a fault (the event went to the guest) */
  uint64_t bytes;   /* bytes moved before it stopped */
};

/* Live migration (docs/protocol.md "Live migration (16-20)"). */
/* vsmmu_dirty_info.mode */
#define VSMMU_DIRTY_MODE_HARDWARE 1u     /* a round reports exactly the pages devices and the vSMMU wrote */
#define VSMMU_DIRTY_MODE_CONSERVATIVE 2u /* some nest parent cannot track: every round reports every page */
/* vsmmu_client_dirty_get's flags */
#define VSMMU_DIRTY_NO_CLEAR (1u << 0)   /* report without clearing */
/* vsmmu_dirty_result.flags */
#define VSMMU_DIRTY_CONSERVATIVE (1u << 0) /* every page reported: no exact information this round */
#define VSMMU_DIRTY_REMOVED (1u << 1)      /* the region was removed while tracking: its last bits */
/* The largest state vsmmu_client_load_state takes. */
#define VSMMU_STATE_MAX_BYTES (64ull << 20)

/* How the daemon tracks the VM's dirty pages (vsmmu_client_dirty_start). */
struct vsmmu_dirty_info {
  uint32_t size;
  uint32_t mode;      /* VSMMU_DIRTY_MODE_* */
  uint32_t parents;   /* nest parents on the VM's IOAS */
  uint32_t tracking;  /* of which track dirty pages in hardware */
  char reason[512];   /* conservative: which nest parent cannot track and why, NUL-terminated (cut to fit) */
};
/* One region's round (vsmmu_client_dirty_get). */
struct vsmmu_dirty_result {
  uint32_t size;
  uint32_t flags;     /* VSMMU_DIRTY_CONSERVATIVE, VSMMU_DIRTY_REMOVED */
  uint64_t pages;     /* bits that describe the region */
  uint64_t dirty;     /* of which set */
};

/* Connects to the daemon and says HELLO. On failure *client is NULL and vsmmu_client_last_error(NULL) says why
 * (per thread). */
VSMMU_CLIENT_API int vsmmu_client_connect(const char *socket_path, struct vsmmu_client **client);
/* Closes the connection: the daemon destroys every vSMMU and region of it. NULL is allowed. */
VSMMU_CLIENT_API void vsmmu_client_close(struct vsmmu_client *client);
/* The last failure's text on `client` ("" if none); with NULL, this thread's last vsmmu_client_connect
 * failure. Valid until the next call on the client. */
VSMMU_CLIENT_API const char *vsmmu_client_last_error(const struct vsmmu_client *client);
/* Bounds every wait for the daemon; 0 waits for ever (the default). */
VSMMU_CLIENT_API int vsmmu_client_set_timeout(struct vsmmu_client *client, uint32_t milliseconds);
VSMMU_CLIENT_API int vsmmu_client_daemon_info(struct vsmmu_client *client, struct vsmmu_daemon_info *info);

/* Guest RAM [gpa, gpa + length) is `memfd` from fd_offset (page aligned). */
VSMMU_CLIENT_API int vsmmu_client_add_region(struct vsmmu_client *client, uint64_t gpa, uint64_t length, int memfd,
                                             uint64_t fd_offset);
VSMMU_CLIENT_API int vsmmu_client_remove_region(struct vsmmu_client *client, uint64_t gpa);

/* Creates a vSMMU; *handle names it from now on. `ids` may be NULL. */
VSMMU_CLIENT_API int vsmmu_client_create_vsmmu(struct vsmmu_client *client, const struct vsmmu_create_args *args,
                                               uint32_t *handle, struct vsmmu_id_registers *ids);
VSMMU_CLIENT_API int vsmmu_client_destroy_vsmmu(struct vsmmu_client *client, uint32_t handle);
/* Hot-plug: by name (device_name not NULL) or by VFIO cdev fd. */
VSMMU_CLIENT_API int vsmmu_client_attach_device(struct vsmmu_client *client, uint32_t handle, uint32_t vsid,
                                                const char *device_name, int device_fd);
VSMMU_CLIENT_API int vsmmu_client_detach_device(struct vsmmu_client *client, uint32_t handle, uint32_t vsid);

/* The guest's accesses to the vSMMU's registers: offset from page 0 (page 1 at 0x10000), width 4 or 8. */
VSMMU_CLIENT_API int vsmmu_client_mmio_read(struct vsmmu_client *client, uint32_t handle, uint64_t offset,
                                            uint32_t width, uint64_t *value);
VSMMU_CLIENT_API int vsmmu_client_mmio_write(struct vsmmu_client *client, uint32_t handle, uint64_t offset,
                                             uint64_t value, uint32_t width, uint32_t flags);
/* 0 if no posted write failed since the last call; otherwise the first failure's negative errno, with its text
 * and the count of failures in vsmmu_client_last_error. */
VSMMU_CLIENT_API int vsmmu_client_check_posted(struct vsmmu_client *client);

/* A vSMMU's MSI to an address outside guest RAM (VSMMU_FEATURE_MSI, the MSI wish): the VMM delivers it. */
struct vsmmu_msi {
  uint32_t vsmmu;   /* the vSMMU's handle */
  uint32_t dropped; /* MSIs dropped before this one (the client was not reading) */
  uint64_t address; /* the doorbell the guest programmed (IRQ_CFG0, MSIAddr) */
  uint32_t data;    /* its payload (IRQ_CFG1, MSIData) */
  uint32_t reserved;
};
/* Up to `max` MSIs received for vSMMU `handle` (0: any), oldest first, into out[]; *count says how many. Reads
 * what waits on the connection without blocking (vsmmu_client_fd is readable then). */
VSMMU_CLIENT_API int vsmmu_client_take_msis(struct vsmmu_client *client, uint32_t handle, struct vsmmu_msi *out,
                                            uint32_t max, uint32_t *count);
/* A vSMMU's one-line notice for the VMM's operator (VSMMU_FEATURE_NOTICE), which the daemon also logged. */
#define VSMMU_NOTICE_MSI_WINDOW_FAULT 1u /* a device's DMA faulted in the guest's stage 1 in its host MSI window */
#define VSMMU_NOTICE_TEXT_MAX 1024u      /* the longest text the daemon sends */
struct vsmmu_notice {
  uint32_t vsmmu;   /* the vSMMU's handle */
  uint32_t kind;    /* VSMMU_NOTICE_* (a later daemon may send kinds this header does not name) */
  uint32_t vsid;    /* the device it concerns */
  uint32_t dropped; /* notices dropped before this one (the client was not reading) */
  char text[VSMMU_NOTICE_TEXT_MAX + 1]; /* NUL-terminated */
};
/* Up to `max` notices received for vSMMU `handle` (0: any), oldest first, into out[]; *count says how many. As
 * vsmmu_client_take_msis, it reads what waits on the connection without blocking. */
VSMMU_CLIENT_API int vsmmu_client_take_notices(struct vsmmu_client *client, uint32_t handle,
                                               struct vsmmu_notice *out, uint32_t max, uint32_t *count);

/* The connection's socket, to poll for readability (MSIs, notices, posted failures); the client keeps it. */
VSMMU_CLIENT_API int vsmmu_client_fd(struct vsmmu_client *client);

/* The eventfd the daemon signals for a VSMMU_IRQ_* line; -1 clears it. */
VSMMU_CLIENT_API int vsmmu_client_set_irq(struct vsmmu_client *client, uint32_t handle, uint32_t line, int eventfd);

VSMMU_CLIENT_API int vsmmu_client_stats(struct vsmmu_client *client, uint32_t handle, struct vsmmu_stats *stats);

VSMMU_CLIENT_API int vsmmu_client_sim_dma(struct vsmmu_client *client, const struct vsmmu_dma_args *args,
                                          struct vsmmu_dma_result *result);

/* Live migration. The VM's dirty log over all of the client's guest RAM: on (`info` may be NULL) and off. */
VSMMU_CLIENT_API int vsmmu_client_dirty_start(struct vsmmu_client *client, struct vsmmu_dirty_info *info);
VSMMU_CLIENT_API int vsmmu_client_dirty_stop(struct vsmmu_client *client);
/* The dirty bitmap of the region that starts at region_gpa, written by the daemon into `bitmap_fd` (a memfd at
 * least bitmap_offset + 8 * ceil(pages / 64) bytes long) at `bitmap_offset` (page aligned): bit i is the page
 * at region_gpa + i * 4096, bit i % 8 of byte i / 8. `flags`: VSMMU_DIRTY_NO_CLEAR. `result` may be NULL. */
VSMMU_CLIENT_API int vsmmu_client_dirty_get(struct vsmmu_client *client, uint64_t region_gpa, int bitmap_fd,
                                            uint64_t bitmap_offset, uint32_t flags, struct vsmmu_dirty_result *result);
/* The vSMMU's state, written by the daemon into `fd` (a memfd: truncated to the state's length, written from
 * offset 0); *state_bytes is its length. */
VSMMU_CLIENT_API int vsmmu_client_save_state(struct vsmmu_client *client, uint32_t handle, int fd,
                                             uint64_t *state_bytes);
/* Loads state_bytes of a saved state from offset 0 of `fd` into a vSMMU created with the source's wishes and
 * devices (same vSIDs) that the guest has not programmed. */
VSMMU_CLIENT_API int vsmmu_client_load_state(struct vsmmu_client *client, uint32_t handle, int fd,
                                             uint64_t state_bytes);

#ifdef __cplusplus
}
#endif

#endif /* VSMMU_CLIENT_H */

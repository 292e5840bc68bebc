/*
 * A minimal VMM in C99 that gives its "guest" a virtual SMMUv3 through vsmmud, using only vsmmu_client.h.
 * It plays both parts a real VMM keeps apart: the VMM (guest RAM, the vSMMU, an interrupt eventfd) and the
 * guest's SMMU driver (a command queue in guest RAM, one CMD_SYNC, polling CMDQ_CONS), as Linux's
 * arm-smmu-v3 driver does at probe (drivers/iommu/arm/arm-smmu-v3/arm-smmu-v3.c).
 *
 * Usage: c_vmm SOCKET        (against `vsmmud --host sim --socket SOCKET`)
 * Exit status: 0 when every step held; 1 otherwise, each failure printed with the library's text.
 */
#define _GNU_SOURCE /* memfd_create */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include <vsmmu_client.h>

/* Guest RAM: 16 MiB at GPA 0x40000000; the command queue in its second page. */
#define RAM_GPA 0x40000000ull
#define RAM_SIZE (16ull << 20)
#define CMDQ_OFFSET 0x1000ull

/* SMMUv3 registers (IHI 0070 6.2, 6.3), offsets from page 0. */
#define SMMU_IDR0 0x00
#define SMMU_IDR1 0x04
#define SMMU_IDR5 0x14
#define SMMU_CR0 0x20             /* 6.3.9 */
#define SMMU_CR0ACK 0x24          /* 6.3.10 */
#define SMMU_CMDQ_BASE 0x90       /* 6.3.26: ADDR[51:5], LOG2SIZE[4:0] */
#define SMMU_CMDQ_PROD 0x98       /* 6.3.27 */
#define SMMU_CMDQ_CONS 0x9c       /* 6.3.28: RD, ERR[30:24] */
#define CR0_CMDQEN (1u << 3)
#define IDR1_CMDQS(idr1) (((idr1) >> 21) & 0x1f) /* 6.3.2 */
#define CMDQ_CONS_ERR(cons) (((cons) >> 24) & 0x7f)
#define CMD_SYNC 0x46ull          /* 4.7.3: opcode [7:0], CS [13:12] = 0: no signal */
#define POLLS 1000

static int failed(struct vsmmu_client *client, const char *step, int rc) {
  fprintf(stderr, "c_vmm: %s failed (%d): %s\n", step, rc, vsmmu_client_last_error(client));
  return 1;
}

static int read32(struct vsmmu_client *client, uint32_t vsmmu, uint64_t offset, uint32_t *value) {
  uint64_t v = 0;
  int rc = vsmmu_client_mmio_read(client, vsmmu, offset, 4, &v);
  *value = (uint32_t)v;
  return rc;
}

/* The guest's driver: a command queue of 2^log2size entries at `cmdq_gpa`, enabled; one CMD_SYNC, waited for. */
static int run_command_queue(struct vsmmu_client *client, uint32_t vsmmu, unsigned char *cmdq, uint64_t cmdq_gpa,
                             unsigned log2size) {
  uint32_t ack = 0, cons = 0, prod;
  uint64_t sync = CMD_SYNC;
  int rc, i;

  if ((rc = vsmmu_client_mmio_write(client, vsmmu, SMMU_CMDQ_BASE, cmdq_gpa | log2size, 8, VSMMU_MMIO_POSTED)) ||
      (rc = vsmmu_client_mmio_write(client, vsmmu, SMMU_CMDQ_PROD, 0, 4, VSMMU_MMIO_POSTED)) ||
      (rc = vsmmu_client_mmio_write(client, vsmmu, SMMU_CMDQ_CONS, 0, 4, VSMMU_MMIO_POSTED)) ||
      (rc = vsmmu_client_mmio_write(client, vsmmu, SMMU_CR0, CR0_CMDQEN, 4, VSMMU_MMIO_POSTED)))
    return failed(client, "programming the command queue", rc);
  for (i = 0; i < POLLS && !(ack & CR0_CMDQEN); i++)
    if ((rc = read32(client, vsmmu, SMMU_CR0ACK, &ack))) return failed(client, "reading CR0ACK", rc);
  if (!(ack & CR0_CMDQEN)) {
    fprintf(stderr, "c_vmm: CR0ACK.CMDQEN never followed CR0 (CR0ACK %#" PRIx32 ")\n", ack);
    return 1;
  }

  /* Entry 0: CMD_SYNC, 16 bytes little-endian (the host is little-endian too). */
  memset(cmdq, 0, 16);
  memcpy(cmdq, &sync, sizeof sync);
  prod = 1; /* index 1, wrap bit clear */
  if ((rc = vsmmu_client_mmio_write(client, vsmmu, SMMU_CMDQ_PROD, prod, 4, VSMMU_MMIO_POSTED)))
    return failed(client, "writing CMDQ_PROD", rc);
  for (i = 0; i < POLLS; i++) {
    if ((rc = read32(client, vsmmu, SMMU_CMDQ_CONS, &cons))) return failed(client, "reading CMDQ_CONS", rc);
    if (CMDQ_CONS_ERR(cons) || (cons & ((2u << log2size) - 1)) == prod) break;
  }
  if ((cons & ((2u << log2size) - 1)) != prod || CMDQ_CONS_ERR(cons)) {
    fprintf(stderr, "c_vmm: the CMD_SYNC was not consumed (CMDQ_CONS %#" PRIx32 ", ERR %" PRIu32 ")\n", cons,
            CMDQ_CONS_ERR(cons));
    return 1;
  }
  printf("command queue: CMD_SYNC consumed, CMDQ_CONS %#" PRIx32 "\n", cons);
  /* The writes above were posted: any that failed is reported now. */
  if ((rc = vsmmu_client_check_posted(client))) return failed(client, "a posted register write", rc);
  return 0;
}

int main(int argc, char **argv) {
  struct vsmmu_client *client = NULL;
  struct vsmmu_daemon_info info;
  struct vsmmu_create_args args;
  struct vsmmu_id_registers ids;
  struct vsmmu_stats stats;
  struct vsmmu_dirty_info dirty_info;
  struct vsmmu_dirty_result dirty;
  struct vsmmu_notice notice;
  uint32_t notices = 0;
  unsigned char *ram = MAP_FAILED;
  uint32_t vsmmu = 0, idr0 = 0, idr1 = 0, idr5 = 0, cons = 0;
  uint64_t state_bytes = 0;
  unsigned log2size;
  int memfd = -1, irq = -1, bitmap = -1, state = -1, rc, status = 1;

  if (argc != 2) {
    fprintf(stderr, "usage: %s SOCKET   (the socket of `vsmmud --host sim --socket SOCKET`)\n", argv[0]);
    return 2;
  }
  if ((rc = vsmmu_client_connect(argv[1], &client))) return failed(NULL, "connecting", rc);
  memset(&info, 0, sizeof info);
  info.size = sizeof info;
  if ((rc = vsmmu_client_daemon_info(client, &info))) {
    failed(client, "reading the daemon's info", rc);
    goto out;
  }
  printf("vsmmud: protocol %" PRIu32 ", %s host, %" PRIu32 " vSMMUs and %" PRIu32 " regions per connection\n",
         info.version, info.host == VSMMU_HOST_SIM ? "simulated" : "kernel", info.max_vsmmus, info.max_regions);

  /* Guest RAM: a memfd the daemon maps too, so both see the guest's queues. */
  memfd = memfd_create("c-vmm-guest-ram", MFD_CLOEXEC);
  if (memfd < 0 || ftruncate(memfd, (off_t)RAM_SIZE) != 0) {
    perror("c_vmm: guest RAM memfd");
    goto out;
  }
  ram = mmap(NULL, RAM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
  if (ram == MAP_FAILED) {
    perror("c_vmm: mapping guest RAM");
    goto out;
  }
  if ((rc = vsmmu_client_add_region(client, RAM_GPA, RAM_SIZE, memfd, 0))) {
    failed(client, "ADD_REGION", rc);
    goto out;
  }

  /* The vSMMU, with the simulated host's device "nic0" at vSID 0x10. */
  memset(&args, 0, sizeof args);
  args.size = sizeof args;
  args.policy = VSMMU_POLICY_BATCHED;
  args.name = "c-vmm-smmu0";
  args.device_name = "nic0";
  args.vsid = 0x10;
  memset(&ids, 0, sizeof ids);
  ids.size = sizeof ids;
  if ((rc = vsmmu_client_create_vsmmu(client, &args, &vsmmu, &ids))) {
    failed(client, "CREATE_VSMMU", rc);
    goto out_region;
  }
  /* The event queue's interrupt: a real VMM hands this eventfd to KVM as an irqfd. */
  irq = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (irq < 0) {
    perror("c_vmm: eventfd");
    goto out_vsmmu;
  }
  if ((rc = vsmmu_client_set_irq(client, vsmmu, VSMMU_IRQ_EVENTQ, irq))) {
    failed(client, "SET_IRQ", rc);
    goto out_vsmmu;
  }

  /* What the guest's driver reads first (IHI 0070 6.3.1, 6.3.2, 6.3.6). */
  if ((rc = read32(client, vsmmu, SMMU_IDR0, &idr0)) || (rc = read32(client, vsmmu, SMMU_IDR1, &idr1)) ||
      (rc = read32(client, vsmmu, SMMU_IDR5, &idr5))) {
    failed(client, "reading the ID registers", rc);
    goto out_vsmmu;
  }
  printf("vSMMU %" PRIu32 ": IDR0 %#010" PRIx32 " IDR1 %#010" PRIx32 " IDR5 %#010" PRIx32 "\n", vsmmu, idr0, idr1,
         idr5);
  if (idr0 != ids.idr[0] || idr1 != ids.idr[1] || idr5 != ids.idr[5]) {
    fprintf(stderr, "c_vmm: the ID registers read differ from CREATE_VSMMU's\n");
    goto out_vsmmu;
  }

  log2size = IDR1_CMDQS(idr1) < 8 ? IDR1_CMDQS(idr1) : 8;
  if (run_command_queue(client, vsmmu, ram + CMDQ_OFFSET, RAM_GPA + CMDQ_OFFSET, log2size)) goto out_vsmmu;

  memset(&stats, 0, sizeof stats);
  stats.size = sizeof stats;
  if ((rc = vsmmu_client_stats(client, vsmmu, &stats))) {
    failed(client, "STATS", rc);
    goto out_vsmmu;
  }
  printf("vSMMU %" PRIu32 ": %" PRIu64 " commands, %" PRIu64 " syncs, %" PRIu64 " host calls\n", vsmmu,
         stats.commands, stats.syncs, stats.host_calls);
  if (stats.syncs != 1) {
    fprintf(stderr, "c_vmm: the vSMMU counted %" PRIu64 " CMD_SYNCs, not 1\n", stats.syncs);
    goto out_vsmmu;
  }
  /* The host's MSI window: guest RAM must stay out of it, and the guest's IORT RMR (or DT reserved-memory)
   * must describe it so the guest maps it 1:1 (docs/interrupts.md). */
  if (stats.msi_windows)
    printf("host MSI window: 0x%" PRIx64 "-0x%" PRIx64 "\n", stats.msi_window_base,
           stats.msi_window_base + stats.msi_window_size - 1);
  /* The vSMMU's notices for the operator (a device whose MSIs fault in the guest's stage 1, VSMMU_FEATURE_NOTICE),
   * which the daemon also logs: a VMM takes them when vsmmu_client_fd is readable. This guest made none. */
  while ((rc = vsmmu_client_take_notices(client, vsmmu, &notice, 1, &notices)) == 0 && notices == 1)
    printf("vSMMU %" PRIu32 " notice (vSID %#" PRIx32 "): %s\n", notice.vsmmu, notice.vsid, notice.text);
  if (rc) {
    failed(client, "taking notices", rc);
    goto out_vsmmu;
  }

  /* One round of live migration's dirty log: the pages of guest RAM devices wrote, one bit per 4 KiB page in a
   * bitmap file the daemon writes (docs/protocol.md "Live migration (16-20)"). */
  memset(&dirty_info, 0, sizeof dirty_info);
  dirty_info.size = sizeof dirty_info;
  if ((rc = vsmmu_client_dirty_start(client, &dirty_info))) {
    failed(client, "DIRTY_START", rc);
    goto out_vsmmu;
  }
  bitmap = memfd_create("c-vmm-dirty-bitmap", MFD_CLOEXEC);
  if (bitmap < 0 || ftruncate(bitmap, 4096) != 0) {
    perror("c_vmm: dirty bitmap memfd");
    goto out_vsmmu;
  }
  memset(&dirty, 0, sizeof dirty);
  dirty.size = sizeof dirty;
  if ((rc = vsmmu_client_dirty_get(client, RAM_GPA, bitmap, 0, 0, &dirty))) {
    failed(client, "DIRTY_GET", rc);
    goto out_vsmmu;
  }
  printf("dirty log (%s%s%s): %" PRIu64 " of %" PRIu64 " pages dirty\n",
         dirty_info.mode == VSMMU_DIRTY_MODE_HARDWARE ? "hardware" : "conservative",
         dirty_info.reason[0] ? ": " : "", dirty_info.reason, dirty.dirty, dirty.pages);
  if ((rc = vsmmu_client_dirty_stop(client))) {
    failed(client, "DIRTY_STOP", rc);
    goto out_vsmmu;
  }
  if (dirty.pages != RAM_SIZE / 4096 || dirty.dirty > dirty.pages) {
    fprintf(stderr, "c_vmm: DIRTY_GET described %" PRIu64 " of %" PRIu64 " pages, not of %llu\n", dirty.dirty,
            dirty.pages, RAM_SIZE / 4096);
    goto out_vsmmu;
  }

  /* The vSMMU's state into a memfd, and back into a new vSMMU with the same device at the same vSID, as a
   * destination VMM loads it: the guest's command queue is where it left it (IHI 0070 6.3.26-6.3.28). */
  state = memfd_create("c-vmm-state", MFD_CLOEXEC);
  if (state < 0) {
    perror("c_vmm: state memfd");
    goto out_vsmmu;
  }
  if ((rc = vsmmu_client_save_state(client, vsmmu, state, &state_bytes))) {
    failed(client, "SAVE_STATE", rc);
    goto out_vsmmu;
  }
  if ((rc = vsmmu_client_destroy_vsmmu(client, vsmmu))) {
    failed(client, "DESTROY_VSMMU", rc);
    goto out_region;
  }
  if ((rc = vsmmu_client_create_vsmmu(client, &args, &vsmmu, &ids))) {
    failed(client, "CREATE_VSMMU (the restored vSMMU)", rc);
    goto out_region;
  }
  if ((rc = vsmmu_client_load_state(client, vsmmu, state, state_bytes))) {
    failed(client, "LOAD_STATE", rc);
    goto out_vsmmu;
  }
  if ((rc = read32(client, vsmmu, SMMU_CMDQ_CONS, &cons))) {
    failed(client, "reading CMDQ_CONS after LOAD_STATE", rc);
    goto out_vsmmu;
  }
  printf("state: %" PRIu64 " bytes saved and loaded into vSMMU %" PRIu32 ", CMDQ_CONS %#" PRIx32 "\n", state_bytes,
         vsmmu, cons);
  status = cons == 1 ? 0 : 1;
  if (status) fprintf(stderr, "c_vmm: the restored vSMMU's CMDQ_CONS is %#" PRIx32 ", not 0x1\n", cons);

out_vsmmu:
  if ((rc = vsmmu_client_destroy_vsmmu(client, vsmmu))) status = failed(client, "DESTROY_VSMMU", rc);
out_region:
  if ((rc = vsmmu_client_remove_region(client, RAM_GPA))) status = failed(client, "REMOVE_REGION", rc);
out:
  if (irq >= 0) close(irq);
  if (bitmap >= 0) close(bitmap);
  if (state >= 0) close(state);
  if (ram != MAP_FAILED) munmap(ram, RAM_SIZE);
  if (memfd >= 0) close(memfd);
  vsmmu_client_close(client);
  if (status == 0) printf("c_vmm: every step held\n");
  return status;
}

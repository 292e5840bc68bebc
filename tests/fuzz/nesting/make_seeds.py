#!/usr/bin/env python3
"""Writes the seed corpus of guest_fuzz / guest_diff_fuzz (tests/fuzz/nesting/seeds/): short guest programs in
the byte format guest_fuzz.cpp decodes (docs/fuzzing.md). Run it after changing that format:
    tests/fuzz/nesting/make_seeds.py
The numbers below are guest_fuzz.cpp's: Op's order, the pick_* tables (kSids, asids, lengths) and the switch
cases of pick_command / pick_ste."""
import os
import struct

# enum class Op
(MMIO_WRITE, MMIO_READ, RAM_BYTES, WRITE_STE, WRITE_CD, WRITE_L1, PUSH_COMMANDS, DOORBELL, COMMANDS_AND_SYNC,
 DMA, PROCESS_EVENTS, ADD_DEVICE, REMOVE_DEVICE, FAIL_NTH, PAGE_TABLE, DRAIN_EVENTS, ACK_GERROR) = range(17)
# kSids indices
NIC0, NIC1, GPU0, SID28 = 0, 1, 2, 5
# kDevices / kEngines indices
DEV_NIC0, DEV_NIC1, DEV_GPU0, DEV_NVME0 = range(4)
# first byte: Setup
LINEAR, GBPA_ABORT, SMALL_CMDQ, SMALL_EVENTQ, NO_PREPARED_STES, PER_COMMAND, NO_SSIDS, TWINS = (1, 2, 4, 8, 16, 32, 64, 128)


def u16(v): return struct.pack('<H', v)
def u32(v): return struct.pack('<I', v)
def u64(v): return struct.pack('<Q', v)


def mmio_write(offset, value, size=4):
    # pick_offset: 0xff selects a raw u32 offset; pick_size: 0 -> 4, 1 -> 8
    return bytes([MMIO_WRITE, 0xff]) + u32(offset) + bytes([0 if size == 4 else 1]) + u64(value)


def mmio_read(offset, size_sel=0):
    return bytes([MMIO_READ, 0xff]) + u32(offset) + bytes([size_sel])


# pick_command cases
def cfgi_ste(sid): return bytes([2, sid, 1])
def cfgi_all(): return bytes([4])
def tlbi_nh_asid(asid_sel): return bytes([8, asid_sel])
def tlbi_nh_va(asid_sel, page): return bytes([9, asid_sel, page, 1])
def tlbi_el2_all(): return bytes([11])


def commands_and_sync(*cmds, irq=False):
    return bytes([COMMANDS_AND_SYNC, len(cmds) - 1]) + b''.join(cmds) + bytes([1 if irq else 0])


def push_commands(*cmds):
    return bytes([PUSH_COMMANDS, len(cmds) - 1]) + b''.join(cmds)


def dma(engine, page, write=True, ssid_sel=0, offset=0, length_sel=1, seed=0x5a):
    # lengths: 8, 64, 256, 4096, 4100, 1, 16, 8192
    return bytes([DMA, engine, 1 if write else 0, ssid_sel, page]) + u16(offset) + bytes([length_sel, seed])


def unmap(asid_b, page):  # page_table without bit 5: unmap only
    return bytes([PAGE_TABLE, (1 if asid_b else 0) | (page << 1)])


ATTACH_NIC0 = commands_and_sync(cfgi_ste(NIC0))
CR0, GBPA, GERROR, CMDQ_CONS, EVENTQ_PROD = 0x20, 0x44, 0x60, 0x9c, 0x100a8

SEEDS = {
    # Stage 1 live for nic0 (the prepared STE made valid by CFGI_STE), DMA in and out, events.
    'attach_dma': bytes([0]) + ATTACH_NIC0 + dma(DEV_NIC0, 0) + dma(DEV_NIC0, 1, write=False) +
                  dma(DEV_NIC0, 6, ssid_sel=2) + bytes([PROCESS_EVENTS, DRAIN_EVENTS]),
    # A global (nG = 0) page unmapped, then TLBI_NH_VA + TLBI_NH_ASID in one batch: the VA form must not be
    # dropped (NH_ASID spares global entries, IHI 0070 4.4.2.2); the device's next write must fault.
    'global_page_tlbi': bytes([0]) + ATTACH_NIC0 + dma(DEV_NIC0, 7) + unmap(False, 7) +
                        commands_and_sync(tlbi_nh_va(0, 7), tlbi_nh_asid(0)) + dma(DEV_NIC0, 7) +
                        bytes([PROCESS_EVENTS, DRAIN_EVENTS]),
    # A non-global page of ASID B unmapped and invalidated by ASID alone.
    'asid_tlbi': bytes([0]) + commands_and_sync(cfgi_ste(NIC1)) + dma(DEV_NIC1, 1, ssid_sel=2) +
                 unmap(True, 1) + commands_and_sync(tlbi_nh_asid(1)) + dma(DEV_NIC1, 1, ssid_sel=2),
    # SMMUEN off: GBPA decides; then GBPA.ABORT cleared with Update (IHI 0070 6.3.14).
    'gbpa': bytes([GBPA_ABORT | LINEAR]) + mmio_write(CR0, 0) + dma(DEV_NIC0, 0) +
            mmio_write(GBPA, 1 << 31) + dma(DEV_NIC1, 2) + mmio_read(GBPA),
    # Hot-plug: gpu0 and nvme0 (another physical SMMU; nvme0 not coherent), nic1 moved to another vSID, a host
    # failure on the way.
    'hotplug': bytes([0]) + bytes([ADD_DEVICE, DEV_GPU0, GPU0, ADD_DEVICE, DEV_NVME0, SID28,
                                    REMOVE_DEVICE, NIC1, FAIL_NTH, 3, ADD_DEVICE, DEV_NIC1, SID28,
                                    ADD_DEVICE, DEV_NIC1, SID28]) + commands_and_sync(cfgi_all()) +
               dma(DEV_NIC1, 0),
    # A broken STE: C_BAD_STE in the event queue, the guest drains it and acknowledges.
    'bad_ste': bytes([0]) + bytes([WRITE_STE, NIC0, 0x80 | 3, 0, 0, 0, 3]) + ATTACH_NIC0 +
               bytes([PROCESS_EVENTS, DRAIN_EVENTS, ACK_GERROR]) + dma(DEV_NIC0, 0),
    # An illegal command for a stage-1-only SMMU: CERROR_ILL, GERROR.CMDQ_ERR; acknowledged, then more commands.
    'cmd_error': bytes([0]) + commands_and_sync(tlbi_el2_all(), cfgi_ste(NIC0)) + mmio_read(CMDQ_CONS) +
                 mmio_read(GERROR) + bytes([ACK_GERROR]) + ATTACH_NIC0 + dma(DEV_NIC0, 0),
    # Small queues: the command queue wraps, faults overflow a 2-entry event queue.
    'small_queues': bytes([SMALL_CMDQ | SMALL_EVENTQ]) + ATTACH_NIC0 + ATTACH_NIC0 + ATTACH_NIC0 +
                    b''.join(dma(DEV_NIC0, 8, length_sel=0) for _ in range(5)) +
                    bytes([PROCESS_EVENTS]) + mmio_read(EVENTQ_PROD) + bytes([DRAIN_EVENTS]),
    # Commands written, published later; a level-1 descriptor rewritten under a live stream.
    'doorbell_l1': bytes([NO_PREPARED_STES]) + push_commands(cfgi_ste(NIC0), cfgi_ste(NIC1)) + bytes([DOORBELL]) +
                   bytes([WRITE_L1, NIC0, 0]) + commands_and_sync(cfgi_all()) + dma(DEV_NIC0, 0),
    # Two alike SMMUs: gpu0 joins on the second one (a second vIOMMU); stage 1 on both; a global page unmapped
    # and invalidated by VA + ASID, which must reach both vIOMMUs; nvme0 (not coherent) is refused.
    'twins': bytes([TWINS]) + bytes([ADD_DEVICE, DEV_GPU0, GPU0, ADD_DEVICE, DEV_NVME0, SID28]) +
             commands_and_sync(cfgi_ste(NIC0), cfgi_ste(GPU0)) + dma(DEV_GPU0, 7) + dma(DEV_NIC0, 7) +
             unmap(False, 7) + commands_and_sync(tlbi_nh_va(0, 7), tlbi_nh_asid(0)) + dma(DEV_GPU0, 7) +
             dma(DEV_NIC0, 7) + bytes([PROCESS_EVENTS, DRAIN_EVENTS, REMOVE_DEVICE, GPU0]) + dma(DEV_GPU0, 0),
    # 25 x (3 TLBIs + CMD_SYNC) behind one doorbell: per_command makes a host call per TLBI, more than one
    # access may make (VirtualSmmuConfig::host_calls_per_access), so CMDQ_CONS advances on later accesses and
    # process_events().
    'long_queue': bytes([0]) + ATTACH_NIC0 +
                  b''.join(push_commands(*(tlbi_nh_va(i % 2, (3 * j + i) % 8) for i in range(3)), bytes([0]))
                           for j in range(25)) +
                  commands_and_sync(cfgi_ste(NIC0)) + mmio_read(CMDQ_CONS) + bytes([PROCESS_EVENTS]) +
                  mmio_read(CMDQ_CONS) + dma(DEV_NIC0, 0),
    # Odd MMIO: unaligned offsets, sizes 1/2/3/16, holes, past page 1.
    'mmio_odd': bytes([PER_COMMAND | NO_SSIDS]) + mmio_read(0x21, 10) + mmio_read(0x22, 11) + mmio_read(0x98, 14) +
                mmio_read(0x1000, 0) + mmio_read(0x20004, 1) + mmio_write(0x9a, 5, 4) + mmio_read(0x90, 1),
}

here = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'seeds')
os.makedirs(here, exist_ok=True)
for name, data in SEEDS.items():
    with open(os.path.join(here, name), 'wb') as f:
        f.write(data)
print(f'{len(SEEDS)} seeds in {here}')

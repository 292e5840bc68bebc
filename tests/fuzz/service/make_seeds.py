#!/usr/bin/env python3
"""Writes the seed corpus of protocol_fuzz (tests/fuzz/service/seeds/): requests a VMM sends, each behind the
context byte protocol_fuzz.cpp reads first (bits 0-1 the fds that came with it, bit 2 the kernel host, bit 3 a
4096-byte max_message). Run it after changing the wire format (service/protocol.hpp, docs/protocol.md):
    tests/fuzz/service/make_seeds.py
The layouts below are protocol.hpp's structs, field by field (docs/protocol.md, "Header" and the tables under
"Ops")."""
import os
import struct

HELLO, CREATE, DESTROY, ADD_REGION, REMOVE_REGION, ATTACH, DETACH, MMIO_READ, MMIO_WRITE, SET_IRQ, STATS, \
    SIM_DMA = range(1, 13)
MSI, NOTICE = 13, 14  # the daemon's messages: a client sending one is refused (EINVAL)
DIRTY_START, DIRTY_STOP, DIRTY_GET, SAVE_STATE, LOAD_STATE = range(16, 21)
POSTED = 1 << 1
MAGIC = 0x554d4d53
KERNEL = 4


def context(fds=0, host=0, small=False):
    return bytes([fds | host | (8 if small else 0)])


def packet(op, body, tail=b'', vsmmu=0, flags=0, tag=1):
    size = 24 + len(body) + len(tail)
    return struct.pack('<IHHQIi', size, op, flags, tag, vsmmu, 0) + body + tail


def sized(fmt, *fields):
    """A body: its size first, then the fields."""
    return struct.pack(fmt, struct.calcsize(fmt), *fields)


def hello(vmin=1, vmax=1, features=0, max_message=0):
    return packet(HELLO, sized('<IIIIQII', MAGIC, vmin, vmax, features, max_message, 0))


def wishes(present=0, values=bytes(14)):
    return struct.pack('<I', present) + values + bytes(16 - len(values))


def create(name=b'', device=b'', policy=0, flags=0, vsid=0x10, w=None):
    body = struct.pack('<II', 52, policy) + (w or wishes()) + struct.pack('<IIIIII', 0, 0, flags, vsid, len(name),
                                                                         len(device))
    return packet(CREATE, body, name + device)


def add_region(gpa, length, fd_offset=0):
    return packet(ADD_REGION, sized('<IIQQQ', 0, gpa, length, fd_offset))


def attach(vsid, device=b'', vsmmu=1):
    return packet(ATTACH, sized('<IIII', vsid, len(device), 0), device, vsmmu=vsmmu)


def mmio_read(offset, width=4, vsmmu=1):
    return packet(MMIO_READ, sized('<IIQ', width, offset), vsmmu=vsmmu)


def mmio_write(offset, value, width=4, posted=False, vsmmu=1):
    return packet(MMIO_WRITE, sized('<IIQQ', width, offset, value), vsmmu=vsmmu, flags=POSTED if posted else 0)


def sim_dma(engine, iova, length, data=b'', read=False, ssid=None):
    body = sized('<IIQIIII', 1 if read else 0, iova, length, len(engine), ssid or 0, 0 if ssid is None else 1)
    return packet(SIM_DMA, body, engine + data)


SEEDS = {
    'hello': context() + hello(),
    'hello_range_features': context() + hello(0, 3, features=3, max_message=65536),
    'create_sim': context() + create(b'vsmmu0', b'nic0'),
    'create_sim_unnamed_per_command': context() + create(b'', b'gpu0', policy=1, flags=1, vsid=0x18),
    # wishes: IPA 48 bits, SSID 5 bits, 2-level stream table (present: ipa_bits, ssid_bits, st_level)
    'create_sim_wishes': context() + create(b'v', b'nic0', w=wishes(1 | 8 | 64, bytes([48, 0, 0, 5, 0, 0, 1]) +
                                                                     bytes(6))),
    # the MSI wish (present bit 13, byte 17 of WireWishes)
    'create_sim_msi_wish': context() + create(b'v', b'nic0', w=wishes(1 << 13, bytes(13) + b'\x01')),
    'create_kernel': context(1, KERNEL) + create(b'vsmmu0'),
    'destroy': context() + packet(DESTROY, sized('<II', 0), vsmmu=1),
    'add_region': context(1) + add_region(0x40000000, 0x8000000),
    'add_region_offset': context(1, KERNEL) + add_region(0x100000000, 0x200000, 0x1000),
    'remove_region': context() + packet(REMOVE_REGION, sized('<IIQ', 0, 0x40000000)),
    'attach_sim': context() + attach(0x18, b'nic1'),
    'attach_kernel': context(1, KERNEL) + attach(0x20),
    'detach': context() + packet(DETACH, sized('<II', 0x18), vsmmu=1),
    'mmio_read_idr0': context() + mmio_read(0x0),
    'mmio_read_cmdq_base': context() + mmio_read(0x90, 8),
    'mmio_read_page1_eventq_prod': context(0, KERNEL) + mmio_read(0x100a8),
    'mmio_write_cr0': context() + mmio_write(0x20, 0xd),
    'mmio_write_posted_cmdq_prod': context() + mmio_write(0x98, 3, posted=True),
    'mmio_write_strtab_base': context(0, KERNEL) + mmio_write(0x80, 0x40001000, width=8),
    'set_irq_eventq': context(1) + packet(SET_IRQ, sized('<II', 0), vsmmu=1),
    'set_irq_clear_gerror': context() + packet(SET_IRQ, sized('<II', 1), vsmmu=1),
    'stats_daemon': context() + packet(STATS, sized('<II', 0)),
    'stats_vsmmu': context() + packet(STATS, sized('<II', 0), vsmmu=2),
    'sim_dma_write': context() + sim_dma(b'nic0.dma', 0x1000, 8, b'\x11' * 8),
    'sim_dma_read_ssid': context(0, 0, True) + sim_dma(b'nic0.dma', 0x2000, 64, read=True, ssid=1),
    'dirty_start': context() + packet(DIRTY_START, sized('<II', 0)),
    'dirty_stop': context() + packet(DIRTY_STOP, sized('<II', 0)),
    'dirty_get_no_clear': context(1) + packet(DIRTY_GET, sized('<IIQQ', 1, 0x40000000, 0x1000)),
    'save_state': context(1) + packet(SAVE_STATE, sized('<II', 0), vsmmu=1),
    'load_state': context(1) + packet(LOAD_STATE, sized('<IIQ', 0, 4096), vsmmu=1),
    # refused: a reserved op (ENOSYS), and a longer body whose extra bytes are zero (accepted) or not (E2BIG)
    'reserved_op': context() + packet(15, sized('<II', 0), vsmmu=1),
    'msi_from_client': context() + packet(MSI, sized('<IIQII', 0, 0x08090040, 0x21, 0), vsmmu=1),
    # NoticeMessage: kind 1 (msi_window_fault), vsid, dropped, text_len, reserved; the text as the tail
    'notice_from_client': context() + packet(NOTICE, sized('<IIIIII', 1, 0x10, 0, 6, 0), b'nic0: ', vsmmu=1),
    'mmio_read_longer_zero': context() + packet(MMIO_READ, sized('<IIQQ', 4, 0x20, 0), vsmmu=1),
    'mmio_read_longer_nonzero': context() + packet(MMIO_READ, sized('<IIQQ', 4, 0x20, 1), vsmmu=1),
}

here = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'seeds')
os.makedirs(here, exist_ok=True)
for name, data in SEEDS.items():
    with open(os.path.join(here, name), 'wb') as f:
        f.write(data)
print(f'{len(SEEDS)} seeds in {here}')

#!/usr/bin/env python3
"""Writes the seed corpus of state_fuzz (tests/fuzz/nesting/state_seeds/): CBOR bodies of vSMMU migration
states (nesting/migration_state.hpp, docs/migration.md "The state format"), which state_fuzz also seals with a
correct header; one sealed state as a whole. Run it after changing the state's body:
    tests/fuzz/nesting/make_state_seeds.py"""
import os
import struct
import zlib


def head(major, n):
    if n < 24:
        return bytes([major << 5 | n])
    for code, fmt in ((24, '>B'), (25, '>H'), (26, '>I'), (27, '>Q')):
        if n < 1 << (8 * struct.calcsize(fmt)):
            return bytes([major << 5 | code]) + struct.pack(fmt, n)
    raise ValueError(n)


def cbor(v):
    """RFC 8949 for what the state uses: unsigned integers, text, arrays, maps."""
    if isinstance(v, int):
        return head(0, v)
    if isinstance(v, str):
        b = v.encode()
        return head(3, len(b)) + b
    if isinstance(v, list):
        return head(4, len(v)) + b''.join(cbor(x) for x in v)
    if isinstance(v, dict):
        return head(5, len(v)) + b''.join(cbor(k) + cbor(x) for k, x in v.items())
    raise TypeError(v)


REGS32 = ['CR0', 'CR1', 'CR2', 'GBPA', 'IRQ_CTRL', 'GERROR', 'GERRORN', 'GERROR_IRQ_CFG1', 'GERROR_IRQ_CFG2',
          'STRTAB_BASE_CFG', 'CMDQ_PROD', 'CMDQ_CONS', 'EVENTQ_PROD', 'EVENTQ_CONS', 'EVENTQ_IRQ_CFG1',
          'EVENTQ_IRQ_CFG2', 'PRIQ_PROD', 'PRIQ_CONS', 'PRIQ_IRQ_CFG1', 'PRIQ_IRQ_CFG2']
REGS64 = ['GERROR_IRQ_CFG0', 'STRTAB_BASE', 'CMDQ_BASE', 'EVENTQ_BASE', 'EVENTQ_IRQ_CFG0', 'PRIQ_BASE',
          'PRIQ_IRQ_CFG0']


def state(devices, events, cr0=0xd):
    regs = {name: 0 for name in REGS32 + REGS64}
    regs.update(CR0=cr0, STRTAB_BASE=0x40000000, STRTAB_BASE_CFG=0x10008, CMDQ_BASE=0x40100008,
                EVENTQ_BASE=0x40200007, EVENTQ_PROD=events)
    return {
        'format': 'vsmmu-state', 'name': 'vsmmu0',
        'id_registers': {'IDR0': 0x0d44101b, 'IDR1': 0x02730010, 'IDR2': 0, 'IDR3': 0x1414, 'IDR4': 0,
                         'IDR5': 0x74, 'IIDR': 0, 'AIDR': 1},
        'registers': regs,
        'devices': [{'vsid': v, 'name': f'dev{v}', 'state': s} for v, s in devices],
        'events': [[0x10_00000010, 0, 0x7f0000004000, 0] for _ in range(events)],
        'events_lost': 0,
    }


def sealed(body):
    return b'VSMMUSTA' + struct.pack('<IIQII', 1, 32, len(body), zlib.crc32(body), 0) + body


def main():
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'state_seeds')
    os.makedirs(out, exist_ok=True)
    seeds = {
        'one_device': cbor(state([(0x10, 'translate')], 0)),
        'events': cbor(state([(0x10, 'translate'), (0x18, 'abort')], 3)),
        'bypass': cbor(state([(0x20, 'bypass')], 0, cr0=0)),
        'sealed': sealed(cbor(state([(0x10, 'translate')], 1))),
    }
    for name, data in seeds.items():
        with open(os.path.join(out, name), 'wb') as f:
            f.write(data)


if __name__ == '__main__':
    main()

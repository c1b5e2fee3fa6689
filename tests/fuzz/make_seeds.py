#!/usr/bin/env python3
"""Writes the hand-made seed inputs of fuzz_unwind and fuzz_guest_pagewalk (layouts: the comments at the
top of each target). The outputs are committed; rerun after changing a layout."""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
K_TEXT, K_STACK = 0x1000, 0x10000
SP, BP, UNDEF = 1, 2, 0
BP_IS_FRAME, BP_SAVED, BP_UNCHANGED, BP_ZERO, END_OF_STACK = 1, 2, 4, 8, 16
CALL_FRAME_VALID, CALL_BP_ZERO = 1, 2


def write(kind, name, data):
    d = os.path.join(HERE, "seeds", kind)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def call(at, target):
    return b"\xe8" + struct.pack("<i", target - (at + 5))


def unwind_seed(flags, rip, rsp, rbp, stack_words, stack_len=0x100, extra_rows=(), extra_calls=()):
    # _start-like f0 at 0x00 (xor %ebp,%ebp; call f1), framed f1 at 0x40 (calls f2), framed f2 at 0x80.
    text = bytearray(b"\x90" * 0xc0)
    text[0:2] = b"\x31\xed"
    text[0x10:0x15] = call(0x10, 0x40)
    for fn, callee in ((0x40, 0x80), (0x80, None)):
        text[fn:fn + 4] = b"\x55\x48\x89\xe5"
        if callee is not None:
            text[fn + 0x20:fn + 0x25] = call(fn + 0x20, callee)
        text[fn + 0x3e:fn + 0x40] = b"\xc9\xc3"
    rows = [(0x00, UNDEF, 0, 0, 0), (0x02, SP, 8, 0, BP_ZERO)]
    for fn in (0x40, 0x80):
        rows += [(fn, SP, 8, 0, BP_UNCHANGED), (fn + 1, SP, 16, -16, BP_SAVED),
                 (fn + 4, BP, 16, -16, BP_IS_FRAME | BP_SAVED), (fn + 0x3f, SP, 8, 0, BP_UNCHANGED)]
    rows += list(extra_rows)
    calls = [(0x15, CALL_BP_ZERO), (0x65, CALL_FRAME_VALID)] + list(extra_calls)
    funcs = [(0x00, 0x40, 1), (0x40, 0x40, 1), (0x80, 0x40, 1)]
    out = struct.pack("<BBBBB", flags, len(rows), len(calls), len(funcs), len(text))
    out += struct.pack("<HHHH", rip, rsp, rbp, 0)
    for off, base, cfa, bpo, fl in rows:
        out += struct.pack("<HBbbB", off, base, cfa, bpo, fl)
    for off, fl in calls:
        out += struct.pack("<HB", off, fl)
    for off, size, fl in funcs:
        out += struct.pack("<HHB", off, size, fl)
    out += bytes(text)
    stack = bytearray(stack_len)
    for at, value in stack_words.items():
        stack[at:at + 8] = struct.pack("<Q", value)
    return out + bytes(stack)


# f0 -> f1 -> f2, stopped in f2's body: the good chain (reliable).
chain = {0xE0: K_STACK + 0xF0, 0xE8: K_TEXT + 0x65, 0xF0: 0, 0xF8: K_TEXT + 0x15}
write("unwind", "good_chain", unwind_seed(0, 0x90, 0xE0, 0xE0, chain))
# Stopped at f2's first instruction (only the return address pushed).
write("unwind", "in_prologue", unwind_seed(0, 0x80, 0xE8, 0xF0, chain))
# The same chain with f1's saved rbp redirected (a skipped frame) and with a call without frame.
bad = dict(chain)
bad[0xE0] = K_STACK + 0xF8
write("unwind", "bad_saved_rbp", unwind_seed(0, 0x90, 0xE0, 0xE0, bad))
write("unwind", "no_frame_call", unwind_seed(0, 0x90, 0xE0, 0xE0, chain, extra_calls=[(0x66, 0)]))
# In the image without metadata, and in a system call.
write("unwind", "no_metadata", unwind_seed(0, 0x8010, 0xE0, 0xE0, chain))
write("unwind", "in_syscall", unwind_seed(0x10, 0x90, 0xE0, 0xE0, chain))

# Guest RAM, small enough to commit: every level's table is page 0 (each level uses its own index), the
# data page is a half page at 0x1000. VA = i4<<39 | i3<<30 | i2<<21 | i1<<12.
P, PS = 1, 0x80
ram = bytearray(0x1800)


def entry(index, value):
    ram[index * 8:index * 8 + 8] = struct.pack("<Q", value)


entry(0, 0x0000 | P)          # PML4[0] -> PDPT = page 0
entry(511, 0x0000 | P)        # the kernel half: the same tables
entry(1, 0x0000 | P)          # PDPT[1] -> PD = page 0
entry(5, 0x0000 | P | PS)     # PDPT[5]: 1G page at physical 0 (mostly outside the RAM)
entry(2, 0x0000 | P)          # PD[2] -> PT = page 0
entry(4, 0x0000 | P | PS)     # PD[4]: 2M page at physical 0
entry(6, 0x7000 | P)          # PD[6]: a PT outside the RAM
entry(3, 0x1000 | P)          # PT[3] -> the data page
entry(7, 0x1000)              # PT[7]: not present
for i in range(0x1000, 0x1800, 8):
    ram[i:i + 8] = struct.pack("<Q", 0x1111000000000000 | i)
va = (1 << 30) | (2 << 21) | (3 << 12)
reads = [(va, 64), (va + 0x7f0, 32), (va + 0xff8, 16), ((1 << 30) | (4 << 21) | 0x10f8, 16),
         ((5 << 30) | 0x17f8, 16), ((1 << 30) | (6 << 21), 8), (0xffffff8000000000 | va, 8),
         (0x0000800000000000, 8)]
seed = struct.pack("<QB", 0x18, len(reads))
for a, n in reads:
    seed += struct.pack("<QB", a, n)
write("guest_pagewalk", "tables_in_one_page", seed + bytes(ram))
write("guest_pagewalk", "cr3_outside", struct.pack("<QB", 0x100000, 1) + struct.pack("<QB", va, 8) + bytes(ram[:0x100]))

"""Fault injection, for tests only: the frozen guest's RAM file opened read-write, kernel virtual addresses
translated with a 4-level page-table walk, and every changed word put back by restore() before the guest
resumes."""
import mmap
from typing import List, Tuple

from .errors import GuestError


class GuestRamWriter:
    """The frozen guest's RAM file: read and write kernel virtual addresses (page tables from `cr3`)."""

    def __init__(self, ram_path, cr3: int):
        self._f = open(ram_path, "r+b")
        self.mem = mmap.mmap(self._f.fileno(), 0)
        self.cr3 = cr3
        self.saved: List[Tuple[int, bytes]] = []

    def _u64(self, phys: int) -> int:
        return int.from_bytes(self.mem[phys:phys + 8], "little")

    def translate(self, va: int) -> int:
        table = self.cr3 & 0x000ffffffffff000
        for level, shift in ((4, 39), (3, 30), (2, 21), (1, 12)):
            entry = self._u64(table + ((va >> shift) & 0x1ff) * 8)
            if not entry & 1:
                raise GuestError(f"{va:#x} not mapped (level {level})")
            if level in (3, 2) and entry & 0x80:  # 1G / 2M page
                return (entry & 0x000fffffffffe000 & ~((1 << shift) - 1)) | (va & ((1 << shift) - 1))
            table = entry & 0x000ffffffffff000
        return table | (va & 0xfff)

    def read(self, va: int) -> int:
        return self._u64(self.translate(va))

    def write(self, va: int, value: int):
        phys = self.translate(va)
        self.saved.append((phys, bytes(self.mem[phys:phys + 8])))
        self.mem[phys:phys + 8] = (value & (2 ** 64 - 1)).to_bytes(8, "little")

    def restore(self):
        for phys, old in reversed(self.saved):
            self.mem[phys:phys + 8] = old
        self.saved.clear()

    def close(self):
        self.restore()
        self.mem.close()
        self._f.close()

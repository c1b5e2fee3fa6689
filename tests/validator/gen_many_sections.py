"""Writes an assembly file with more sections than ELF's 16-bit section index holds (SHN_LORESERVE 0xff00),
one function per section, so the assembler must use extended section indexes (SHN_XINDEX, SYMTAB_SHNDX).
One function, placed far past index 0xff00, calls out without a frame: the bug both tools must report.
Usage: gen_many_sections.py OUT.S [COUNT] [BAD]"""
import sys

out = sys.argv[1]
count = int(sys.argv[2]) if len(sys.argv) > 2 else 66000
bad = int(sys.argv[3]) if len(sys.argv) > 3 else 65500
with open(out, "w") as f:
    for i in range(count):
        f.write(f'\t.section .text.f{i},"ax",@progbits\n\t.globl f{i}\n\t.type f{i}, @function\nf{i}:\n')
        f.write("\tcall ext\n\tret\n" if i == bad else "\tret\n")
        f.write(f"\t.size f{i}, .-f{i}\n")

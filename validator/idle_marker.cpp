#include "validator/idle_marker.h"

#include <algorithm>

#include "validator/decoder.h"
#include "validator/elf_file.h"

namespace framecert {

namespace {
constexpr uint64_t kSearchLimit = 4096;  // secondary_startup_64 reaches its lretq within a few hundred bytes
}  // namespace

Result<uint64_t> find_idle_end_marker(const std::string& vmlinux) {
  auto elf = ElfFile::open(vmlinux);
  if (!elf) return tl::unexpected(elf.error());
  if ((*elf)->relocatable()) return fail("{}: not a linked image", vmlinux);
  const ElfSymbol* start = nullptr;
  for (const ElfSymbol& s : (*elf)->symbols())
    if (s.name == "secondary_startup_64" && s.defined()) start = &s;
  if (!start) return fail("{}: no symbol secondary_startup_64", vmlinux);
  const ElfSection& sec = (*elf)->sections()[start->section];
  if (start->offset >= sec.bytes.size())
    return fail("{}: secondary_startup_64 is outside its section's bytes", vmlinux);
  static const Decoder decoder;
  const uint64_t end = std::min<uint64_t>(sec.bytes.size(), start->offset + kSearchLimit);
  for (uint64_t off = start->offset; off < end;) {
    auto insn = decoder.decode(sec.bytes.subspan(off), off);
    if (!insn) return fail("{}: undecodable bytes at secondary_startup_64+{:#x}", vmlinux, off - start->offset);
    if (insn->is_far_return) return sec.address + insn->end();
    off = insn->end();
  }
  return fail("{}: no lretq within {} bytes of secondary_startup_64", vmlinux, kSearchLimit);
}

}  // namespace framecert

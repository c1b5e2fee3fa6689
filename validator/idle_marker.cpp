#include "validator/idle_marker.h"

#include "validator/decoder.h"

namespace framecert {

Result<uint64_t> find_idle_end_marker(std::span<const uint8_t> code, uint64_t address) {
  static const Decoder decoder;
  for (uint64_t off = 0; off < code.size();) {
    auto insn = decoder.decode(code.subspan(off), off);
    if (!insn) return fail("undecodable bytes at secondary_startup_64+{:#x}", off);
    if (insn->is_far_return) return address + insn->end();
    off = insn->end();
  }
  return fail("no lretq within {} bytes of secondary_startup_64", code.size());
}

}  // namespace framecert

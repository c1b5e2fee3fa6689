#include "validator/idle_marker.h"

#include "validator/decoder.h"

namespace framecert {

Result<uint64_t> find_idle_end_marker(std::span<const uint8_t> code, uint64_t address) {
  static const Decoder decoder;
  bool bp_zero = false;  // rbp known 0 on the straight line scanned so far
  for (uint64_t off = 0; off < code.size();) {
    auto insn = decoder.decode(code.subspan(off), off);
    if (!insn) return fail("undecodable bytes at the startup code's +{:#x}", off);
    // The transfer to the C entry, made with rbp zeroed: an lretq (up to 6.8) or an indirect call (6.9+).
    // An lretq with rbp not known zero is another far return (6.9+ reloads CS with one first).
    if (bp_zero && (insn->is_far_return || insn->kind == InsnKind::CallIndirect)) return address + insn->end();
    if (insn->zeroes_bp)
      bp_zero = true;
    else if (insn->writes(Reg::Bp))
      bp_zero = false;
    off = insn->end();
  }
  return fail("no lretq or indirect call with rbp zeroed within {} bytes of the startup code", code.size());
}

}  // namespace framecert

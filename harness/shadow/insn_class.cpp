#include "harness/shadow/insn_class.h"

namespace framecert::shadow {

namespace {
bool is_legacy_prefix(uint8_t b) {
  switch (b) {
    case 0xf0:  // lock
    case 0xf2:  // repne / bnd
    case 0xf3:  // rep (`rep ret`)
    case 0x2e:  // cs (branch hint; `cs call` from the compiler's padding)
    case 0x36:  // ss
    case 0x3e:  // ds (`notrack`)
    case 0x26:  // es
    case 0x64:  // fs
    case 0x65:  // gs
    case 0x66:  // operand size
    case 0x67:  // address size
      return true;
    default:
      return false;
  }
}
}  // namespace

InsnKind classify_insn(const uint8_t* bytes, size_t size) {
  // Skip the prefixes. A REX byte (40-4F) normally sits right before the opcode (`41 ff d3` is call *%r11); one
  // followed by more prefixes is ignored by the CPU, so REX bytes are skipped wherever they appear. No prefix
  // changes the kind (REX.W on CB makes `lretq`, still a far ret). In 32-bit code 40-4F are instructions of
  // their own (inc, dec), and QEMU hands them over alone: nothing follows them, so they come out kOther.
  size_t i = 0;
  while (i < size && (is_legacy_prefix(bytes[i]) || (bytes[i] & 0xf0) == 0x40)) ++i;
  if (i >= size) return InsnKind::kOther;
  switch (bytes[i]) {
    // The immediates' lengths are not checked: QEMU hands over whole instructions, and in 16-bit code (the
    // BIOS, used by the plugin's own test) `call rel16` is shorter than E8 rel32.
    case 0xe8:  // call rel32
      return InsnKind::kNearCall;
    case 0xc3:  // ret
    case 0xc2:  // ret imm16
      return InsnKind::kNearRet;
    case 0xff: {
      // Group 5: the ModRM reg field picks the operation. /2 is the near indirect call; /3 (far call), /4 and
      // /5 (jumps), /0 /1 (inc, dec) and /6 (push) are not calls.
      if (i + 1 >= size) return InsnKind::kOther;
      const unsigned reg = (bytes[i + 1] >> 3) & 7;
      return reg == 2 ? InsnKind::kNearCall : InsnKind::kOther;
    }
    default:
      return InsnKind::kOther;
  }
}

}  // namespace framecert::shadow

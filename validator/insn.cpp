// Printable names for the instruction model's enums (diagnostics, test output, JSON reports).
#include "validator/insn.h"

#include <array>

namespace framecert {

std::string_view reg_name(Reg r) {
  static constexpr std::array<std::string_view, kNumGprs> kNames = {
      "rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi", "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15",
  };
  const auto index = static_cast<size_t>(r);
  return index < kNames.size() ? kNames[index] : std::string_view("none");
}

std::string_view kind_name(InsnKind k) {
  switch (k) {
    case InsnKind::Other:
      return "other";
    case InsnKind::Nop:
      return "nop";
    case InsnKind::Jump:
      return "jump";
    case InsnKind::JumpConditional:
      return "jump-conditional";
    case InsnKind::JumpIndirect:
      return "jump-indirect";
    case InsnKind::Call:
      return "call";
    case InsnKind::CallIndirect:
      return "call-indirect";
    case InsnKind::Return:
      return "return";
    case InsnKind::ContextSwitch:
      return "context-switch";
    case InsnKind::Bug:
      return "bug";
    case InsnKind::Trap:
      return "trap";
    case InsnKind::Endbr:
      return "endbr";
    case InsnKind::Stac:
      return "stac";
    case InsnKind::Clac:
      return "clac";
    case InsnKind::Std:
      return "std";
    case InsnKind::Cld:
      return "cld";
  }
  return "unknown";
}

}  // namespace framecert

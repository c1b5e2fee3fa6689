// The stack and frame state tracked along each code path: where the CFA is (the caller's stack pointer
// before its call), where callee-saved registers were saved, and the bookkeeping needed to follow
// frame-pointer setup, `leave`, stack realignment (DRAP) and stack swizzles. Semantics follow objtool 6.1
// so that both tools agree on every verdict; the numbering of bases and registers is objtool's, because
// its "stack state mismatch" messages print them.
#pragma once

#include <array>
#include <cstdint>
#include <string>

#include "validator/insn.h"

namespace framecert {

namespace cfi {
inline constexpr int kUndefined = -1;
inline constexpr int kCfa = -2;
inline constexpr int kSpIndirect = -3;
inline constexpr int kBpIndirect = -4;
// The CFA of the ABI's outermost frame after `and $-N,%rsp` with rbp known 0 (_start): nothing above it
// to unwind to, so the CFA is not needed; rbp = 0 is what ends a walk there (framecert's own rule).
inline constexpr int kOutermost = -5;
inline constexpr int kSp = 4;
inline constexpr int kBp = 5;
inline constexpr int kRa = 16;  // the return address "register"
inline constexpr int kNumRegs = 17;
// Unwind-hint types (the kernel's UNWIND_HINT_TYPE_*).
inline constexpr uint8_t kHintCall = 0;
inline constexpr uint8_t kHintRegs = 1;
inline constexpr uint8_t kHintRegsPartial = 2;
inline constexpr uint8_t kHintFunc = 3;
inline constexpr uint8_t kHintEntry = 4;
inline constexpr uint8_t kHintSave = 5;
inline constexpr uint8_t kHintRestore = 6;
}  // namespace cfi

struct CfiReg {
  int base = cfi::kUndefined;
  int offset = 0;
  bool operator==(const CfiReg&) const = default;
};

// What rbp holds, tracked beyond objtool so the metadata can tell the unwinder whether the register is a
// usable frame pointer (objtool only follows the save slots).
enum class BpValue : uint8_t { Caller, Frame, Zero, Unknown };

struct CfiState {
  std::array<CfiReg, cfi::kNumRegs> regs{};
  std::array<CfiReg, cfi::kNumRegs> vals{};
  CfiReg cfa{};
  int stack_size = 0;
  int drap_reg = cfi::kUndefined;
  int drap_offset = -1;
  bool bp_scratch = false;
  bool drap = false;
  uint8_t type = 0;  // unwind-hint type: kHintCall, kHintRegs, kHintRegsPartial
  bool end = false;  // an unwind hint marked this as the end of the stack
  // After 6.10+'s UNWIND_HINT_UNDEFINED: the CFA is unknown on purpose and stack operations are ignored.
  bool force_undefined = false;
  // rbp was zeroed (xor %ebp,%ebp...) and not written since, on the path the checker followed here. Only
  // for the outermost-frame form; paths meeting with different values are re-judged by rbp_flow, which
  // meets them soundly (frame_pointer_check.h, check_outermost_frames).
  bool bp_zero = false;

  // The state at a function's entry: CFA = rsp + 8, the return address at CFA - 8.
  static CfiState function_entry();
  bool has_valid_frame() const;     // objtool's has_valid_stack_frame
  bool has_modified_frame() const;  // objtool's has_modified_stack_frame
};

// Compares the parts objtool compares when two paths meet; on a difference returns objtool's message
// text ("stack state mismatch: ..."), else an empty string.
std::string mismatch_message(const CfiState& seen, const CfiState& now);

// A readable summary for --explain, e.g. "cfa=rbp+16 rbp@cfa-16 stack_size=16".
std::string describe(const CfiState& s);

// Applies one stack operation. Returns an empty string, or the finding text when the operation cannot be
// tracked (objtool's "undefined stack state", "unsupported stack pointer realignment", ...).
// `in_function`: the instruction belongs to an STT_FUNC symbol; `next_is_hint`: an unwind hint follows.
std::string apply_stack_op(CfiState& s, const StackOp& op, bool in_function, bool next_is_hint);

// `and $-N,%rsp` that apply_stack_op accepts only because rbp is known 0 (the outermost frame's form).
bool is_outermost_realignment(const CfiState& before, const StackOp& op);
// A call from the outermost frame with rbp still 0: there is no caller a frame-pointer walk could skip.
bool is_outermost_call(const CfiState& before);

}  // namespace framecert

namespace framecert {
inline bool operator==(const CfiState& a, const CfiState& b) {
  return a.regs == b.regs && a.vals == b.vals && a.cfa == b.cfa && a.stack_size == b.stack_size &&
         a.drap_reg == b.drap_reg && a.drap_offset == b.drap_offset && a.bp_scratch == b.bp_scratch &&
         a.drap == b.drap && a.type == b.type && a.end == b.end && a.bp_zero == b.bp_zero &&
         a.force_undefined == b.force_undefined;
}
}  // namespace framecert

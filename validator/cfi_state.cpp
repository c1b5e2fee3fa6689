#include "validator/cfi_state.h"

#include <fmt/format.h>

namespace framecert {

using namespace cfi;

namespace {

int r(Reg reg) { return reg == Reg::None ? kUndefined : static_cast<int>(reg); }

bool callee_saved(int reg) {
  return reg == static_cast<int>(Reg::Bx) || reg == kBp || reg == static_cast<int>(Reg::R12) ||
         reg == static_cast<int>(Reg::R13) || reg == static_cast<int>(Reg::R14) || reg == static_cast<int>(Reg::R15);
}

// Records the first save of a callee-saved register; later stores of the same register are copies.
void save_reg(CfiState& s, int reg, int base, int offset) {
  if (reg >= 0 && reg < kNumRegs && callee_saved(reg) && s.regs[reg].base == kUndefined) s.regs[reg] = {base, offset};
}

void restore_reg(CfiState& s, int reg) {
  if (reg >= 0 && reg < kNumRegs) s.regs[reg] = CfiState::function_entry().regs[reg];
}

bool frame_pos(const CfiReg& reg, int expected) { return reg.base == kCfa && reg.offset == expected; }

std::string apply_to_reg(CfiState& s, const StackOp& op, bool next_is_hint) {
  CfiReg& cfa = s.cfa;
  auto& regs = s.regs;
  const int dst = r(op.dst_reg), src = r(op.src_reg);
  const int off = static_cast<int>(op.src_offset);
  switch (op.src) {
    case StackOp::Src::Reg:
      if (src == kSp && dst == kBp && cfa.base == kSp && frame_pos(regs[kBp], -cfa.offset)) {
        cfa.base = kBp;  // mov %rsp,%rbp right after push %rbp: the frame is set up
        s.bp_scratch = false;
      } else if (src == kSp && dst == kBp && s.drap) {
        regs[kBp] = {kBp, -s.stack_size};
        s.bp_scratch = false;
      } else if (src == kSp && cfa.base == kSp) {
        if (dst >= 0 && dst < kNumRegs) s.vals[dst] = {kCfa, -s.stack_size};  // rsp copied to a register
      } else if (src == kBp && dst == kSp && (cfa.base == kBp || cfa.base == s.drap_reg)) {
        s.stack_size = -regs[kBp].offset;  // mov %rbp,%rsp: back to the frame's base
      } else if (dst == cfa.base) {
        if (cfa.base == kSp && src >= 0 && s.vals[src].base == kCfa) {
          cfa.offset = -s.vals[src].offset;  // rsp restored from a copy taken earlier
          s.stack_size = cfa.offset;
        } else if (cfa.base == kSp && src >= 0 && s.vals[src].base == kSpIndirect && s.vals[src].offset == cfa.offset) {
          cfa.base = kSpIndirect;  // switched to another stack that links back to this one
        } else {
          cfa = {kUndefined, 0};
        }
      } else if (dst == kSp && src >= 0 && s.vals[src].base == kSpIndirect && s.vals[src].offset == cfa.offset) {
        s.stack_size += 8;
      }
      return {};
    case StackOp::Src::Add:
      if (dst == kSp && src == kSp) {
        s.stack_size -= off;
        if (cfa.base == kSp) cfa.offset -= off;
        return {};
      }
      if (dst == kSp && src == kBp) {
        s.stack_size = -(off + regs[kBp].offset);  // lea disp(%rbp),%rsp
        return {};
      }
      if (src == kSp && cfa.base == kSp) {
        s.drap_reg = dst;  // lea disp(%rsp),%reg: a possible DRAP register, or a copy of rsp
        if (dst >= 0 && dst < kNumRegs) s.vals[dst] = {kCfa, -s.stack_size + off};
        return {};
      }
      if (s.drap && dst == kSp && src == s.drap_reg) {
        cfa = {kSp, -off};
        s.stack_size = -off;
        s.drap_reg = kUndefined;
        s.drap = false;
        return {};
      }
      if (dst == cfa.base && !next_is_hint) return "unsupported stack register modification";
      return {};
    case StackOp::Src::And:
      if (is_outermost_realignment(s, op)) {
        cfa = {kOutermost, 0};
        return {};
      }
      if (dst != kSp || (s.drap_reg != kUndefined && cfa.base != kSp) || (s.drap_reg == kUndefined && cfa.base != kBp))
        return "unsupported stack pointer realignment";
      if (s.drap_reg != kUndefined) {
        cfa = {s.drap_reg, 0};
        s.stack_size = 0;
        s.drap = true;
      }
      return {};
    case StackOp::Src::Pop:
    case StackOp::Src::PopF:
      if (dst == kSp && cfa.base == kSpIndirect) {
        cfa.base = kSp;  // pop %rsp: back from the swizzled stack
        return {};
      }
      if (!s.drap && dst == cfa.base) cfa.base = kSp;  // pop %rbp
      if (s.drap && cfa.base == kBpIndirect && dst == s.drap_reg && s.drap_offset == -s.stack_size) {
        cfa = {s.drap_reg, 0};
        s.drap_offset = -1;
      } else if (dst >= 0 && dst < kNumRegs && s.stack_size == -regs[dst].offset) {
        restore_reg(s, dst);
      }
      s.stack_size -= 8;
      if (cfa.base == kSp) cfa.offset -= 8;
      return {};
    case StackOp::Src::RegIndirect:
      if (!s.drap && dst == cfa.base && dst == kBp) cfa = {kSp, s.stack_size};  // mov disp(%rsp),%rbp
      if (s.drap && src == kBp && off == s.drap_offset) {
        cfa = {s.drap_reg, 0};
        s.drap_offset = -1;
      }
      if (dst < 0 || dst >= kNumRegs) return {};
      if (s.drap && src == kBp && off == regs[dst].offset) {
        restore_reg(s, dst);
      } else if (src == cfa.base && off == regs[dst].offset + cfa.offset) {
        restore_reg(s, dst);
      } else if (src == kSp && off == regs[dst].offset + s.stack_size) {
        restore_reg(s, dst);
      }
      return {};
    case StackOp::Src::Const:
      return "unknown stack-related instruction";
  }
  return {};
}

}  // namespace

CfiState CfiState::function_entry() {
  CfiState s;
  s.cfa = {kSp, 8};
  s.regs[kRa] = {kCfa, -8};
  s.stack_size = 8;
  return s;
}

bool CfiState::has_valid_frame() const {
  if (cfa.base == kBp && frame_pos(regs[kBp], -cfa.offset) && frame_pos(regs[kRa], -cfa.offset + 8)) return true;
  return drap && regs[kBp].base == kBp;
}

bool CfiState::has_modified_frame() const {
  const CfiState entry = function_entry();
  if (cfa != entry.cfa || drap || stack_size != entry.cfa.offset) return true;
  return regs != entry.regs;
}

std::string mismatch_message(const CfiState& a, const CfiState& b) {
  if (a.cfa != b.cfa)
    return fmt::format("stack state mismatch: cfa1={}{:+d} cfa2={}{:+d}", a.cfa.base, a.cfa.offset, b.cfa.base,
                       b.cfa.offset);
  for (int i = 0; i < kNumRegs; ++i)
    if (a.regs[i] != b.regs[i])
      return fmt::format("stack state mismatch: reg1[{}]={}{:+d} reg2[{}]={}{:+d}", i, a.regs[i].base, a.regs[i].offset,
                         i, b.regs[i].base, b.regs[i].offset);
  if (a.type != b.type) return fmt::format("stack state mismatch: type1={} type2={}", a.type, b.type);
  if (a.drap != b.drap || (a.drap && a.drap_reg != b.drap_reg) || (a.drap && a.drap_offset != b.drap_offset))
    return fmt::format("stack state mismatch: drap1={}({},{}) drap2={}({},{})", a.drap ? 1 : 0, a.drap_reg,
                       a.drap_offset, b.drap ? 1 : 0, b.drap_reg, b.drap_offset);
  return {};
}

static std::string base_text(int base) {
  switch (base) {
    case kUndefined:
      return "undef";
    case kCfa:
      return "cfa";
    case kSpIndirect:
      return "[rsp]";
    case kBpIndirect:
      return "[rbp]";
    case kOutermost:
      return "outermost";
    default:
      return base >= 0 && base < kNumRegs - 1 ? std::string(reg_name(static_cast<Reg>(base))) : "?";
  }
}

std::string describe(const CfiState& s) {
  std::string out = fmt::format("cfa={}{:+d} stack_size={}", base_text(s.cfa.base), s.cfa.offset, s.stack_size);
  for (int i = 0; i < kNumRegs - 1; ++i)
    if (s.regs[i].base != kUndefined)
      out += fmt::format(" {}@{}{:+d}", reg_name(static_cast<Reg>(i)), base_text(s.regs[i].base), s.regs[i].offset);
  if (s.drap) out += fmt::format(" drap={}", base_text(s.drap_reg));
  if (s.type == kHintRegs) out += " regs";
  if (s.type == kHintRegsPartial) out += " regs-partial";
  if (s.end) out += " end";
  if (s.bp_scratch) out += " bp-scratch";
  if (s.bp_zero) out += " bp-zero";
  return out;
}

// The x86-64 ABI's outermost frame: _start (glibc's too) zeroes rbp, realigns rsp and calls. objtool 6.1
// flags the realignment; framecert accepts it where rbp is known 0, because nothing above that frame is
// ever unwound to, and a walk ends there only on rbp = 0 (docs/rules.md, deliberate difference 13).
// Anywhere else an rsp-based CFA lost to realignment would hide the caller, and stays a finding.
bool is_outermost_realignment(const CfiState& s, const StackOp& op) {
  return op.src == StackOp::Src::And && op.dst == StackOp::Dst::Reg && op.dst_reg == Reg::Sp && s.bp_zero && !s.drap &&
         s.drap_reg == kUndefined && (s.cfa.base == kSp || s.cfa.base == kOutermost) && s.type == kHintCall;
}

bool is_outermost_call(const CfiState& s) { return s.cfa.base == kOutermost && s.bp_zero; }

std::string apply_stack_op(CfiState& s, const StackOp& op, bool in_function, bool next_is_hint) {
  if (s.force_undefined) return {};
  if (s.cfa.base == kUndefined) return in_function ? "undefined stack state" : std::string();
  CfiReg& cfa = s.cfa;
  if (s.type == kHintRegs || s.type == kHintRegsPartial) {
    // Entry code with a register frame on the stack: only stack-pointer movement is tracked.
    if (cfa.base != kSp && cfa.base != kSpIndirect) return {};
    if (op.dst == StackOp::Dst::Push || op.dst == StackOp::Dst::PushF) cfa.offset += 8;
    if (op.src == StackOp::Src::Pop || op.src == StackOp::Src::PopF) cfa.offset -= 8;
    if (op.dst == StackOp::Dst::Reg && op.src == StackOp::Src::Add && op.dst_reg == Reg::Sp && op.src_reg == Reg::Sp)
      cfa.offset -= static_cast<int>(op.src_offset);
    return {};
  }
  switch (op.dst) {
    case StackOp::Dst::Reg:
      return apply_to_reg(s, op, next_is_hint);
    case StackOp::Dst::Push:
    case StackOp::Dst::PushF: {
      s.stack_size += 8;
      if (cfa.base == kSp) cfa.offset += 8;
      if (op.src != StackOp::Src::Reg) return {};
      const int src = r(op.src_reg);
      if (s.drap) {
        if (src == cfa.base && src == s.drap_reg) {
          cfa = {kBpIndirect, -s.stack_size};
          s.drap_offset = -s.stack_size;
        } else if (src == kBp && cfa.base == s.drap_reg) {
          s.stack_size = 0;
        } else {
          save_reg(s, src, kBp, -s.stack_size);
        }
      } else {
        save_reg(s, src, kCfa, -s.stack_size);
      }
      // rbp pushed while the CFA is not rbp-based: assembly using rbp as a scratch register (unless a
      // `mov %rsp,%rbp` follows and makes it a frame).
      if (in_function && src == kBp && cfa.base != kBp) s.bp_scratch = true;
      return {};
    }
    case StackOp::Dst::RegIndirect: {
      const int dst = r(op.dst_reg), src = r(op.src_reg);
      const int off = static_cast<int>(op.dst_offset);
      if (s.drap) {
        if (src == cfa.base && src == s.drap_reg) {
          cfa = {kBpIndirect, off};
          s.drap_offset = off;
        } else {
          save_reg(s, src, kBp, off);
        }
      } else if (dst == cfa.base) {
        save_reg(s, src, kCfa, off - cfa.offset);
      } else if (dst == kSp) {
        save_reg(s, src, kCfa, off - s.stack_size);
      } else if (src == kSp && off == 0 && dst >= 0 && dst < kNumRegs) {
        s.vals[dst] = {kSpIndirect, cfa.offset};  // mov %rsp,(%reg): linking a new stack to this one
      }
      return {};
    }
    case StackOp::Dst::Mem:
      if (op.src != StackOp::Src::Pop && op.src != StackOp::Src::PopF) return "unknown stack-related memory operation";
      s.stack_size -= 8;
      if (cfa.base == kSp) cfa.offset -= 8;
      return {};
  }
  return "unknown stack-related instruction";
}

}  // namespace framecert

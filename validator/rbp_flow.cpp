#include "validator/rbp_flow.h"

#include <deque>

namespace framecert {

namespace {

BpValue meet(BpValue a, BpValue b) { return a == b ? a : BpValue::Unknown; }

// What rbp holds after instruction `in`, given what it held before and the stack state before.
BpValue transfer(const Instruction& in, const CfiState& before, BpValue bp) {
  if (!in.insn.writes(Reg::Bp)) return bp;
  if (in.insn.zeroes_bp) return BpValue::Zero;
  CfiState after = before;
  bool bp_op = false;
  for (int k = 0; k < in.insn.op_count; ++k) {
    const StackOp& op = in.insn.ops[k];
    apply_stack_op(after, op, true, false);
    if (op.dst == StackOp::Dst::Reg && op.dst_reg == Reg::Bp) bp_op = true;
  }
  if (!bp_op) return BpValue::Unknown;  // rbp written in a way the stack model does not describe
  const StackOp& last = in.insn.ops[in.insn.op_count - 1];
  switch (last.src) {
    case StackOp::Src::Reg:  // mov %rsp,%rbp (or lea 0(%rsp),%rbp)
      return last.src_reg == Reg::Sp && after.has_valid_frame() ? BpValue::Frame : BpValue::Unknown;
    case StackOp::Src::Pop:          // pop %rbp, leave
    case StackOp::Src::RegIndirect:  // mov disp(%rsp),%rbp
      // The caller's value is back only if the save slot was what got loaded (the save is then forgotten).
      return before.regs[cfi::kBp].base == cfi::kCfa && after.regs[cfi::kBp].base == cfi::kUndefined ? BpValue::Caller
                                                                                                        : BpValue::Unknown;
    default:
      return BpValue::Unknown;
  }
}

void successors(const DecodedObject& obj, int32_t i, std::vector<int32_t>& out) {
  out.clear();
  const Instruction& in = obj.insns[i];
  if (!in.ignore_alts) {
    for (int32_t t : in.alts) out.push_back(t);
    for (int32_t t : in.table_targets) out.push_back(t);
    if (in.skip_orig && !in.alts.empty()) return;
  }
  const int32_t next = obj.next_to_validate(i);
  const bool sibling = in.func != kNone && in.sibling_target;
  switch (in.insn.kind) {
    case InsnKind::Return:
    case InsnKind::JumpIndirect:
      return;
    case InsnKind::ContextSwitch:
      if (in.insn.is_iret && in.func != kNone) break;
      if (in.func != kNone && next != kNone && obj.insns[next].hint) break;
      return;
    case InsnKind::Jump:
      if (!sibling && in.jump_dest != kNone) out.push_back(in.jump_dest);
      return;
    case InsnKind::JumpConditional:
      if (!sibling && in.jump_dest != kNone) out.push_back(in.jump_dest);
      break;
    default:
      break;
  }
  if (!in.dead_end && next != kNone) out.push_back(next);
}

}  // namespace

std::vector<uint8_t> rbp_values(const DecodedObject& obj, const CheckResult& r) {
  std::vector<uint8_t> value(obj.insns.size(), kBpUnset);
  std::deque<int32_t> work;
  for (int32_t f = 0; f < static_cast<int32_t>(obj.functions.size()); ++f) {
    const Function& fn = obj.functions[f];
    if (fn.parent != f || !fn.canonical || fn.first_insn == fn.end_insn || !r.visited[fn.first_insn]) continue;
    if (obj.insns[fn.first_insn].insn.offset != fn.offset) continue;
    value[fn.first_insn] = static_cast<uint8_t>(BpValue::Caller);
    work.push_back(static_cast<int32_t>(fn.first_insn));
  }
  // An unwind hint asserts the stack, not rbp: what rbp holds there is unknown, unless the hint is a
  // function entry.
  for (int32_t i = 0; i < static_cast<int32_t>(obj.insns.size()); ++i) {
    const Instruction& in = obj.insns[i];
    if (!in.hint || !r.visited[i]) continue;
    const bool entry = in.hint_state != kNone && obj.hint_states[in.hint_state] == CfiState::function_entry();
    value[i] = static_cast<uint8_t>(entry ? BpValue::Caller : BpValue::Unknown);
    work.push_back(i);
  }
  std::vector<int32_t> succ;
  // Paths never cross into another function: the checker stops at "falls through to next function".
  auto same_function = [&](int32_t a, int32_t b) {
    const int32_t fa = obj.insns[a].func, fb = obj.insns[b].func;
    return fa == kNone || fb == kNone || obj.parent_of(fa) == obj.parent_of(fb);
  };
  while (!work.empty()) {
    int32_t i = work.front();
    work.pop_front();
    if (r.state_of_insn[i] < 0) continue;
    BpValue out = transfer(obj.insns[i], r.states[r.state_of_insn[i]], static_cast<BpValue>(value[i]));
    successors(obj, i, succ);
    for (int32_t s : succ) {
      if (s < 0 || !r.visited[s] || obj.insns[s].hint || !same_function(i, s)) continue;
      uint8_t merged = value[s] == kBpUnset ? static_cast<uint8_t>(out) : static_cast<uint8_t>(meet(static_cast<BpValue>(value[s]), out));
      if (merged != value[s]) {
        value[s] = merged;
        work.push_back(s);
      }
    }
  }
  return value;
}

}  // namespace framecert

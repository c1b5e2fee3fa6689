#include "validator/rbp_flow.h"

#include <vector>

namespace framecert {

namespace {

BpValue meet(BpValue a, BpValue b) { return a == b ? a : BpValue::Unknown; }

// The flow value before an instruction: what rbp holds, and which other registers hold a copy of what rbp
// held when it was copied (`mov %rbp,%rbx ... mov %rbx,%rbp` puts the frame pointer back). Three bytes: one
// is kept per instruction while the whole object is (docs/design.md, "Memory").
struct [[gnu::packed]] Flow {
  BpValue bp : 2 = BpValue::Unknown;
  BpValue copy : 2 = BpValue::Unknown;  // the value the registers in `copies` hold
  uint16_t copies = 0;                  // bit i: Reg(i)
  bool operator==(const Flow&) const = default;
};
static_assert(sizeof(Flow) == 3);

Flow meet(const Flow& a, const Flow& b) {
  Flow out{meet(a.bp, b.bp), a.copy, static_cast<uint16_t>(a.copy == b.copy ? a.copies & b.copies : 0)};
  if (out.copies == 0) out.copy = BpValue::Unknown;
  return out;
}

uint16_t bit(Reg r) { return static_cast<uint16_t>(1u << static_cast<unsigned>(r)); }

// The stack state before an instruction, looked up only when an instruction needs it: most instructions
// leave rbp alone, and decoding a state costs more than the rest of the flow step.
struct StateBefore {
  const StateTable& states;
  int32_t id;
  const CfiState& get() const { return states.at(id); }
};

// What rbp holds after instruction `in` when the stack model describes the write (or leaves rbp alone).
BpValue transfer_bp(const DecodedObject& obj, const Instruction& in, const StateBefore& state, BpValue bp) {
  if (!in.insn.writes(Reg::Bp)) return bp;
  if (in.insn.zeroes_bp) return BpValue::Zero;
  const CfiState before = state.get();
  CfiState after = before;
  // The last op that writes rbp decides (enter's mov %rsp,%rbp is followed by its sub from rsp).
  const StackOp* last = nullptr;
  for (const StackOp& op : obj.ops(in)) {
    apply_stack_op(after, op, true, false);
    if (op.dst == StackOp::Dst::Reg && op.dst_reg == Reg::Bp) last = &op;
  }
  if (!last) return BpValue::Unknown;  // rbp written in a way the stack model does not describe
  switch (last->src) {
    case StackOp::Src::Reg:  // mov %rsp,%rbp (or lea 0(%rsp),%rbp)
      return last->src_reg == Reg::Sp && after.has_valid_frame() ? BpValue::Frame : BpValue::Unknown;
    case StackOp::Src::Pop:          // pop %rbp, leave
    case StackOp::Src::RegIndirect:  // mov disp(%rsp),%rbp
      // The caller's value is back only if the save slot was what got loaded (the save is then forgotten).
      return before.regs[cfi::kBp].base == cfi::kCfa && after.regs[cfi::kBp].base == cfi::kUndefined ? BpValue::Caller
                                                                                                     : BpValue::Unknown;
    default:
      return BpValue::Unknown;
  }
}

Flow transfer(const DecodedObject& obj, const Instruction& in, const StateBefore& before, const Flow& f) {
  Flow out = f;
  const Reg src = in.insn.copy_src, dst = in.insn.copy_dst;
  const bool copy = src != Reg::None && dst != Reg::None && dst != Reg::Sp && src != dst;
  // rbp put back from a register holding its earlier value. A copy of the frame pointer is only the frame
  // again while that frame still exists (not after `leave` or the pop of the saved rbp).
  if (copy && dst == Reg::Bp && (f.copies & bit(src))) {
    out.bp = f.copy;
    if (out.bp == BpValue::Frame && !before.get().has_valid_frame()) out.bp = BpValue::Unknown;
  } else {
    out.bp = transfer_bp(obj, in, before, f.bp);
  }
  // Registers written lose their copy; a copy from rbp (or from a copy) gains one.
  out.copies = static_cast<uint16_t>(out.copies & ~in.insn.written_regs);
  if (copy && dst != Reg::Bp) {
    if (src == Reg::Bp) {
      if (out.copies && out.copy != f.bp) out.copies = 0;
      out.copy = f.bp;
      out.copies |= bit(dst);
    } else if (f.copies & bit(src)) {
      out.copies |= bit(dst);
    }
  }
  if (out.copies == 0) out.copy = BpValue::Unknown;
  return out;
}

}  // namespace

std::vector<uint8_t> rbp_values(const DecodedObject& obj, const CheckResult& r) {
  std::vector<Flow> flow(obj.insns.size());
  std::vector<uint8_t> value(obj.insns.size(), kBpUnset);  // kBpUnset: no flow reached it yet
  std::vector<int32_t> seeds;
  for (int32_t f = 0; f < static_cast<int32_t>(obj.functions.size()); ++f) {
    const Function& fn = obj.functions[f];
    if (fn.parent != f || !fn.canonical || fn.first_insn == fn.end_insn || !r.visited(fn.first_insn)) continue;
    if (obj.insns[fn.first_insn].insn.offset != fn.offset) continue;
    value[fn.first_insn] = static_cast<uint8_t>(BpValue::Caller);
    flow[fn.first_insn] = Flow{BpValue::Caller};
    seeds.push_back(static_cast<int32_t>(fn.first_insn));
  }
  // An unwind hint asserts the stack, not rbp: what rbp holds there is unknown, unless the hint is a
  // function entry.
  for (int32_t i = 0; i < static_cast<int32_t>(obj.insns.size()); ++i) {
    const Instruction& in = obj.insns[i];
    if (!in.hint || !r.visited(i)) continue;
    const int32_t h = obj.hint_state(in);
    const bool entry = h != kNone && obj.hint_states[h] == CfiState::function_entry();
    value[i] = static_cast<uint8_t>(entry ? BpValue::Caller : BpValue::Unknown);
    flow[i] = Flow{static_cast<BpValue>(value[i])};
    seeds.push_back(i);
  }
  std::vector<int32_t> succ;
  // Paths never cross into another function: the checker stops at "falls through to next function".
  auto same_function = [&](int32_t a, int32_t b) {
    const int32_t fa = obj.insns[a].func, fb = obj.insns[b].func;
    return fa == kNone || fb == kNone || obj.parent_of(fa) == obj.parent_of(fb);
  };
  // One seed at a time, to its fixed point: a function's instructions are then visited while they are in
  // the cache. The order does not change the result: the transfer is monotone and the meet is
  // order-free, so every order reaches the same fixed point.
  std::vector<int32_t> pending;
  for (int32_t seed : seeds) {
    pending.push_back(seed);
    while (!pending.empty()) {
      int32_t i = pending.back();
      pending.pop_back();
      if (r.state_of_insn[i] < 0) continue;
      const Flow out = transfer(obj, obj.insns[i], StateBefore{r.states, r.state_of_insn[i]}, flow[i]);
      followed_successors(obj, i, succ);
      for (int32_t s : succ) {
        if (s < 0 || !r.visited(s) || obj.insns[s].hint || !same_function(i, s)) continue;
        const Flow merged = value[s] == kBpUnset ? out : meet(flow[s], out);
        if (value[s] == kBpUnset || !(merged == flow[s])) {
          flow[s] = merged;
          value[s] = static_cast<uint8_t>(merged.bp);
          pending.push_back(s);
        }
      }
    }
  }
  return value;
}

}  // namespace framecert

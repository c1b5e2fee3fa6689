#include "validator/rbp_flow.h"

#include <span>
#include <vector>

#include "validator/run_beside.h"

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
  StateTable::Cache& cache;
  int32_t id;
  const CfiState& get() const { return states.at(id, cache); }
};

// What rbp holds after instruction `in` when the stack model describes the write (or leaves rbp alone).
BpValue transfer_bp(const DecodedObject& obj, const Instruction& in, const StateBefore& state, BpValue bp) {
  if (!in.insn.writes(Reg::Bp)) return bp;
  if (in.insn.zeroes_bp) return BpValue::Zero;
  const CfiState& before = state.get();  // valid until the next lookup: the only one here
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

// Where flows start, with what rbp holds there.
struct Seed {
  int32_t insn;
  BpValue bp;
};

std::vector<Seed> flow_seeds(const DecodedObject& obj, const CheckResult& r) {
  std::vector<Seed> seeds;
  for (int32_t f = 0; f < static_cast<int32_t>(obj.functions.size()); ++f) {
    const Function& fn = obj.functions[f];
    if (fn.parent != f || !fn.canonical || fn.first_insn == fn.end_insn || !r.visited(fn.first_insn)) continue;
    if (obj.insns[fn.first_insn].insn.offset != fn.offset) continue;
    seeds.push_back({static_cast<int32_t>(fn.first_insn), BpValue::Caller});
  }
  // An unwind hint asserts the stack, not rbp: what rbp holds there is unknown, unless the hint is a
  // function entry.
  for (int32_t i = 0; i < static_cast<int32_t>(obj.insns.size()); ++i) {
    const Instruction& in = obj.insns[i];
    if (!in.hint || !r.visited(i)) continue;
    const int32_t h = obj.hint_state(in);
    const bool entry = h != kNone && obj.hint_states[h] == CfiState::function_entry();
    seeds.push_back({i, entry ? BpValue::Caller : BpValue::Unknown});
  }
  return seeds;
}

// One flow, spread from the instructions on `pending` until nothing changes.
class Flows {
 public:
  Flows(const DecodedObject& obj, const CheckResult& r)
      : obj_(obj), r_(r), flow_(obj.insns.size()), value_(obj.insns.size(), kBpUnset) {}

  // Starts flows at `seeds`, each run to its fixed point before the next: a function's instructions are then
  // visited while they are in the cache. The order does not change the result: the transfer is monotone and
  // the meet is order-free, so every order reaches the same fixed point.
  void run(std::span<const Seed> seeds) {
    for (const Seed& s : seeds) {
      value_[s.insn] = static_cast<uint8_t>(s.bp);
      flow_[s.insn] = Flow{s.bp};
    }
    for (const Seed& s : seeds) {
      pending_.push_back(s.insn);
      spread();
    }
  }

  // Takes in what `other` (the flows of other seeds) reached. Where both reached an instruction, the flow there
  // is what both brought (their meet) and is spread again: every instruction after such a one is reached by
  // both too, and every other one got what it has from one side only, so the result is the one flows from all
  // the seeds at once reach.
  void merge(const Flows& other) {
    for (size_t i = 0; i < value_.size(); ++i) {
      if (other.value_[i] == kBpUnset) continue;
      if (value_[i] == kBpUnset) {
        value_[i] = other.value_[i];
        flow_[i] = other.flow_[i];
        continue;
      }
      flow_[i] = meet(flow_[i], other.flow_[i]);
      value_[i] = static_cast<uint8_t>(flow_[i].bp);
      pending_.push_back(static_cast<int32_t>(i));
    }
    spread();
  }

  std::vector<uint8_t> take_values() { return std::move(value_); }

 private:
  void spread() {
    while (!pending_.empty()) {
      const int32_t i = pending_.back();
      pending_.pop_back();
      if (r_.state_of_insn[i] < 0) continue;
      const Flow out = transfer(obj_, obj_.insns[i], StateBefore{r_.states, cache_, r_.state_of_insn[i]}, flow_[i]);
      followed_successors(obj_, i, succ_);
      for (int32_t s : succ_) {
        if (s < 0 || !r_.visited(s) || obj_.insns[s].hint || !same_function(i, s)) continue;
        const Flow merged = value_[s] == kBpUnset ? out : meet(flow_[s], out);
        if (value_[s] == kBpUnset || !(merged == flow_[s])) {
          flow_[s] = merged;
          value_[s] = static_cast<uint8_t>(merged.bp);
          pending_.push_back(s);
        }
      }
    }
  }

  // Paths never cross into another function: the checker stops at "falls through to next function".
  bool same_function(int32_t a, int32_t b) const {
    const int32_t fa = obj_.insns[a].func, fb = obj_.insns[b].func;
    return fa == kNone || fb == kNone || obj_.parent_of(fa) == obj_.parent_of(fb);
  }

  const DecodedObject& obj_;
  const CheckResult& r_;
  StateTable::Cache cache_;  // its own: the two halves' flows run at once
  std::vector<Flow> flow_;
  std::vector<uint8_t> value_;  // kBpUnset: no flow reached it yet
  std::vector<int32_t> pending_, succ_;
};

}  // namespace

std::vector<uint8_t> rbp_values(const DecodedObject& obj, const CheckResult& r, unsigned threads) {
  const std::vector<Seed> seeds = flow_seeds(obj, r);
  Flows flows(obj, r);
  if (threads < 2 || seeds.size() < 2) {
    flows.run(seeds);
    return flows.take_values();
  }
  // Two halves of the seeds at once, then merged (Flows::merge).
  Flows rest(obj, r);
  run_beside([&] { flows.run(std::span<const Seed>(seeds).first(seeds.size() / 2)); },
             [&] { rest.run(std::span<const Seed>(seeds).subspan(seeds.size() / 2)); });
  flows.merge(rest);
  return flows.take_values();
}

}  // namespace framecert

#include "validator/call_depth.h"

#include <climits>
#include <vector>

namespace framecert {

namespace {

constexpr int32_t kUnreached = INT32_MIN;    // no path got here (yet)
constexpr int32_t kUnknown = INT32_MIN + 1;  // paths got here, not at one exact depth

struct Depth {
  int32_t sp = kUnreached;
  int32_t bp = kUnreached;
  bool operator==(const Depth&) const = default;
};

bool known(int32_t v) { return v != kUnreached && v != kUnknown; }
int32_t add(int32_t v, int64_t delta) { return known(v) ? static_cast<int32_t>(v + delta) : kUnknown; }
int32_t meet(int32_t a, int32_t b) { return a == kUnreached ? b : b == kUnreached ? a : a == b ? a : kUnknown; }

// The depth after instruction `in`, from the depth before it.
Depth transfer(const DecodedObject& obj, const Instruction& in, Depth d) {
  const Insn& x = in.insn;
  if (x.kind == InsnKind::Call || x.kind == InsnKind::CallIndirect) {
    // The callee returns with rsp where it was and rbp preserved. A call that kept its push is one the
    // decoder could not resolve (its function is reported broken): not followed.
    return obj.ops(in).empty() ? d : Depth{kUnknown, kUnknown};
  }
  if (x.is_iret) return Depth{kUnknown, kUnknown};  // sync_core()'s iret to self: rare, not modelled
  bool sp_done = false, bp_done = false;
  for (const StackOp& op : obj.ops(in)) {
    using Src = StackOp::Src;
    using Dst = StackOp::Dst;
    if (op.dst == Dst::Push || op.dst == Dst::PushF) {
      d.sp = add(d.sp, 8);
      sp_done = true;
    } else if (op.src == Src::Pop || op.src == Src::PopF) {
      d.sp = add(d.sp, -8);
      sp_done = true;
      if (op.dst == Dst::Reg && op.dst_reg == Reg::Sp) d.sp = kUnknown;  // pop %rsp
      if (op.dst == Dst::Reg && op.dst_reg == Reg::Bp) {
        d.bp = kUnknown;
        bp_done = true;
      }
    } else if (op.dst == Dst::Reg && op.dst_reg == Reg::Sp) {
      sp_done = true;
      if (op.src == Src::Reg && op.src_reg == Reg::Bp) {
        d.sp = known(d.bp) ? d.bp : kUnknown;  // mov %rbp,%rsp
      } else if (op.src == Src::Reg && op.src_reg == Reg::Sp) {
        // mov %rsp,%rsp: nothing moves
      } else if (op.src == Src::Add && op.src_reg == Reg::Sp) {
        d.sp = add(d.sp, -op.src_offset);  // rsp += off: the depth shrinks by off
      } else if (op.src == Src::Add && op.src_reg == Reg::Bp) {
        d.sp = add(d.bp, -op.src_offset);  // lea off(%rbp),%rsp
      } else {
        d.sp = kUnknown;  // alloca, realignment, a load, another register
      }
    } else if (op.dst == Dst::Reg && op.dst_reg == Reg::Bp) {
      bp_done = true;
      if (op.src == Src::Reg && op.src_reg == Reg::Sp) {
        d.bp = known(d.sp) ? d.sp : kUnknown;  // mov %rsp,%rbp
      } else if (op.src == Src::Add && op.src_reg == Reg::Sp) {
        d.bp = add(d.sp, -op.src_offset);  // lea off(%rsp),%rbp
      } else {
        d.bp = kUnknown;
      }
    }
  }
  // Writes the stack model does not describe (xchg, cmov, enter, 32-bit moves...).
  if (x.writes(Reg::Sp) && !sp_done) d.sp = kUnknown;
  if (x.writes(Reg::Bp) && !bp_done) d.bp = kUnknown;
  if (known(d.sp) && d.sp < 8) d.sp = kUnknown;  // rsp above the return address: not a frame we understand
  return d;
}

}  // namespace

std::unordered_map<int32_t, CallDepth> call_depths(const DecodedObject& obj, const CheckResult& r) {
  const int32_t n = static_cast<int32_t>(obj.insns.size());
  std::vector<Depth> at(obj.insns.size());  // per instruction, before it; reset after each function
  std::vector<uint8_t> queued(obj.insns.size(), 0);
  std::vector<uint8_t> gave_up(obj.functions.size(), 0);  // per function family (its parent)
  std::vector<std::vector<std::pair<int32_t, Depth>>> calls(obj.functions.size());
  std::vector<int32_t> touched, work, succ;

  for (int32_t f = 0; f < static_cast<int32_t>(obj.functions.size()); ++f) {
    const Function& fn = obj.functions[f];
    if (fn.parent != f || !fn.canonical || fn.first_insn == fn.end_insn || fn.first_insn >= static_cast<uint32_t>(n))
      continue;
    if (!r.visited(fn.first_insn) || obj.insns[fn.first_insn].insn.offset != fn.offset) continue;
    const int32_t entry = static_cast<int32_t>(fn.first_insn);
    at[entry] = Depth{8, kUnknown};  // the return address; rbp is the caller's
    touched.push_back(entry);
    work.push_back(entry);
    queued[entry] = 1;
    while (!work.empty()) {
      const int32_t i = work.back();
      work.pop_back();
      queued[i] = 0;
      const Instruction& in = obj.insns[i];
      if (jumps_anywhere(obj, in)) gave_up[f] = 1;
      const Depth out = transfer(obj, in, at[i]);
      followed_successors(obj, i, succ);
      for (int32_t s : succ) {
        if (s < 0 || s >= n) continue;
        const Instruction& to = obj.insns[s];
        if (to.func != kNone && obj.parent_of(to.func) != f) {
          // Into another function's middle (directly, or through replacement code): that function's
          // depths no longer hold, and this path is not this function's any more. Running into another
          // function's entry (past a call the checker did not know never returns) harms nothing: the entry
          // is seeded with its own depth.
          if (obj.function_starting_at(s) == kNone) gave_up[obj.parent_of(to.func)] = 1;
          continue;
        }
        Depth d = out;
        if (to.hint) d = Depth{kUnknown, kUnknown};  // a hint asserts the CFA, not the depth
        const Depth merged{meet(at[s].sp, d.sp), meet(at[s].bp, d.bp)};
        if (merged == at[s]) continue;
        if (at[s] == Depth{}) touched.push_back(s);
        at[s] = merged;
        if (!queued[s]) {
          queued[s] = 1;
          work.push_back(s);
        }
      }
    }
    for (int32_t t : touched) {
      if (obj.insns[t].is_call() && (known(at[t].sp) || known(at[t].bp))) calls[f].emplace_back(t, at[t]);
      at[t] = Depth{};
    }
    touched.clear();
  }

  std::unordered_map<int32_t, CallDepth> out;
  for (int32_t f = 0; f < static_cast<int32_t>(obj.functions.size()); ++f) {
    if (gave_up[f]) continue;
    for (const auto& [i, d] : calls[f]) {
      CallDepth c{known(d.sp), known(d.bp), known(d.sp) ? d.sp : 0, known(d.bp) ? d.bp : 0};
      auto [it, fresh] = out.try_emplace(i, c);
      if (!fresh && !(it->second == c)) it->second = CallDepth{};  // shared code reached at two depths
    }
  }
  return out;
}

}  // namespace framecert

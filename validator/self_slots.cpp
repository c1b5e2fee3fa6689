#include "validator/self_slots.h"

#include <algorithm>
#include <array>
#include <span>

#include "validator/rbp_flow.h"

namespace framecert {

namespace {

using metadata::SlotBase;
using metadata::SlotKind;

enum class Value : uint8_t { Unknown, FrameAddress, ReturnAddress };

// Per instruction: how many followed edges reach it (capped at 2), and whether its only followed
// successor is the next instruction.
constexpr uint8_t kPredMask = 3;
constexpr uint8_t kFallsThroughOnly = 4;

bool has_candidate_store(const DecodedObject& obj) {
  for (const StackOp& op : obj.stack_ops)
    if (op.src == StackOp::Src::Reg && op.dst == StackOp::Dst::RegIndirect &&
        (op.dst_reg == Reg::Bp || (op.dst_reg == Reg::Sp && op.src_reg != Reg::Sp)))
      return true;
  return false;
}

std::vector<uint8_t> edge_flags(const DecodedObject& obj) {
  const int32_t n = static_cast<int32_t>(obj.insns.size());
  std::vector<uint8_t> flags(obj.insns.size(), 0);
  std::vector<int32_t> succ;
  for (int32_t i = 0; i < n; ++i) {
    followed_successors(obj, i, succ);
    for (int32_t s : succ)
      if (s >= 0 && s < n && (flags[s] & kPredMask) < 2) ++flags[s];
    if (succ.size() == 1 && succ[0] == i + 1) flags[i] |= kFallsThroughOnly;
  }
  return flags;
}

}  // namespace

std::vector<SelfSlotStore> find_self_slots(const DecodedObject& obj, const CheckResult& r,
                                           const std::vector<uint8_t>& bp) {
  std::vector<SelfSlotStore> out;
  if (!has_candidate_store(obj)) return out;  // most objects: no pass at all
  const std::vector<uint8_t> flags = edge_flags(obj);
  std::vector<uint8_t> anywhere(obj.functions.size(), 0);  // per function family: jumps_anywhere
  for (const Instruction& in : obj.insns)
    if (jumps_anywhere(obj, in)) anywhere[obj.parent_of(in.func)] = 1;

  std::array<Value, kNumGprs> regs{};
  for (const SectionCode& code : obj.code_sections) {
    for (uint32_t k = code.first_insn; k < code.end_insn; ++k) {
      const int32_t i = static_cast<int32_t>(k);
      const Instruction& in = obj.insns[i];
      const bool carried = k > code.first_insn && (flags[i - 1] & kFallsThroughOnly) && (flags[i] & kPredMask) == 1 &&
                           obj.insns[i - 1].func == in.func && !in.hint;
      if (!carried) regs.fill(Value::Unknown);
      if (in.func == kNone || in.ignore || anywhere[obj.parent_of(in.func)] || !r.visited(i) ||
          bp[i] != static_cast<uint8_t>(BpValue::Frame)) {
        regs.fill(Value::Unknown);
        continue;
      }
      // Only an instruction that reads rbp or the frame through it needs the state (decoding every state
      // would cost more than the rest of this pass).
      const std::span<const StackOp> ops = obj.ops(in);
      const bool touches_frame =
          in.insn.copy_src == Reg::Bp || std::any_of(ops.begin(), ops.end(), [](const StackOp& op) {
            return op.src_reg == Reg::Bp || op.dst_reg == Reg::Bp;
          });
      int32_t cfa_offset = 0;  // rbp = CFA - cfa_offset here
      if (touches_frame) {
        const CfiState& st = r.states.at(r.state_of_insn[i]);
        if (st.cfa.base != cfi::kBp || !st.has_valid_frame()) {
          regs.fill(Value::Unknown);
          continue;
        }
        cfa_offset = st.cfa.offset;
      }
      std::array<Value, kNumGprs> next = regs;
      uint16_t set = 0;
      // What a register holds before this instruction: rbp is the frame here; rsp is never a tracked value.
      auto value_of = [&](Reg reg) {
        if (reg == Reg::Bp) return Value::FrameAddress;
        return reg == Reg::None || reg == Reg::Sp ? Value::Unknown : regs[static_cast<int>(reg)];
      };
      auto assign = [&](Reg reg, Value v) {
        if (reg == Reg::None || reg == Reg::Sp || reg == Reg::Bp) return;
        next[static_cast<int>(reg)] = v;
        set |= static_cast<uint16_t>(1u << static_cast<int>(reg));
      };
      for (const StackOp& op : ops) {
        if (op.src == StackOp::Src::Reg && op.dst == StackOp::Dst::RegIndirect &&
            (op.dst_reg == Reg::Bp || op.dst_reg == Reg::Sp)) {
          const Value v = value_of(op.src_reg);
          const SlotKind kind = v == Value::FrameAddress ? SlotKind::FrameAddress : SlotKind::ReturnAddress;
          // Through rbp: at a fixed place from the CFA. Through rsp (a frame realigned or with an alloca,
          // where only rsp reaches the locals): at rsp + d as long as rsp stays where it is, so at the calls
          // the function makes from there, the callee's CFA + d.
          if (v != Value::Unknown && op.dst_reg == Reg::Bp) out.push_back({i, op.dst_offset - cfa_offset, kind});
          if (v != Value::Unknown && op.dst_reg == Reg::Sp) out.push_back({i, op.dst_offset, kind, SlotBase::CallSp});
        } else if (op.src == StackOp::Src::RegIndirect && op.src_reg == Reg::Bp && op.dst == StackOp::Dst::Reg) {
          // mov d(%rbp),%reg: the return address when it reads CFA - 8.
          assign(op.dst_reg, op.src_offset - cfa_offset == -8 ? Value::ReturnAddress : Value::Unknown);
        } else if (op.src == StackOp::Src::Reg && op.src_reg == Reg::Bp && op.dst == StackOp::Dst::Reg) {
          assign(op.dst_reg, Value::FrameAddress);  // lea 0(%rbp),%reg
        }
      }
      if (in.insn.copy_dst != Reg::None && !(set >> static_cast<int>(in.insn.copy_dst) & 1))
        assign(in.insn.copy_dst, value_of(in.insn.copy_src));
      for (int g = 0; g < kNumGprs; ++g)
        if (in.insn.writes(static_cast<Reg>(g)) && !(set >> g & 1)) next[g] = Value::Unknown;
      if (in.is_call()) next.fill(Value::Unknown);
      regs = next;
    }
  }
  return out;
}

}  // namespace framecert

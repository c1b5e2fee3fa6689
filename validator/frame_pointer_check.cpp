#include "validator/frame_pointer_check.h"

#include "validator/rbp_flow.h"

namespace framecert {

void check_frame_pointer_kept(const DecodedObject& obj, const std::vector<uint8_t>& bp, CheckResult& result) {
  std::vector<bool> reported(obj.functions.size(), false);
  for (size_t i = 0; i < obj.insns.size(); ++i) {
    const Instruction& in = obj.insns[i];
    if (!in.is_call() || in.func == kNone || in.ignore || result.state_of_insn[i] < 0 || bp[i] == kBpUnset) continue;
    const int32_t f = obj.parent_of(in.func);
    // A function already reported keeps its first finding only (objtool's rule, and framecert's).
    if (result.function_failed[f] || reported[f]) continue;
    if (!result.states.at(result.state_of_insn[i]).has_valid_frame()) continue;  // objtool's own rule covers it
    if (bp[i] == static_cast<uint8_t>(BpValue::Frame)) continue;
    result.findings.push_back(obj.finding_at(in, kFramePointerOverwritten));
    result.function_failed[f] = true;
    reported[f] = true;
  }
}

void check_outermost_frames(const DecodedObject& obj, const std::vector<uint8_t>& bp, CheckResult& result) {
  for (size_t i = 0; i < obj.insns.size(); ++i) {
    const Instruction& in = obj.insns[i];
    if (in.func == kNone || in.ignore || result.state_of_insn[i] < 0) continue;
    const int32_t f = obj.parent_of(in.func);
    if (result.function_failed[f] || bp[i] == static_cast<uint8_t>(BpValue::Zero)) continue;
    const CfiState& s = result.states.at(result.state_of_insn[i]);  // no other lookup below
    const char* message = nullptr;
    if (const auto ops = obj.ops(in); ops.size() == 1 && is_outermost_realignment(s, ops[0]))
      message = "unsupported stack pointer realignment";
    else if (in.is_call() && is_outermost_call(s))
      message = "call without frame pointer save/setup";
    if (!message) continue;
    result.findings.push_back(obj.finding_at(in, message));
    result.function_failed[f] = true;
  }
}

}  // namespace framecert

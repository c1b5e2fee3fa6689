// The exact stack depth at every call instruction: how far below the CFA rsp and rbp are as the call
// executes, on every path to it. The CFA rule of a frame-pointer function is "CFA = rbp + 16": it says
// where the frame record is, not how big the frame is. With the depth the unwinder knows where the
// callee's CFA must be (rbp - (sp - bp)), so a saved rbp redirected past a frame shows even when every
// word of the skipped record was erased (unwinder/reliability.h, check_frame_size).
//
// A forward data-flow pass over each function's paths, apart from the checker's objtool-compatible state
// (whose stack_size is not exact: it ignores `sub %reg,%rsp` under a frame pointer and is not compared
// where paths meet). A depth is recorded only where it is exact:
//   - push/pop, add/sub/lea of rsp by a constant, mov %rsp,%rbp, mov %rbp,%rsp, leave, lea d(%rbp),%rsp
//     are followed; any other write to rsp (alloca's `sub %reg,%rsp`, `and` realignment, a load, xchg,
//     enter) makes it unknown, and so does any other write to rbp for rbp's depth;
//   - two paths meeting at different depths make it unknown from there on (until `leave` or
//     `mov %rbp,%rsp` restores rsp from a known rbp);
//   - an unwind hint asserts a CFA, not a depth: unknown after it;
//   - a function with an indirect jump that is no resolved switch table (and no retpoline tail call), or
//     entered in its middle by a jump from another function, gets no depths at all: a path may reach its
//     code from where the pass cannot see.
// Unknown only loses a check; it never makes a trace reliable.
#pragma once

#include <cstdint>
#include <unordered_map>

#include "validator/checker.h"
#include "validator/decoded_object.h"

namespace framecert {

struct CallDepth {
  bool sp_known = false;
  bool bp_known = false;
  int32_t sp = 0;  // CFA - rsp as the call executes (the callee's CFA is CFA - sp)
  int32_t bp = 0;  // CFA - rbp
  bool operator==(const CallDepth&) const = default;
};

// By instruction index, for the call instructions where something is known.
std::unordered_map<int32_t, CallDepth> call_depths(const DecodedObject& obj, const CheckResult& result);

}  // namespace framecert

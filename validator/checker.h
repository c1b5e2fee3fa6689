// The path-following checker: from each function's entry, follow every path (branches, switch tables,
// fall-through), carry the stack state forward by value so each path has its own copy, compare states
// where paths meet, and apply the frame rules at calls, sibling calls and returns.
#pragma once

#include <cstdint>
#include <vector>

#include "validator/cfi_state.h"
#include "validator/decoded_object.h"
#include "validator/finding.h"
#include "validator/state_table.h"

namespace framecert {

struct CheckResult {
  std::vector<Finding> findings;
  // Per instruction: the id in `states` of the state on entry, or -1 where no path reached it.
  std::vector<int32_t> state_of_insn;
  StateTable states;
  bool visited(int32_t i) const { return state_of_insn[i] >= 0; }
  std::vector<bool> function_failed;  // per function: validation stopped at a finding
  std::vector<bool> hint_reached;     // per instruction: reached on a path that starts at an unwind hint
  // Per function (its root, the parent of a .cold part): the first of its instructions that no path
  // reached and that is not known dead code (padding, traps after noreturn calls), or -1. Such a function
  // was not checked whole and is never certified (docs/rules.md, "What certified means").
  std::vector<int32_t> first_unchecked;
};

// Checks every function (in objtool's order) and the code reached only through unwind hints. `threads` >= 2:
// two halves of the functions at once; the result is the one a single thread gives.
CheckResult check_functions(const DecodedObject& obj, bool explain, unsigned threads = 1);

// objtool's "unreachable instruction": the first instruction no path reached (only run on an object
// without other findings, as objtool does). Appends at most one finding.
void check_reachability(const DecodedObject& obj, CheckResult& result);

// framecert's own rule (docs/rules.md): every `ret` outside every function symbol is reported as "return
// instruction outside of a callable function", reached or not, whatever else was found — unless an
// unwind hint describes the code (annotated entry code), it is alternative replacement code (copied into
// a function at boot), or it is the dead code of a dropped weak function in a linked object. One finding per such
// `ret`. Fills `result.first_unchecked`: every function, whatever was found elsewhere in the object.
void find_unchecked_instructions(const DecodedObject& obj, CheckResult& result);

std::vector<Finding> returns_outside_functions(const DecodedObject& obj, const CheckResult& result);

}  // namespace framecert

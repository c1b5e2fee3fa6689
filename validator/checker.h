// The path-following checker: from each function's entry, follow every path (branches, switch tables,
// fall-through), carry the stack state forward by value so each path has its own copy, compare states
// where paths meet, and apply the frame rules at calls, sibling calls and returns.
#pragma once

#include <cstdint>
#include <vector>

#include "validator/cfi_state.h"
#include "validator/decoded_object.h"
#include "validator/finding.h"

namespace framecert {

struct CheckResult {
  std::vector<Finding> findings;
  // Per instruction: the index into `states` of the state on entry, or -1 where no path reached it.
  std::vector<int32_t> state_of_insn;
  std::vector<CfiState> states;  // de-duplicated
  std::vector<uint8_t> visited;
  std::vector<bool> function_failed;  // per function: validation stopped at a finding
};

CheckResult check_functions(const DecodedObject& obj, bool explain);

// objtool's "unreachable instruction": the first instruction no path reached (only run on an object
// without other findings, as objtool does). Appends at most one finding.
void check_reachability(const DecodedObject& obj, CheckResult& result);

}  // namespace framecert

// A rule objtool does not have: a call made while the function's frame is set up in objtool's terms (rbp
// saved at CFA-16, CFA = rbp+16) but with rbp overwritten since `mov %rsp,%rbp` — by a plain mov, xor or
// lea that objtool's stack model does not follow. The callee then saves a bogus frame pointer, and a
// frame-pointer walk from inside it loses this function's callers (or follows a forged record). objtool 6.1
// reports nothing there; framecert reports "call with frame pointer overwritten after setup", once per
// function like objtool's own rules (docs/rules.md). rbp_flow.h says what rbp holds.
#pragma once

#include <cstdint>
#include <vector>

#include "validator/checker.h"
#include "validator/decoded_object.h"

namespace framecert {

inline constexpr const char* kFramePointerOverwritten = "call with frame pointer overwritten after setup";

// Appends the findings to result.findings and marks their functions failed. `bp`: rbp_values(obj, result).
void check_frame_pointer_kept(const DecodedObject& obj, const std::vector<uint8_t>& bp, CheckResult& result);

// The checker accepts the outermost frame's `and $-N,%rsp` and its calls (cfi_state.h,
// is_outermost_realignment) on the rbp = 0 it saw along the path it followed first; where another path
// meets it with a different rbp, only rbp_flow's meet is sound. Re-judges both with `bp` and reports
// objtool's own finding where rbp is not 0 on every path. Appends to result.findings.
void check_outermost_frames(const DecodedObject& obj, const std::vector<uint8_t>& bp, CheckResult& result);

}  // namespace framecert

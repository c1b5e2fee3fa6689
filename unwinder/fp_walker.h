// The frame-pointer walk and its verdict: the innermost frame from the CFA rule at the exact pc, every
// other frame from the rbp chain, each return address judged against the validator's call-site records.
#pragma once

#include "unwinder/reliability.h"

namespace framecert {

Trace walk_frame_pointers(const WalkContext& ctx, const Regs& regs);

}  // namespace framecert

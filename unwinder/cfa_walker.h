// The metadata-only walk (like the kernel's ORC unwinder): every frame from the CFA rule at its pc, no
// rbp chain. It can step through frameless code, so it is the second opinion on the frame-pointer walk —
// reported beside it, never merged into it.
#pragma once

#include "unwinder/reliability.h"

namespace framecert {

Trace walk_cfa_rules(const WalkContext& ctx, const Regs& regs);

}  // namespace framecert

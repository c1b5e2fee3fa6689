#include "unwinder/unwind.h"

#include <fmt/format.h>

#include "unwinder/reliability.h"

namespace framecert {

CrossCheck cross_check(const Trace& fp, const Trace& cfa) {
  size_t n = std::min(fp.frames.size(), cfa.frames.size());
  for (size_t i = 0; i < n; ++i) {
    if (fp.frames[i].pc != cfa.frames[i].pc)
      return {false, static_cast<int>(i),
              fmt::format("frame {}: pc {:#x} by frame pointers, {:#x} by CFA rules", i, fp.frames[i].pc,
                          cfa.frames[i].pc)};
    // Every frame's CFA (the callee's CFA is this frame's stack pointer) must agree exactly, and so must
    // rbp where the metadata-only walk knows it: same pcs over different frame addresses mean the two
    // walks read different stack words.
    if (fp.frames[i].sp != cfa.frames[i].sp)
      return {false, static_cast<int>(i),
              fmt::format("frame {}: stack pointer {:#x} by frame pointers, {:#x} by CFA rules", i, fp.frames[i].sp,
                          cfa.frames[i].sp)};
    if (i > 0 && cfa.frames[i].fp != 0 && fp.frames[i].fp != cfa.frames[i].fp)
      return {false, static_cast<int>(i),
              fmt::format("frame {}: rbp {:#x} by frame pointers, {:#x} by CFA rules", i, fp.frames[i].fp,
                          cfa.frames[i].fp)};
  }
  if (fp.frames.size() != cfa.frames.size())
    return {false, static_cast<int>(n),
            fmt::format("{} frames by frame pointers, {} by CFA rules", fp.frames.size(), cfa.frames.size())};
  if (fp.verdict.reliable && !cfa.verdict.reliable)
    return {false, cfa.verdict.frame,
            fmt::format("the CFA-rule walk is unreliable: {} at frame {}", reason_name(cfa.verdict.reason),
                        cfa.verdict.frame)};
  return {true, -1, {}};
}

Unwind unwind(const WalkContext& ctx, const Regs& regs) {
  Unwind u;
  u.trace = walk_frame_pointers(ctx, regs);
  u.cfa_trace = walk_cfa_rules(ctx, regs);
  u.cross_check = cross_check(u.trace, u.cfa_trace);
  if (u.trace.verdict.reliable && !u.cross_check.agree && !rule_disabled(Reason::CrossCheckMismatch)) {
    u.trace.verdict = Verdict{false, Reason::CrossCheckMismatch, u.cross_check.first_difference, u.cross_check.detail};
  }
  return u;
}

}  // namespace framecert

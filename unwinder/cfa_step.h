// One step by a CFA rule: where the caller's frame is (CFA = rsp or rbp + offset, or [rsp] + offset), where
// its return address is ([CFA - 8]) and where its rbp is (the frame record at CFA - 16, a saved slot at
// CFA + bp_offset, or rbp itself). The innermost step of every walk (step_from_registers) and every step of
// the metadata-only walk (walk_cfa_rules) are this one function, so the two can never read a rule
// differently — the cross-check compares walks, not two implementations of the metadata's meaning.
#pragma once

#include <cstdint>
#include <optional>

#include "unwinder/reliability.h"

namespace framecert {

// The frame being stepped out of.
struct CfaStepFrom {
  uint64_t sp = 0;
  uint64_t fp = 0;
  bool fp_known = true;  // false: an earlier step lost rbp (metadata-only walk)
  uint64_t where = 0;    // the pc whose state is applied, as messages name it
  int frame = 0;         // the frame index the judge records
  // true (the innermost step): a caller's rbp the state does not locate fails the trace (bp-clobbered).
  // false (the metadata-only walk): it is only unknown from here on, fatal if a later rule needs it.
  bool caller_fp_required = true;
};

struct CfaStep {
  uint64_t cfa = 0;
  uint64_t return_address = 0;
  uint64_t caller_fp = 0;
  bool caller_fp_known = true;
};

// Applies `state` (its CFA rule and rbp flags) to `from`. Returns nullopt after failing `judge` with the
// reason: no CFA rule (no-frame-state), rbp needed but lost or not the frame record (bp-clobbered), the
// return address or rbp slot misplaced (placement reasons), a word unreadable (memory-unreadable).
std::optional<CfaStep> apply_cfa_rule(const WalkContext& ctx, const FrameState& state, const CfaStepFrom& from,
                                      Judge& judge);

}  // namespace framecert

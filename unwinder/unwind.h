// One task's unwind as reported: the frame-pointer trace with its verdict, the metadata-only trace beside
// it, and whether they agree. A reliable frame-pointer verdict whose cross-check disagrees is demoted to
// `cross-check-mismatch` — explicitly, with both traces kept — because a false reliable is the one outcome
// that must never happen.
#pragma once

#include "unwinder/cfa_walker.h"
#include "unwinder/fp_walker.h"

namespace framecert {

struct CrossCheck {
  bool agree = false;
  int first_difference = -1;  // frame index, or the shorter length
  std::string detail;
};

struct Unwind {
  Trace trace;      // the frame-pointer walk: the verdict that counts
  Trace cfa_trace;  // the metadata-only walk
  CrossCheck cross_check;
};

// Same frames (by pc and frame address where both know it) and the metadata-only walk reliable too.
CrossCheck cross_check(const Trace& fp, const Trace& cfa);
Unwind unwind(const WalkContext& ctx, const Regs& regs);

}  // namespace framecert

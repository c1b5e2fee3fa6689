#include "unwinder/cfa_walker.h"

#include <fmt/format.h>

#include "unwinder/cfa_step.h"
#include "unwinder/frame_builder.h"
#include "unwinder/return_hooks.h"

namespace framecert {

using namespace metadata;

Trace walk_cfa_rules(const WalkContext& ctx, const Regs& regs) {
  Trace t;
  Judge judge;
  push_frame(t, ctx.code, regs.rip, regs.rsp, regs.rbp, FrameTrust::Context);
  auto first = step_from_registers(ctx, regs, judge);
  if (!first || first->end || !first->from_metadata) {
    if (first && !first->from_metadata) judge.fail(Reason::NoMetadata, 0, "no CFA rule at the innermost pc");
    t.verdict = judge.finish(first && first->end, 0);
    return t;
  }
  uint64_t ret = first->return_address;
  uint64_t fp = first->caller_fp;
  bool fp_known = true;
  uint64_t sp = first->cfa;
  auto hooks = begin_return_hooks(ctx);
  bool end = false;
  for (int k = 1;; ++k) {
    if (static_cast<size_t>(k) >= ctx.options.max_depth) {
      judge.fail(Reason::TooDeep, k, fmt::format("more than {} frames", ctx.options.max_depth));
      break;
    }
    ReturnAddress ra = recover_return_address(ctx, hooks.get(), ret, sp - 8, k, judge);  // read at CFA - 8
    ret = ra.value;
    push_frame(t, ctx.code, ret, sp, fp_known ? fp : 0, FrameTrust::CfaRule);
    show_trampoline(t.frames.back(), ra);
    if (ra.unrecovered) break;
    ReturnSite site = judge_return_site(ctx, ret, t.frames[k - 1].pc, k > 1, k, judge);
    if (!site.image || !site.image->metadata) break;
    if (!site.state) {
      judge.fail(Reason::NoMetadata, k, fmt::format("no metadata row covers {:#x}", ret - 1));
      break;
    }
    const FrameState& s = *site.state;
    if (ctx.options.end_frame && fp_known && fp == *ctx.options.end_frame) {
      end = true;
      if (ctx.options.end_record) judge_end_record(ctx, t, judge, hooks.get());
      break;
    }
    if (s.has(kEndOfStack)) {
      end = hint_ends_stack(ctx.options, sp);
      if (!end)
        judge.fail(Reason::StackEndNotReached, k,
                   fmt::format("{:#x} is under an end-of-stack hint below the stack's top", ret));
      break;
    }
    if (s.has(kBpZero) && ctx.options.zeroed_rbp_ends_stack && s.cfa_base != CfaBase::Bp) {
      if (fp_known && fp == 0) {
        end = true;
      } else {
        judge.fail(Reason::BpClobbered, k,
                   fmt::format("metadata says rbp is 0 at {:#x}, but it is {:#x}", ret - 1, fp));
      }
      break;
    }
    // rbp lost here is fatal only if a caller's rule needs it.
    auto step = apply_cfa_rule(ctx, s, CfaStepFrom{sp, fp, fp_known, ret - 1, k, false}, judge);
    if (!step) break;
    ret = step->return_address;
    fp = step->caller_fp;
    fp_known = step->caller_fp_known;
    sp = step->cfa;
  }
  t.verdict = judge.finish(end, static_cast<int>(t.frames.size()) - 1);
  return t;
}

}  // namespace framecert

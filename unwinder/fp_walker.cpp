#include "unwinder/fp_walker.h"

#include <fmt/format.h>

#include "unwinder/frame_builder.h"
#include "unwinder/return_hooks.h"

namespace framecert {

using namespace metadata;

Trace walk_frame_pointers(const WalkContext& ctx, const Regs& regs) {
  Trace t;
  Judge judge;
  push_frame(t, ctx.code, regs.rip, regs.rsp, regs.rbp, FrameTrust::Context);
  if (ctx.options.innermost_is_return_address) {
    if (auto p = check_innermost_return_address(ctx, regs.rip)) judge.fail(*p, 0);
  }
  auto first = step_from_registers(ctx, regs, judge);
  if (!first || first->end) {
    t.verdict = judge.finish(first && first->end, 0);
    return t;
  }
  uint64_t ret = first->return_address;
  uint64_t fp = first->caller_fp;
  uint64_t sp = first->cfa;         // rsp in the caller once the callee returned
  uint64_t prev_record = regs.rsp;  // for loop detection
  FrameTrust trust = first->from_metadata ? FrameTrust::CfaRule : FrameTrust::FramePointer;
  auto hooks = begin_return_hooks(ctx);
  bool end = false;
  for (int k = 1;; ++k) {
    if (static_cast<size_t>(k) >= ctx.options.max_depth) {
      judge.fail(Reason::TooDeep, k, fmt::format("more than {} frames", ctx.options.max_depth));
      break;
    }
    // The return address was read from the word just below the caller's CFA: a tracer may have replaced it.
    ReturnAddress ra = recover_return_address(ctx, hooks.get(), ret, sp - 8, k, judge);
    ret = ra.value;
    push_frame(t, ctx.code, ret, sp, fp, trust);
    show_trampoline(t.frames.back(), ra);
    if (ra.unrecovered) break;  // the caller is unknown
    trust = FrameTrust::FramePointer;
    const Frame& callee = t.frames[k - 1];
    ReturnSite site = judge_return_site(ctx, ret, callee.pc, k > 1, k, judge);
    if (!site.image) break;  // not code: nothing below can be trusted or even guessed
    // Condition 5: the recognised end of the stack.
    if (ctx.options.zeroed_rbp_ends_stack && site.call && site.call->has(kCallBpZero)) {
      if (site.state && site.state->cfa_base == CfaBase::Bp) {
        // The caller kept its CFA in rbp and then zeroed rbp: a frame function that lost its frame pointer
        // (its own callers are cut off), not an entry point.
        judge.fail(Reason::BpClobbered, k,
                   fmt::format("rbp zeroed before the call at {:#x} in a function whose CFA is rbp-based", ret));
      } else if (fp == 0) {
        end = true;
        if (auto p = check_no_outermost_record_above(ctx, sp)) judge.fail(*p, k);
      } else {
        judge.fail(Reason::BpClobbered, k,
                   fmt::format("the caller zeroed rbp before the call at {:#x}, but the saved rbp is {:#x}", ret, fp));
      }
      break;
    }
    if (ctx.options.end_frame && fp == *ctx.options.end_frame) {
      end = true;
      if (ctx.options.end_record) judge_end_record(ctx, t, judge, hooks.get());
      break;
    }
    if (site.state && site.state->has(kEndOfStack)) {
      end = hint_ends_stack(ctx.options, sp);
      if (!end)
        judge.fail(Reason::StackEndNotReached, k,
                   fmt::format("the return address {:#x} is under an end-of-stack hint, but the frame is not the "
                               "one at the stack's top: the frames below it are unknown",
                               ret));
      break;
    }
    // Condition 3: the caller must have had its own frame at the call, or rbp still holds a frame of
    // someone further up and the caller is skipped.
    if (site.call && !site.call->has(kCallFrameValid))
      judge.fail(Reason::NoFrameAtCallSite, k,
                 fmt::format("{}+{:#x} called without a valid frame: its caller would be skipped",
                             t.frames[k].symbol.empty() ? "?" : t.frames[k].symbol, t.frames[k].offset));
    if (fp == 0) {
      judge.fail(Reason::StackEndNotReached, k,
                 fmt::format("saved rbp is 0 at {:#x}, but no outermost frame is proven there", ret));
      break;
    }
    if (auto p = check_encoded_frame_pointer(ctx, fp)) {
      judge.fail(*p, k);
      break;
    }
    // Condition 1: the frame record [fp, fp+16) is on the stack, above this frame's stack pointer.
    if (auto p = check_frame_placement(ctx.bounds, fp, 16, sp, prev_record)) {
      judge.fail(*p, k);
      break;
    }
    // The caller's frame must be exactly where its code put it; where that could not be established,
    // look for traces of a frame record the chain jumped over.
    bool exact = false;
    if (auto p = check_frame_size(ctx, ret, site, sp, fp, &exact)) judge.fail(*p, k);
    if (!exact) {
      const OwnCopies own = own_copies(ctx, ret, site, fp, sp);
      if (auto p = check_no_skipped_frame(ctx, sp, fp, own.frame_address)) judge.fail(*p, k);
      if (auto p = check_no_own_return_address(ctx, sp, fp, ret, own.return_address)) judge.fail(*p, k);
    }
    auto next_fp = ctx.memory.read_u64(RemoteAddr(fp));
    auto next_ret = ctx.memory.read_u64(RemoteAddr(fp + 8));
    if (!next_fp || !next_ret) {
      judge.fail(Reason::MemoryUnreadable, k, (!next_fp ? next_fp.error() : next_ret.error()).describe());
      break;
    }
    prev_record = fp;
    sp = fp + 16;
    ret = *next_ret;
    fp = *next_fp;
  }
  t.verdict = judge.finish(end, static_cast<int>(t.frames.size()) - 1);
  return t;
}

}  // namespace framecert

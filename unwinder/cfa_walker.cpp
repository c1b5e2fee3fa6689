#include "unwinder/cfa_walker.h"

#include <fmt/format.h>

#include "unwinder/frame_builder.h"

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
  bool end = false;
  for (int k = 1;; ++k) {
    if (static_cast<size_t>(k) >= ctx.options.max_depth) {
      judge.fail(Reason::TooDeep, k, fmt::format("more than {} frames", ctx.options.max_depth));
      break;
    }
    push_frame(t, ctx.code, ret, sp, fp_known ? fp : 0, FrameTrust::CfaRule);
    ReturnSite site = judge_return_site(ctx, ret, t.frames[k - 1].pc, k > 1, k, judge);
    if (!site.image || !site.image->metadata) break;
    if (!site.state) {
      judge.fail(Reason::NoMetadata, k, fmt::format("no metadata row covers {:#x}", ret - 1));
      break;
    }
    const FrameState& s = *site.state;
    if (ctx.options.end_frame && fp_known && fp == *ctx.options.end_frame) {
      end = true;
      if (ctx.options.end_record) judge_end_record(ctx, t, judge);
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
        judge.fail(Reason::BpClobbered, k, fmt::format("metadata says rbp is 0 at {:#x}, but it is {:#x}", ret - 1, fp));
      }
      break;
    }
    uint64_t cfa = 0;
    switch (s.cfa_base) {
      case CfaBase::Sp: cfa = sp + s.cfa_offset; break;
      case CfaBase::Bp:
        if (!fp_known) {
          judge.fail(Reason::BpClobbered, k, fmt::format("the CFA at {:#x} needs rbp, which was lost", ret - 1));
          break;
        }
        cfa = fp + s.cfa_offset;
        break;
      case CfaBase::SpIndirect: {
        auto base = ctx.memory.read_u64(RemoteAddr(sp));
        if (!base) {
          judge.fail(Reason::MemoryUnreadable, k, base.error().describe());
          break;
        }
        cfa = *base + s.cfa_offset;
        break;
      }
      case CfaBase::Undefined:
      case CfaBase::Other:
        judge.fail(Reason::NoFrameState, k, fmt::format("no CFA rule at {:#x} ({})", ret - 1, describe_state(s)));
        break;
    }
    if (cfa == 0) break;
    if (auto p = check_frame_placement(ctx.bounds, cfa - 8, 8, sp, sp)) {
      judge.fail(*p, k);
      break;
    }
    uint64_t next_fp = 0;
    bool next_known = true;
    if (s.has(kBpIsFrame)) {
      if (fp_known && fp != cfa - 16) {
        judge.fail(Reason::BpClobbered, k, fmt::format("rbp {:#x} should be the frame at {:#x}", fp, cfa - 16));
        break;
      }
      auto v = ctx.memory.read_u64(RemoteAddr(cfa - 16));
      if (!v) {
        judge.fail(Reason::MemoryUnreadable, k, v.error().describe());
        break;
      }
      next_fp = *v;
    } else if (s.has(kBpSaved)) {
      uint64_t slot = cfa + s.bp_offset;
      if (auto p = check_frame_placement(ctx.bounds, slot, 8, sp, sp)) {
        judge.fail(*p, k);
        break;
      }
      auto v = ctx.memory.read_u64(RemoteAddr(slot));
      if (!v) {
        judge.fail(Reason::MemoryUnreadable, k, v.error().describe());
        break;
      }
      next_fp = *v;
    } else if (s.has(kBpUnchanged)) {
      next_fp = fp;
      next_known = fp_known;
    } else {
      next_known = false;  // lost here; fatal only if a caller needs it
    }
    auto next_ret = ctx.memory.read_u64(RemoteAddr(cfa - 8));
    if (!next_ret) {
      judge.fail(Reason::MemoryUnreadable, k, next_ret.error().describe());
      break;
    }
    ret = *next_ret;
    fp = next_fp;
    fp_known = next_known;
    sp = cfa;
  }
  t.verdict = judge.finish(end, static_cast<int>(t.frames.size()) - 1);
  return t;
}

}  // namespace framecert

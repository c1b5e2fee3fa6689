#include "unwinder/cfa_step.h"

#include <fmt/format.h>

namespace framecert {

using namespace metadata;

namespace {

std::optional<uint64_t> read_word(const WalkContext& ctx, uint64_t address, int frame, Judge& judge) {
  auto v = ctx.memory.read_u64(RemoteAddr(address));
  if (!v) {
    judge.fail(Reason::MemoryUnreadable, frame, v.error().describe());
    return std::nullopt;
  }
  return *v;
}

}  // namespace

std::optional<CfaStep> apply_cfa_rule(const WalkContext& ctx, const FrameState& s, const CfaStepFrom& from,
                                      Judge& judge) {
  const int k = from.frame;
  uint64_t cfa = 0;
  switch (s.cfa_base) {
    case CfaBase::Sp:
      cfa = from.sp + s.cfa_offset;
      break;
    case CfaBase::Bp:
      if (!from.fp_known) {
        judge.fail(Reason::BpClobbered, k, fmt::format("the CFA at {:#x} needs rbp, which was lost", from.where));
        return std::nullopt;
      }
      cfa = from.fp + s.cfa_offset;
      break;
    case CfaBase::SpIndirect: {
      auto base = read_word(ctx, from.sp, k, judge);
      if (!base) return std::nullopt;
      cfa = *base + s.cfa_offset;
      break;
    }
    case CfaBase::Undefined:
    case CfaBase::Other:
      judge.fail(Reason::NoFrameState, k, fmt::format("no CFA rule at {:#x} ({})", from.where, describe_state(s)));
      return std::nullopt;
  }
  // The return address slot [cfa-8] must be a stack word above rsp.
  if (auto p = check_frame_placement(ctx.bounds, cfa - 8, 8, from.sp, from.sp)) {
    judge.fail(*p, k);
    return std::nullopt;
  }
  CfaStep out;
  out.cfa = cfa;
  if (s.has(kBpIsFrame)) {
    if (from.fp_known && from.fp != cfa - 16) {
      judge.fail(Reason::BpClobbered, k, fmt::format("rbp {:#x} should be the frame at {:#x}", from.fp, cfa - 16));
      return std::nullopt;
    }
    auto v = read_word(ctx, cfa - 16, k, judge);
    if (!v) return std::nullopt;
    out.caller_fp = *v;
  } else if (s.has(kBpSaved)) {
    uint64_t slot = cfa + s.bp_offset;
    if (auto p = check_frame_placement(ctx.bounds, slot, 8, from.sp, from.sp)) {
      judge.fail(*p, k);
      return std::nullopt;
    }
    auto v = read_word(ctx, slot, k, judge);
    if (!v) return std::nullopt;
    out.caller_fp = *v;
  } else if (s.has(kBpUnchanged)) {
    out.caller_fp = from.fp;
    out.caller_fp_known = from.fp_known;
  } else if (from.caller_fp_required) {
    judge.fail(Reason::BpClobbered, k,
               fmt::format("the caller's rbp is lost at pc {:#x} ({})", from.where, describe_state(s)));
    return std::nullopt;
  } else {
    out.caller_fp_known = false;  // lost here; fatal only if a caller needs it
  }
  auto ret = read_word(ctx, cfa - 8, k, judge);
  if (!ret) return std::nullopt;
  out.return_address = *ret;
  return out;
}

}  // namespace framecert

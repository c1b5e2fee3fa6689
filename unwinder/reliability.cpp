#include "unwinder/reliability.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <set>
#include <string_view>

#include <fmt/format.h>

#include "unwinder/cfa_step.h"
#include "unwinder/frame_builder.h"
#include "unwinder/return_hooks.h"

namespace framecert {

using namespace metadata;

bool rule_disabled(Reason r) {
  static const std::set<Reason> disabled = [] {
    std::set<Reason> out;
    const char* env = std::getenv("FRAMECERT_TEST_DISABLE_RULE");
    for (std::string_view rest = env ? env : ""; !rest.empty();) {
      size_t comma = rest.find(',');
      if (auto reason = reason_from_name(rest.substr(0, comma))) out.insert(*reason);
      rest = comma == std::string_view::npos ? std::string_view{} : rest.substr(comma + 1);
    }
    return out;
  }();
  return !disabled.empty() && disabled.count(r) > 0;
}

bool hint_ends_stack(const WalkOptions& options, uint64_t sp) {
  return !options.end_frame || sp >= *options.end_frame + 16;
}

void Judge::fail(Reason r, int frame, std::string detail) {
  if (rule_disabled(r)) return;
  if (!first_) first_ = Verdict{false, r, frame, std::move(detail)};
}

Verdict Judge::finish(bool end_reached, int last_frame) const {
  if (first_) return *first_;
  if (!end_reached)
    return Verdict{false, Reason::StackEndNotReached, last_frame, "the walk stopped before the stack's end"};
  return Verdict{true, Reason::None, -1, {}};
}

Check check_frame_placement(const StackBounds& bounds, uint64_t addr, uint64_t len, uint64_t floor, uint64_t previous) {
  if (addr % 8 != 0) return Problem{Reason::FrameMisaligned, fmt::format("frame at {:#x} is not 8-byte aligned", addr)};
  if (!bounds.contains(addr, len))
    return Problem{Reason::FrameOutOfBounds,
                   fmt::format("frame at {:#x} outside the stack [{:#x}, {:#x})", addr, bounds.low, bounds.high)};
  if (addr < floor) {
    if (addr == previous) return Problem{Reason::LoopDetected, fmt::format("frame at {:#x} points to itself", addr)};
    return Problem{Reason::FrameNotAscending,
                   fmt::format("frame at {:#x} is below the previous frame's end {:#x}", addr, floor)};
  }
  return std::nullopt;
}

namespace {

// When nothing is proven about the innermost pc, still show a best-effort frame-pointer step so the user
// sees where the task probably is; the verdict is already unreliable.
std::optional<InnermostStep> assume_frame_at_rbp(const WalkContext& ctx, const Regs& regs) {
  if (regs.rbp == 0 || regs.rbp % 8 != 0 || !ctx.bounds.contains(regs.rbp, 16) || regs.rbp < regs.rsp)
    return std::nullopt;
  auto fp = ctx.memory.read_u64(RemoteAddr(regs.rbp));
  auto ret = ctx.memory.read_u64(RemoteAddr(regs.rbp + 8));
  if (!fp || !ret) return std::nullopt;
  return InnermostStep{false, false, regs.rbp + 16, *ret, *fp};
}

// A function the validator did not vouch for (STACK_FRAME_NON_STANDARD: objtool skips it, and so do we):
// no frame in it can be trusted, whatever its metadata rows say.
Check check_vouched_for(const CodeImage& img, uint64_t address) {
  if (!img.metadata) return std::nullopt;
  auto where = img.metadata->locate(address - img.bias);
  const FunctionEntry* f = where ? img.metadata->function_at(*where) : nullptr;
  if (!f || !f->has(kFuncNonStandard)) return std::nullopt;
  // Code copied at run time (an ftrace trampoline) is named by its image, so the reason says where it runs.
  const std::string where_copied = img.copied ? " (" + img.path + ")" : "";
  return Problem{Reason::NoMetadata,
                 fmt::format("{}{} is STACK_FRAME_NON_STANDARD: its frame is not vouched for", f->name, where_copied)};
}

}  // namespace

std::optional<InnermostStep> step_from_registers(const WalkContext& ctx, const Regs& regs, Judge& judge) {
  const uint64_t rip = regs.rip, rsp = regs.rsp, rbp = regs.rbp;
  if (rsp % 8 != 0) {
    judge.fail(Reason::FrameMisaligned, 0, fmt::format("rsp {:#x} is not 8-byte aligned", rsp));
    return std::nullopt;
  }
  if (!ctx.bounds.contains(rsp, 8)) {
    judge.fail(Reason::FrameOutOfBounds, 0,
               fmt::format("rsp {:#x} outside the stack [{:#x}, {:#x})", rsp, ctx.bounds.low, ctx.bounds.high));
    return std::nullopt;
  }
  const CodeImage* img = ctx.code.find(rip);
  if (!img) {
    judge.fail(Reason::ReturnAddressNotText, 0, fmt::format("pc {:#x} is in no executable mapping", rip));
    return assume_frame_at_rbp(ctx, regs);
  }
  if (auto p = check_vouched_for(*img, rip)) judge.fail(*p, 0);
  auto state = ctx.code.state_at(*img, rip);
  // A task inside a system call has rip right after its `syscall` instruction (the CPU saved exactly that
  // address). `syscall` leaves rsp and rbp as they were, so the state at the syscall instruction holds. The
  // validator follows objtool, for which `syscall` ends a path, so it proves nothing after it.
  if (regs.in_syscall() && (!state || state->cfa_base == CfaBase::Undefined)) {
    // The metadata's syscall sites say whether a `syscall` ends at rip (never read from the code here).
    if (auto syscall = ctx.code.syscall_before(*img, rip)) {
      auto at_syscall = ctx.code.state_at(*img, *syscall);
      if (at_syscall && at_syscall->cfa_base != CfaBase::Undefined) state = at_syscall;
    }
  }
  if (!state) {
    judge.fail(Reason::NoMetadata, 0,
               fmt::format("no metadata for pc {:#x} in {}{}", rip, img->path,
                           img->metadata_error.empty() ? "" : " (" + img->metadata_error + ")"));
    return assume_frame_at_rbp(ctx, regs);
  }
  // The outermost function itself: the entry point or a thread trampoline after it zeroed rbp.
  if (state->has(kEndOfStack)) {
    if (hint_ends_stack(ctx.options, rsp)) return InnermostStep{true};
    judge.fail(Reason::StackEndNotReached, 0,
               fmt::format("pc {:#x} is under an end-of-stack hint, but rsp {:#x} is below the pt_regs at the "
                           "stack's top: that code's frame is unknown, its callers would be cut off",
                           rip, rsp));
    return assume_frame_at_rbp(ctx, regs);
  }
  if (state->has(kBpZero) && ctx.options.zeroed_rbp_ends_stack && state->cfa_base != CfaBase::Bp) {
    if (rbp == 0) return InnermostStep{true};
    judge.fail(Reason::BpClobbered, 0, fmt::format("metadata says rbp is 0 at pc {:#x}, but rbp = {:#x}", rip, rbp));
    return std::nullopt;
  }
  if (state->cfa_base == CfaBase::Undefined || state->cfa_base == CfaBase::Other) {
    judge.fail(Reason::NoFrameState, 0,
               fmt::format("metadata proves no CFA rule at pc {:#x} ({})", rip, describe_state(*state)));
    return assume_frame_at_rbp(ctx, regs);
  }
  // The registers are all known here, so a caller's rbp the metadata does not locate fails the trace.
  auto step = apply_cfa_rule(ctx, *state, CfaStepFrom{rsp, rbp, true, rip, 0, true}, judge);
  if (!step) return std::nullopt;
  return InnermostStep{false, true, step->cfa, step->return_address, step->caller_fp};
}

namespace {

bool is_signal_trampoline(const CodeMap& code, uint64_t address) {
  auto f = code.function_at(address);
  return f && f->start == address && f->name.find("restore_rt") != std::string::npos;
}

// Whether the function entered at `from` reaches the entry `to` through proven tail calls (each one left
// with its frame torn down, so the function at the end returns where `from` would have): a chain of at most
// kMaxTailCalls jumps, a bounded search.
bool reaches_by_tail_calls(const CodeMap& code, uint64_t from, uint64_t to) {
  constexpr int kMaxTailCalls = 8;
  constexpr size_t kMaxFunctions = 64;
  std::vector<uint64_t> seen{from}, frontier{from};
  for (int depth = 0; depth < kMaxTailCalls && !frontier.empty(); ++depth) {
    std::vector<uint64_t> next;
    for (uint64_t f : frontier)
      for (uint64_t t : code.tail_call_targets(f)) {
        if (t == to) return true;
        if (std::find(seen.begin(), seen.end(), t) != seen.end() || seen.size() >= kMaxFunctions) continue;
        seen.push_back(t);
        next.push_back(t);
      }
    frontier = std::move(next);
  }
  return false;
}

// The direct call before `return_address` must target the function the callee frame runs in, or one that
// reaches it through proven tail calls (the tail-calling functions are rightly absent from the stack).
Check check_call_target(const WalkContext& ctx, const ReturnSite& site, uint64_t return_address, uint64_t callee_pc,
                        bool callee_is_return) {
  // The validator's recorded target; none: indirect, rewritten at run time, or not resolved (no check).
  auto direct = ctx.code.call_target(*site.image, *site.call);
  if (!direct) return std::nullopt;
  uint64_t target = *direct;
  auto callee = ctx.code.function_at(callee_is_return ? callee_pc - 1 : callee_pc);
  auto called = ctx.code.function_at(target);
  // Only a definite contradiction counts: the call lands on the entry of a known function that is not the
  // callee's. PLT stubs and unknown targets prove nothing either way.
  if (!callee || callee->cold_part || !called || called->start != target || target == callee->start)
    return std::nullopt;
  if (reaches_by_tail_calls(ctx.code, target, callee->start)) return std::nullopt;
  return Problem{Reason::CallTargetMismatch,
                 fmt::format("the call before {:#x} calls {} but the frame below runs in {}", return_address,
                             called->name, callee->name)};
}

}  // namespace

ReturnSite judge_return_site(const WalkContext& ctx, uint64_t return_address, uint64_t callee_pc, bool callee_is_return,
                             int index, Judge& judge) {
  ReturnSite site;
  if (is_signal_trampoline(ctx.code, return_address)) {
    judge.fail(Reason::InterruptFrameMidStack, index,
               fmt::format("{:#x} is a signal-return trampoline: a signal frame is on the stack", return_address));
    site.image = ctx.code.find(return_address);
    return site;
  }
  site.image = ctx.code.find(return_address - 1);
  if (!site.image) {
    judge.fail(Reason::ReturnAddressNotText, index,
               fmt::format("return address {:#x} is in no executable mapping", return_address));
    return site;
  }
  if (!site.image->metadata) {
    judge.fail(Reason::NoMetadata, index,
               fmt::format("no metadata for {} (return address {:#x}){}", site.image->path, return_address,
                           site.image->metadata_error.empty() ? "" : ": " + site.image->metadata_error));
    return site;
  }
  if (auto p = check_vouched_for(*site.image, return_address - 1)) judge.fail(*p, index);
  site.state = ctx.code.state_at(*site.image, return_address - 1);
  site.call = ctx.code.call_site_at(*site.image, return_address);
  if (site.state && site.state->has(kRegsFrame)) {
    judge.fail(Reason::InterruptFrameMidStack, index,
               fmt::format("a register frame is on the stack at return address {:#x}", return_address));
    return site;
  }
  if (!site.call) {
    // Code in no function the validator checked (it had no symbol there: a stripped object's local
    // functions) has no metadata; "no call instruction ends here" would blame the return address.
    uint64_t at = return_address - 1 - site.image->bias;
    if (!site.image->metadata->function_at_address(at)) {
      const Symbol* sym = site.image->symbols ? site.image->symbols->lookup(at) : nullptr;
      judge.fail(Reason::NoMetadata, index,
                 sym ? fmt::format("no metadata for {:#x} in {} ({}: a function the validator did not check)",
                                   return_address, site.image->path, sym->name)
                     : fmt::format("no symbol or metadata for {:#x} in {}", return_address, site.image->path));
      return site;
    }
    judge.fail(Reason::ReturnAddressNotAfterCall, index,
               fmt::format("no call instruction ends at {:#x}", return_address));
    return site;
  }
  if (ctx.options.check_call_targets && !site.call->has(kCallIndirect)) {
    if (auto p = check_call_target(ctx, site, return_address, callee_pc, callee_is_return)) judge.fail(*p, index);
  }
  return site;
}

OwnCopies own_copies(const WalkContext& ctx, uint64_t return_address, const ReturnSite& site, uint64_t record,
                     uint64_t callee_cfa) {
  OwnCopies out;
  const std::vector<SelfSlot> slots = ctx.code.self_slots(return_address - 1);
  if (slots.empty()) return out;
  auto ret = ctx.memory.read_u64(RemoteAddr(record + 8));
  // A CFA-based slot is placed from the claimed frame, only where the caller's rbp is its frame at the call.
  const bool bp_frame = site.state && site.state->cfa_base == CfaBase::Bp && site.state->has(kBpIsFrame);
  const uint64_t cfa = bp_frame ? record + static_cast<uint64_t>(int64_t{site.state->cfa_offset}) : 0;
  for (const SelfSlot& slot : slots) {
    if (slot.base == metadata::SlotBase::Cfa && !bp_frame) continue;
    const uint64_t base = slot.base == metadata::SlotBase::Cfa ? cfa : callee_cfa;
    const uint64_t at = base + static_cast<uint64_t>(int64_t{slot.slot_offset});
    auto word = ctx.memory.read_u64(RemoteAddr(at));
    if (!word) continue;
    if (slot.kind == metadata::SlotKind::FrameAddress && *word == record) out.frame_address.push_back(at);
    if (slot.kind == metadata::SlotKind::ReturnAddress && ret && *word == *ret) out.return_address.push_back(at);
  }
  return out;
}

Check check_no_skipped_frame(const WalkContext& ctx, uint64_t low, uint64_t record, std::span<const uint64_t> own) {
  if (!ctx.options.scan_for_skipped_frames || record <= low) return std::nullopt;
  low = (low + 7) & ~uint64_t{7};
  // Any word in this frame's own area that holds the address of the claimed caller frame is the saved rbp
  // of a frame record we jumped over (its return address may be damaged too). A live frame's locals only
  // hold that address in the rare code that stores its caller's frame pointer — and where the validator
  // proved that store (a self slot), the word is `own`.
  for (uint64_t a = low; a + 8 <= record; a += 8) {
    if (std::find(own.begin(), own.end(), a) != own.end()) continue;
    auto word = ctx.memory.read_u64(RemoteAddr(a));
    if (!word || *word != record) continue;
    return Problem{Reason::FrameSkipped,
                   fmt::format("the word at {:#x}, inside the frame below {:#x}, links to that frame: the chain "
                               "skipped the frame record there",
                               a, record)};
  }
  return std::nullopt;
}

Check check_no_own_return_address(const WalkContext& ctx, uint64_t low, uint64_t record, uint64_t pc,
                                  std::span<const uint64_t> own) {
  if (!ctx.options.scan_for_skipped_frames || record <= low) return std::nullopt;
  auto fn = ctx.code.function_at(pc - 1);
  if (!fn || fn->cold_part) return std::nullopt;
  low = (low + 7) & ~uint64_t{7};
  for (uint64_t a = low; a + 8 <= record; a += 8) {
    if (std::find(own.begin(), own.end(), a) != own.end()) continue;  // _RET_IP_ kept in a proven slot
    auto word = ctx.memory.read_u64(RemoteAddr(a));
    if (!word || *word == 0) continue;
    const CodeImage* img = ctx.code.find(*word - 1);
    if (!img) continue;
    auto call = ctx.code.call_site_at(*img, *word);
    if (!call) continue;
    auto target = ctx.code.call_target(*img, *call);
    if (!target || *target != fn->start) continue;
    return Problem{Reason::FrameSkipped,
                   fmt::format("the word at {:#x}, inside the frame below {:#x}, is a return address ({:#x}) of a "
                               "call to {}: that function's own frame record lies there and was skipped",
                               a, record, *word, fn->name)};
  }
  return std::nullopt;
}

Check check_frame_size(const WalkContext& ctx, uint64_t return_address, const ReturnSite& site, uint64_t sp,
                       uint64_t fp, bool* verified) {
  if (verified) *verified = false;
  if (!ctx.options.check_frame_sizes || !site.state || !site.call) return std::nullopt;
  const FrameState& s = *site.state;
  if (s.cfa_base != CfaBase::Bp || !s.has(kBpIsFrame)) return std::nullopt;
  const CallSite& c = *site.call;
  if (!c.has(kCallSpDepth) || !c.has(kCallBpDepth)) return std::nullopt;  // not exact: no check
  // The depths must agree with the CFA rule about where rbp is, or they judge nothing.
  if (c.bp_depth != s.cfa_offset) return std::nullopt;
  const uint64_t expected = fp + static_cast<uint64_t>(static_cast<int64_t>(c.bp_depth) - c.sp_depth);
  if (sp == expected) {
    if (verified) *verified = true;
    return std::nullopt;
  }
  auto fn = ctx.code.function_at(return_address - 1);
  return Problem{Reason::FrameSizeMismatch,
                 fmt::format("{} keeps rsp {} bytes below its frame at the call before {:#x}: with its frame at "
                             "{:#x} the callee's CFA must be {:#x}, not {:#x}",
                             fn ? fn->name : "the caller", c.sp_depth - c.bp_depth, return_address, fp, expected, sp)};
}

Check check_no_outermost_record_above(const WalkContext& ctx, uint64_t low) {
  if (!ctx.options.scan_for_skipped_frames) return std::nullopt;
  low = (low + 7) & ~uint64_t{7};
  uint64_t high = std::min(ctx.bounds.high, low + kEndScanWindow);
  for (uint64_t a = low; a + 16 <= high; a += 8) {
    auto word = ctx.memory.read_u64(RemoteAddr(a));
    if (!word) break;
    if (*word != 0) continue;
    auto ret = ctx.memory.read_u64(RemoteAddr(a + 8));
    if (!ret || *ret == 0) continue;
    const CodeImage* img = ctx.code.find(*ret - 1);
    if (!img) continue;
    auto call = ctx.code.call_site_at(*img, *ret);
    if (!call || !call->has(metadata::kCallBpZero)) continue;
    return Problem{Reason::FrameSkipped,
                   fmt::format("another outermost frame record at {:#x} (return address {:#x}) lies above the "
                               "claimed end: the chain skipped frames",
                               a, *ret)};
  }
  return std::nullopt;
}

Check check_innermost_return_address(const WalkContext& ctx, uint64_t return_address) {
  const CodeImage* img = ctx.code.find(return_address - 1);
  if (!img)
    return Problem{Reason::ReturnAddressNotText, fmt::format("saved ret_addr {:#x} is not text", return_address)};
  if (auto p = check_vouched_for(*img, return_address - 1)) return p;
  auto call = ctx.code.call_site_at(*img, return_address);
  if (!call)
    return Problem{Reason::ReturnAddressNotAfterCall,
                   fmt::format("no call instruction ends at the saved ret_addr {:#x}", return_address)};
  if (!call->has(kCallFrameValid))
    return Problem{Reason::NoFrameAtCallSite,
                   fmt::format("the switch call before {:#x} was made without a frame", return_address)};
  return std::nullopt;
}

Check check_encoded_frame_pointer(const WalkContext& ctx, uint64_t fp) {
  if (!ctx.options.end_record || !(fp & 1)) return std::nullopt;
  const uint64_t regs = fp - 1;
  const uint64_t size = ctx.bounds.high - ctx.options.end_record->pt_regs;  // sizeof(struct pt_regs)
  if (regs < ctx.bounds.low || regs + size > ctx.bounds.high) return std::nullopt;
  return Problem{Reason::InterruptFrameMidStack,
                 fmt::format("rbp {:#x} encodes a pt_regs at {:#x}: an interrupt or exception frame sits inside the "
                             "stack",
                             fp, regs)};
}

namespace {

// The last frame's return address at a kernel stack's end (KernelEndRecord says which it must be).
Check check_end_return_address(const WalkContext& ctx, const KernelEndRecord& end, uint64_t end_frame, uint64_t ret) {
  const CodeImage* img = ctx.code.find(ret - 1);
  if (!img)
    return Problem{Reason::ReturnAddressNotText, fmt::format("the last return address {:#x} is not kernel text", ret)};
  auto cs = ctx.memory.read_u64(RemoteAddr(end.pt_regs + end.pt_regs_cs));
  if (!cs) return Problem{Reason::MemoryUnreadable, "the pt_regs at the stack's top is unreadable"};
  const bool user = (*cs & 3) == 3;
  if (end.idle && !user) {
    // head_64.S: the startup code zeroes rbp and enters the C code so that the address after that
    // instruction is the outermost return address: pushed before an `lretq` up to 6.8, by an indirect call
    // since 6.9. The record must hold exactly that.
    // The harness found that address once, with the validator's decoder (KernelEndRecord::idle_marker).
    auto saved_bp = ctx.memory.read_u64(RemoteAddr(end_frame));
    if (saved_bp && *saved_bp == 0 && end.idle_marker != 0 && ret == end.idle_marker) return std::nullopt;
    return Problem{Reason::StackEndNotReached,
                   fmt::format("an idle task's last return address must be head_64.S's marker (after its "
                               "entry into C with rbp 0), not {:#x}",
                               ret)};
  }
  auto call = ctx.code.call_site_at(*img, ret);
  if (!call)
    return Problem{Reason::ReturnAddressNotAfterCall,
                   fmt::format("no call instruction ends at the last return address {:#x}", ret)};
  auto state = ctx.code.state_at(*img, ret - 1);
  if (user) {
    // The entry code that saved the user pt_regs (entry_SYSCALL_64, an idtentry, ret_from_fork's user path)
    // is marked by the validator as holding a register frame at the call.
    if (state && state->has(kRegsFrame)) return std::nullopt;
    return Problem{Reason::StackEndNotReached,
                   fmt::format("the user pt_regs is at the top, but {:#x} is not entry code holding it", ret)};
  }
  // A kthread: the pt_regs at the top are not a user's, as copy_thread() left them; the last frame returns
  // into ret_from_fork, which called the thread function.
  auto f = ctx.code.function_at(ret - 1);
  const bool in_ret_from_fork =
      f && f->start == end.ret_from_fork && ret - end.ret_from_fork < std::max<uint64_t>(f->size, 1);
  if ((state && state->has(kEndOfStack)) || in_ret_from_fork) return std::nullopt;
  return Problem{Reason::StackEndNotReached,
                 fmt::format("a kthread's last frame must return to ret_from_fork, not {:#x}", ret)};
}

}  // namespace

void judge_end_record(const WalkContext& ctx, Trace& t, Judge& judge, ReturnHookCursor* hooks) {
  const KernelEndRecord& end = *ctx.options.end_record;
  const uint64_t end_frame = *ctx.options.end_frame;
  auto ret = ctx.memory.read_u64(RemoteAddr(end_frame + 8));
  if (!ret) {
    judge.fail(Reason::MemoryUnreadable, static_cast<int>(t.frames.size()) - 1, ret.error().describe());
    return;
  }
  const int index = static_cast<int>(t.frames.size());
  ReturnAddress ra = recover_return_address(ctx, hooks, *ret, end_frame + 8, index, judge);
  push_frame(t, ctx.code, ra.value, end_frame + 16, 0, FrameTrust::FramePointer);
  show_trampoline(t.frames.back(), ra);
  if (ra.unrecovered) return;
  if (auto p = check_end_return_address(ctx, end, end_frame, ra.value)) judge.fail(*p, index);
}

}  // namespace framecert

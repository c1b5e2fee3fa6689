// The reliability judge: the checks behind the five conditions of a reliable trace (docs/design.md, "The
// reliable-trace contract"), shared by the frame-pointer walk and the metadata-only walk. The walkers do the
// mechanics (which word to read next); every decision about trust is made here.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>

#include "unwinder/code_map.h"
#include "unwinder/memory.h"
#include "unwinder/regs.h"
#include "unwinder/stack_bounds.h"
#include "unwinder/trace.h"

namespace framecert {

class ReturnHooks;  // unwinder/return_hooks.h

// The end of a kernel task's stack (condition 5; the kernel's own unwinder checks the same in
// is_last_frame()): the frame record just below the pt_regs at the top holds the last return address,
//   - user pt_regs (cs & 3 == 3): entry code the metadata marks as holding a register frame, after a call;
//   - an idle task: the address head_64.S's secondary_startup_64 pushes for unwinders after its `lretq`
//     (`idle_marker`, found by the harness with the validator's decoder), with a saved rbp of 0 (no call
//     made it);
//   - otherwise a kthread: ret_from_fork (its end-of-stack hint, or the function itself), after a call.
// With it, an odd frame pointer that encodes a pt_regs inside the stack (ENCODE_FRAME_POINTER) is an
// interrupt or exception frame, not a damaged chain.
struct KernelEndRecord {
  uint64_t pt_regs = 0;        // where the pt_regs at the top of the stack start (end_frame + 16)
  uint64_t pt_regs_cs = 0;     // offset of cs in them
  uint64_t ret_from_fork = 0;  // ret_from_fork's address
  bool idle = false;           // the task is a CPU's idle task
  uint64_t idle_marker = 0;    // the address after secondary_startup_64's lretq; 0: unknown, no idle end
};

struct WalkOptions {
  size_t max_depth = 4096;  // frames; a 16 KiB kernel stack holds < 1024 frame records
  // Condition 2, tightened: the direct call before a return address must call the function of the frame
  // below. Catches a corrupted return address that still lands after some call; costs a false
  // "unreliable" on sibling (tail) calls through a frame, which are rare under frame pointers.
  bool check_call_targets = true;
  // Condition 1, tightened: the words between two frames must not hold a frame record that links to the
  // next frame (which is what a corrupted saved rbp that skips callers leaves behind).
  bool scan_for_skipped_frames = true;
  // Condition 1, exact: the caller's frame must sit exactly where its code puts rsp at the call
  // (check_frame_size). Off only to test the other checks in isolation.
  bool check_frame_sizes = true;
  // Kernel tasks: the frame-record address that marks the recognised end (just below the user pt_regs).
  std::optional<uint64_t> end_frame;
  // With end_frame: what the record there must hold (KernelEndRecord); the walk then also shows the last
  // frame, the return address in that record, and the judge decides whether it is a real end.
  std::optional<KernelEndRecord> end_record;
  // Frame 0 is a return address, not a pc (a sleeping kernel task: the ret_addr __switch_to_asm left at
  // thread.sp): the call before it must be proven, with a frame, like every other return address.
  bool innermost_is_return_address = false;
  // Condition 5, user space: the x86-64 ABI's outermost-frame marker (rbp explicitly zeroed by the code that
  // called out, saved rbp 0) ends a stack. A kernel stack has no such end — it ends only at `end_frame` or an
  // end-of-stack hint — so kernel walks turn this off, and a zeroed rbp there is just a lost frame pointer.
  bool zeroed_rbp_ends_stack = true;
  // Tracers' return hooks (unwinder/return_hooks.h): the task's own record of return addresses replaced by
  // a trampoline. Null: a trampoline is judged like any other return address (and fails). Not owned.
  const ReturnHooks* return_hooks = nullptr;
};

// Everything a walk reads from. The stack must stay frozen while it runs.
struct WalkContext {
  Memory& memory;
  const CodeMap& code;
  StackBounds bounds;
  WalkOptions options;
};

struct Problem {
  Reason reason;
  std::string detail;
};
using Check = std::optional<Problem>;

// Test-only: FRAMECERT_TEST_DISABLE_RULE=<reason>[,<reason>...] (reason names as in docs/verdicts.md)
// switches those judge rules off, so that tests can show that the independent truths catch the false
// reliables the rule exists to prevent. Read once per process; never set it in production.
bool rule_disabled(Reason r);

// Condition 5 in a kernel stack (`end_frame` set): an end-of-stack hint (ret_from_fork, the entry code)
// ends the walk only where the stack really ends — the frame record just below the pt_regs at the top, or,
// for the innermost frame, rsp at or above those pt_regs. Anywhere else the hint marks code whose frame
// is unknown (ftrace's return_to_handler carries one), and callers below it would be cut off.
// User space (no end_frame): a hint ends the stack where it is met.
bool hint_ends_stack(const WalkOptions& options, uint64_t sp);

// Keeps the first problem found; walks may go on best-effort afterwards to show more frames.
class Judge {
 public:
  void fail(Reason r, int frame, std::string detail);
  void fail(const Problem& p, int frame) { fail(p.reason, frame, p.detail); }
  bool failed() const { return first_.has_value(); }
  // The verdict once the walk stops at `last_frame`: reliable only if nothing failed and the walk ended
  // at the task's recognised stack end.
  Verdict finish(bool end_reached, int last_frame) const;

 private:
  std::optional<Verdict> first_;
};

// Condition 1: `len` bytes at `addr` lie inside the stack, 8-byte aligned, at or above `floor` (the lowest
// address the next frame may use: the previous frame's end). `previous` is the previous frame's address,
// to tell a loop from a plain wrong direction.
Check check_frame_placement(const StackBounds& bounds, uint64_t addr, uint64_t len, uint64_t floor, uint64_t previous);

// The innermost step (condition 3's exception): the CFA rule at the exact pc decides where the return
// address and the caller's rbp are.
struct InnermostStep {
  bool end = false;           // the pc is in the outermost function itself (rbp known zero / end hint)
  bool from_metadata = true;  // false: fell back to assuming a frame at rbp (already judged unreliable)
  uint64_t cfa = 0;
  uint64_t return_address = 0;
  uint64_t caller_fp = 0;
};
// Returns nullopt when no step is possible at all (the judge holds why).
std::optional<InnermostStep> step_from_registers(const WalkContext& ctx, const Regs& regs, Judge& judge);
// Frame 0 when it is a return address (WalkOptions::innermost_is_return_address): in code, after a call the
// validator knows, made with a frame.
Check check_innermost_return_address(const WalkContext& ctx, uint64_t return_address);
// At the end frame of a kernel stack (WalkOptions::end_record): appends the last frame to `t` and judges it.
// Its return address too may be hooked (a kthread function traced since it started): `hooks` is the walk's
// cursor (return_hooks.h), null when none.
class ReturnHookCursor;
void judge_end_record(const WalkContext& ctx, Trace& t, Judge& judge, ReturnHookCursor* hooks = nullptr);
// ENCODE_FRAME_POINTER: an odd frame pointer that is a pt_regs inside the stack, plus one (kernel walks).
Check check_encoded_frame_pointer(const WalkContext& ctx, uint64_t fp);

// Conditions 2–4 at a return address (frame `index`, whose callee ran at `callee_pc`).
struct ReturnSite {
  const CodeImage* image = nullptr;  // null: not text
  std::optional<CallSite> call;      // the call instruction that ends at the return address
  std::optional<FrameState> state;   // the caller's state at that call instruction
};
ReturnSite judge_return_site(const WalkContext& ctx, uint64_t return_address, uint64_t callee_pc, bool callee_is_return,
                             int index, Judge& judge);

// Where the claimed caller frame keeps its own frame address and its own return address (the validator's
// self slots of the function `return_address` returns into: a CFA-based slot placed from its frame record at
// `record`, an rsp-based one from `callee_cfa`, its rsp at the call), each only where the word there holds
// exactly that value. Such a word is the function's own copy, not
// a trace of a frame record the chain jumped over: the scans below pass over it.
struct OwnCopies {
  std::vector<uint64_t> frame_address;   // words equal to `record`
  std::vector<uint64_t> return_address;  // words equal to the frame's return address, [record + 8]
};
OwnCopies own_copies(const WalkContext& ctx, uint64_t return_address, const ReturnSite& site, uint64_t record,
                     uint64_t callee_cfa);

// The skipped-caller scan: does a frame record in [low, record) link to `record`? Words at `own` are not
// looked at.
Check check_no_skipped_frame(const WalkContext& ctx, uint64_t low, uint64_t record, std::span<const uint64_t> own = {});
// The caller's own return address left behind: a word in [low, record) — the frame below the claimed
// caller frame — that is the return address of a proven direct call to the function `pc` (the claimed
// caller frame's return address) runs in. Where the claimed caller's true frame record lies inside that
// range (the saved rbp that led here was redirected past it, and the record's link erased so the
// skipped-frame scan sees nothing), the record's return address is still there.
Check check_no_own_return_address(const WalkContext& ctx, uint64_t low, uint64_t record, uint64_t pc,
                                  std::span<const uint64_t> own = {});
// The exact frame size: at the call before `return_address` (a frame-pointer function, CFA = rbp + 16
// there), the call site's metadata puts rsp exactly (sp_off - bp_off) below rbp; the callee's CFA `sp` is
// that rsp, so `fp`, the caller's rbp read from the callee's frame record, must be sp + sp_off - bp_off, with
// both depths from the call site's metadata (validator/call_depth.h). No check where the validator does
// not know them exactly. Catches a saved rbp redirected past a frame
// even when every word of the skipped record was erased, and a return address swapped for another call
// to the same function from a frame of another size. `verified` is set when the size was checked and holds:
// then the frame below is exactly the caller's own locals, no frame record can hide in it, and the
// skipped-frame scans over it can only mistake stale data for evidence, so the walker skips them.
Check check_frame_size(const WalkContext& ctx, uint64_t return_address, const ReturnSite& site, uint64_t sp,
                       uint64_t fp, bool* verified = nullptr);
// At a user-space outermost frame (saved rbp 0 after a call that zeroed it): no other outermost frame
// record (saved rbp 0, return address after such a call) may lie in the next `kEndScanWindow` bytes above,
// or the chain was cut short by a forged end and the frames between were skipped.
inline constexpr uint64_t kEndScanWindow = 4096;
Check check_no_outermost_record_above(const WalkContext& ctx, uint64_t low);

}  // namespace framecert

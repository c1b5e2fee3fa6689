// The frame-pointer walker and the reliability judge on synthetic stacks: every reason of the fixed set
// is provoked at least once, and every case that a bare frame-pointer walk gets wrong must be unreliable.
#include <gtest/gtest.h>

#include <fstream>
#include <iterator>

#include "tests/unwinder/fake_world.h"
#include "unwinder/unwind.h"

namespace framecert::testing {
namespace {

std::vector<uint64_t> pcs(const Trace& t) {
  std::vector<uint64_t> out;
  for (const Frame& f : t.frames) out.push_back(f.pc);
  return out;
}

std::vector<std::string> symbols(const Trace& t) {
  std::vector<std::string> out;
  for (const Frame& f : t.frames) out.push_back(f.symbol);
  return out;
}

// _start -> main -> a -> b, the usual shape; each test perturbs it.
struct Chain {
  FakeWorld w;
  Machine m{w};
  uint64_t start, main_fn, a, b;
  uint64_t ret_start, ret_main, ret_a;

  Chain() {
    start = w.add("_start", Kind::Entry);
    main_fn = w.add("main", Kind::Framed);
    a = w.add("a", Kind::Framed);
    b = w.add("b", Kind::Framed);
    ret_start = w.call(start, 0x10, main_fn);
    ret_main = w.call(main_fn, 0x20, a);
    ret_a = w.call(a, 0x30, b);
    m.call(ret_start);
    m.prologue();
    m.locals(3);
    m.call(ret_main);
    m.prologue();
    m.locals(2);
    m.call(ret_a);
  }
  // Enters b fully (prologue + locals) and returns its registers stopped at b+0x40.
  Regs in_b() {
    m.prologue();
    m.locals(4);
    return m.regs(b + 0x40);
  }
  Unwind run(const Regs& r, WalkOptions o = {}) {
    CodeMap code = w.code_map();
    WalkContext ctx{w.mem, code, w.bounds(), o};
    return unwind(ctx, r);
  }
  Trace fp(const Regs& r, WalkOptions o = {}) { return run(r, o).trace; }
};

#define EXPECT_UNRELIABLE(trace, why, at)                                                       \
  do {                                                                                          \
    EXPECT_FALSE((trace).verdict.reliable) << (trace).verdict.detail;                           \
    EXPECT_EQ(reason_name((trace).verdict.reason), reason_name(why)) << (trace).verdict.detail; \
    EXPECT_EQ((trace).verdict.frame, at) << (trace).verdict.detail;                             \
  } while (0)

TEST(Walker, GoodChainIsReliable) {
  Chain c;
  Unwind u = c.run(c.in_b());
  EXPECT_TRUE(u.trace.verdict.reliable) << u.trace.verdict.detail;
  EXPECT_EQ(pcs(u.trace), (std::vector<uint64_t>{c.b + 0x40, c.ret_a, c.ret_main, c.ret_start}));
  EXPECT_EQ(symbols(u.trace), (std::vector<std::string>{"b", "a", "main", "_start"}));
  EXPECT_EQ(u.trace.frames[0].trust, FrameTrust::Context);
  EXPECT_EQ(u.trace.frames[1].trust, FrameTrust::CfaRule);
  EXPECT_EQ(u.trace.frames[2].trust, FrameTrust::FramePointer);
  EXPECT_TRUE(u.cross_check.agree) << u.cross_check.detail;
  EXPECT_TRUE(u.cfa_trace.verdict.reliable);
  EXPECT_EQ(u.trace.frames[1].offset, 0x35u);
}

TEST(Walker, StoppedInPrologueUsesTheCfaRule) {
  for (int stage = 0; stage < 2; ++stage) {
    Chain c;
    Regs r = c.m.regs(c.b);  // at b's first instruction: only the return address is pushed
    if (stage == 1) {
      c.m.push(c.m.rbp);  // after push %rbp, before mov %rsp,%rbp
      r = c.m.regs(c.b + 1);
    }
    Unwind u = c.run(r);
    EXPECT_TRUE(u.trace.verdict.reliable) << stage << ": " << u.trace.verdict.detail;
    EXPECT_EQ(pcs(u.trace), (std::vector<uint64_t>{r.rip, c.ret_a, c.ret_main, c.ret_start})) << stage;
  }
}

TEST(Walker, StoppedInFramelessLeafKeepsItsCaller) {
  Chain c;
  uint64_t leaf = c.w.add("leaf", Kind::Frameless);
  uint64_t ret_b = c.w.call(c.b, 0x50, leaf);
  c.m.prologue();
  c.m.locals(2);
  c.m.call(ret_b);
  Regs r = c.m.regs(leaf + 0x8);  // spinning in the leaf; rbp still b's frame
  Unwind u = c.run(r);
  EXPECT_TRUE(u.trace.verdict.reliable) << u.trace.verdict.detail;
  // A bare frame-pointer walk would go leaf -> a (via b's frame), losing b.
  EXPECT_EQ(symbols(u.trace), (std::vector<std::string>{"leaf", "b", "a", "main", "_start"}));
}

TEST(Walker, SkippedCallerIsUnreliable) {
  // b -> nf (no frame) -> c: c's saved rbp is still b's frame, so a bare FP walk goes c, nf, a: b is lost.
  Chain c;
  uint64_t nf = c.w.add("nf", Kind::Frameless);
  uint64_t cc = c.w.add("c", Kind::Framed);
  uint64_t ret_b = c.w.call(c.b, 0x50, nf);
  uint64_t ret_nf = c.w.call(nf, 0x10, cc);
  c.m.prologue();
  c.m.locals(2);
  c.m.call(ret_b);
  c.m.call(ret_nf);
  c.m.prologue();
  Unwind u = c.run(c.m.regs(cc + 0x20));
  EXPECT_UNRELIABLE(u.trace, Reason::NoFrameAtCallSite, 1);
  EXPECT_EQ(u.trace.frames[1].symbol, "nf");
  // The metadata-only walk steps through nf and finds b — the second opinion differs, as it should.
  EXPECT_TRUE(u.cfa_trace.verdict.reliable) << u.cfa_trace.verdict.detail;
  EXPECT_EQ(symbols(u.cfa_trace), (std::vector<std::string>{"c", "nf", "b", "a", "main", "_start"}));
  EXPECT_NE(symbols(u.trace), symbols(u.cfa_trace));
}

TEST(Walker, StoppedInEntryIsReliable) {
  FakeWorld w;
  uint64_t s = w.add("_start", Kind::Entry);
  Machine m(w);
  CodeMap code = w.code_map();
  Trace t = walk_frame_pointers(WalkContext{w.mem, code, w.bounds(), {}}, m.regs(s + 4));
  EXPECT_TRUE(t.verdict.reliable) << t.verdict.detail;
  EXPECT_EQ(t.frames.size(), 1u);
  // ... but not before rbp is zeroed: nothing is proven at its first instruction.
  Trace t0 = walk_frame_pointers(WalkContext{w.mem, code, w.bounds(), {}}, m.regs(s));
  EXPECT_UNRELIABLE(t0, Reason::NoFrameState, 0);
  Regs bad = m.regs(s + 4);
  bad.rbp = 0x1234;
  Trace t1 = walk_frame_pointers(WalkContext{w.mem, code, w.bounds(), {}}, bad);
  EXPECT_UNRELIABLE(t1, Reason::BpClobbered, 0);
}

TEST(Walker, CycleIsDetected) {
  Chain c;
  Regs r = c.in_b();
  uint64_t a_frame = 0;
  c.w.mem.read(RemoteAddr(r.rbp), &a_frame, 8);  // b's saved rbp = a's frame
  c.w.mem.write_u64(a_frame, a_frame);           // a's saved rbp points to itself
  Trace t = c.fp(r);
  EXPECT_UNRELIABLE(t, Reason::LoopDetected, 2);
}

TEST(Walker, FrameMovingDownIsRejected) {
  Chain c;
  Regs r = c.in_b();
  uint64_t a_frame = 0;
  c.w.mem.read(RemoteAddr(r.rbp), &a_frame, 8);
  c.w.mem.write_u64(a_frame, r.rbp);  // a's saved rbp points back down to b's frame
  Trace t = c.fp(r);
  EXPECT_UNRELIABLE(t, Reason::FrameNotAscending, 2);
}

TEST(Walker, OutOfBoundsAndMisalignedFramesAreRejected) {
  {
    Chain c;
    Regs r = c.in_b();
    c.w.mem.write_u64(r.rbp, FakeWorld::kStackTop + 0x100);
    Trace t = c.fp(r);
    EXPECT_UNRELIABLE(t, Reason::FrameOutOfBounds, 1);
  }
  {
    Chain c;
    Regs r = c.in_b();
    uint64_t a_frame = 0;
    c.w.mem.read(RemoteAddr(r.rbp), &a_frame, 8);
    c.w.mem.write_u64(r.rbp, a_frame + 4);
    Trace t = c.fp(r);
    EXPECT_UNRELIABLE(t, Reason::FrameMisaligned, 1);
  }
  {
    Chain c;
    Regs r = c.in_b();
    r.rsp = FakeWorld::kStackTop - FakeWorld::kStackSize - 0x100;  // rsp itself off the stack
    Trace t = c.fp(r);
    EXPECT_UNRELIABLE(t, Reason::FrameOutOfBounds, 0);
  }
}

TEST(Walker, ReturnAddressOutsideTextOrNotAfterCall) {
  {
    Chain c;
    Regs r = c.in_b();
    c.w.mem.write_u64(r.rbp + 8, 0x7ffff7dd0000);  // b's return address: not code
    Trace t = c.fp(r);
    EXPECT_UNRELIABLE(t, Reason::ReturnAddressNotText, 1);
  }
  {
    Chain c;
    Regs r = c.in_b();
    c.w.mem.write_u64(r.rbp + 8, c.ret_a + 3);  // inside a, but no call ends there
    Trace t = c.fp(r);
    EXPECT_UNRELIABLE(t, Reason::ReturnAddressNotAfterCall, 1);
  }
}

TEST(Walker, CorruptedReturnAddressToAnotherCallSiteIsCaught) {
  Chain c;
  uint64_t other = c.w.add("other", Kind::Framed);
  uint64_t ret_a_other = c.w.call(c.a, 0x60, other);  // a also calls `other` elsewhere
  Regs r = c.in_b();
  c.w.mem.write_u64(r.rbp + 8, ret_a_other);
  Trace t = c.fp(r);
  EXPECT_UNRELIABLE(t, Reason::CallTargetMismatch, 1);
}

TEST(Walker, CallTargetsComeFromTheMetadataAlone) {
  Chain c;
  Regs r = c.in_b();
  std::vector<uint8_t> garbage(FakeWorld::kTextSize, 0xcc);  // no instruction is read
  c.w.mem.write(FakeWorld::kText, garbage.data(), garbage.size());
  EXPECT_TRUE(c.fp(r).verdict.reliable) << c.fp(r).verdict.detail;
  // A wrong recorded target (a calls main, says the metadata) fires on the true chain.
  c.w.set_call_target(c.ret_a, CallTarget{CallTargetKind::Address, 0, c.main_fn});
  EXPECT_UNRELIABLE(c.fp(r), Reason::CallTargetMismatch, 1);
  // An unknown target (patched at run time, unresolved) skips the check.
  c.w.set_call_target(c.ret_a, CallTarget{});
  EXPECT_TRUE(c.fp(r).verdict.reliable);
  // So does a target in an unplaced section.
  c.w.set_call_target(c.ret_a, CallTarget{CallTargetKind::Section, 7, 0});
  EXPECT_TRUE(c.fp(r).verdict.reliable);
}

TEST(Walker, SyscallSiteStepsATaskInASystemCall) {
  // A frameless wrapper called by b: its `syscall` is recorded in the metadata's syscall table, and the
  // state at it (cfa=rsp+8, rbp the caller's) holds for a task whose rip is right after it.
  Chain c;
  uint64_t wrapper = c.w.add("raw_syscall", Kind::Frameless);
  uint64_t ret_b = c.w.call(c.b, 0x50, wrapper);
  uint64_t after = c.w.syscall(wrapper, 0x20);
  Regs r = c.in_b();
  c.m.call(ret_b);
  Regs in_sys{after, c.m.rsp, c.m.rbp, 39};
  std::vector<uint8_t> garbage(FakeWorld::kTextSize, 0xcc);  // no instruction is read
  c.w.mem.write(FakeWorld::kText, garbage.data(), garbage.size());
  Trace t = c.fp(in_sys);
  EXPECT_TRUE(t.verdict.reliable) << t.verdict.detail;
  EXPECT_EQ(symbols(t), (std::vector<std::string>{"raw_syscall", "b", "a", "main", "_start"}));
  // Not in a system call: nothing is proven at that pc.
  EXPECT_FALSE(c.fp(Regs{after, c.m.rsp, c.m.rbp, -1}).verdict.reliable);
  // A syscall site is no call site: as a return address it proves nothing.
  c.w.mem.write_u64(r.rbp + 8, after);
  EXPECT_UNRELIABLE(c.fp(r), Reason::ReturnAddressNotAfterCall, 1);
}

// Stopped in b, with b's saved rbp redirected past a's frame to main's: a bare walk loses a. Returns a's
// frame address.
uint64_t redirect_b_past_a(Chain& c, const Regs& r) {
  uint64_t a_frame = 0, main_frame = 0;
  c.w.mem.read(RemoteAddr(r.rbp), &a_frame, 8);
  c.w.mem.read(RemoteAddr(a_frame), &main_frame, 8);
  c.w.mem.write_u64(r.rbp, main_frame);
  return a_frame;
}

TEST(Walker, CorruptedSavedRbpThatSkipsFramesIsCaught) {
  // b's saved rbp replaced by a's saved rbp (main's frame): every check on the chain itself passes, and a
  // bare walk prints b, a, _start — main is silently gone. The record of a still links to main's frame.
  Chain c;
  Regs r = c.in_b();
  redirect_b_past_a(c, r);
  Trace t = c.fp(r);
  EXPECT_FALSE(t.verdict.reliable);
  EXPECT_TRUE(t.verdict.reason == Reason::FrameSkipped || t.verdict.reason == Reason::CallTargetMismatch)
      << reason_name(t.verdict.reason);
  WalkOptions no_target;
  no_target.check_call_targets = false;
  Trace t2 = c.fp(r, no_target);
  EXPECT_UNRELIABLE(t2, Reason::FrameSkipped, 1);
}

TEST(Walker, SkippedFrameWithErasedLinkIsCaught) {
  // The coordinated forgery: b's saved rbp redirected to main's frame AND a's record's link erased, so no
  // word links to main's frame any more. a's own return address (after main's call to a) is still inside
  // the frame below the claimed main frame.
  Chain c;
  Regs r = c.in_b();
  const uint64_t a_frame = redirect_b_past_a(c, r);
  c.w.mem.write_u64(a_frame, 0);
  WalkOptions no_target;
  no_target.check_call_targets = false;
  Trace t = c.fp(r, no_target);
  EXPECT_UNRELIABLE(t, Reason::FrameSkipped, 1);
  EXPECT_NE(t.verdict.detail.find("call to a"), std::string::npos) << t.verdict.detail;
}

// Real prologue bytes for a Chain function at `fn`: push %rbp; mov %rsp,%rbp; sub $locals*8,%rsp (the
// offsets FakeWorld's Framed rows describe), nops up to the calls.
void write_prologue(FakeWorld& w, uint64_t fn, int locals) {
  uint8_t code[8] = {0x55, 0x48, 0x89, 0xe5, 0x48, 0x83, 0xec, static_cast<uint8_t>(locals * 8)};
  w.mem.write(fn, code, sizeof code);
  w.set_locals(fn, locals);  // what the validator records at the calls: the walker reads only this
}

TEST(Walker, ExactFrameSizesKeepGoodChainsAndCatchErasedSkips) {
  Chain c;
  write_prologue(c.w, c.main_fn, 3);
  write_prologue(c.w, c.a, 2);
  Regs r = c.in_b();
  Unwind good = c.run(r);
  EXPECT_TRUE(good.trace.verdict.reliable) << good.trace.verdict.detail;
  // b's saved rbp redirected to main's frame, and a's whole record erased: nothing in the stack points at
  // the skip any more, and check_call_targets is off — only a's frame size gives it away.
  const uint64_t a_frame = redirect_b_past_a(c, r);
  c.w.mem.write_u64(a_frame, 0);
  c.w.mem.write_u64(a_frame + 8, 0);
  WalkOptions no_target;
  no_target.check_call_targets = false;
  Trace t = c.fp(r, no_target);
  EXPECT_UNRELIABLE(t, Reason::FrameSizeMismatch, 1);
  no_target.check_frame_sizes = false;
  EXPECT_TRUE(c.fp(r, no_target).verdict.reliable);  // what a bare frame-pointer walk would believe
}

TEST(Walker, ExactFrameSizeSparesLocalsThatLookLikeLinks) {
  // a keeps __builtin_frame_address(0) in a local: a word in the frame below a's record that links to it,
  // which the skipped-frame scan would take for a jumped-over record. With a's frame size proven exact
  // there is no room for a hidden record, so the scan is not run and the true chain stays reliable.
  Chain c;
  write_prologue(c.w, c.main_fn, 3);
  write_prologue(c.w, c.a, 2);
  Regs r = c.in_b();
  uint64_t a_frame = 0;
  c.w.mem.read(RemoteAddr(r.rbp), &a_frame, 8);
  c.w.mem.write_u64(a_frame - 8, a_frame);
  Unwind u = c.run(r);
  EXPECT_TRUE(u.trace.verdict.reliable) << u.trace.verdict.detail;
  WalkOptions no_size;
  no_size.check_frame_sizes = false;
  EXPECT_UNRELIABLE(c.fp(r, no_size), Reason::FrameSkipped, 1);
}

// a's frame record: b's saved rbp, with the walk stopped in b.
uint64_t a_frame_of(Chain& c, const Regs& r) {
  uint64_t a_frame = 0;
  c.w.mem.read(RemoteAddr(r.rbp), &a_frame, 8);
  return a_frame;
}

// a's frame size is not known (a VLA, alloca: no depths), so the skipped-frame scans run over its frame.
// a keeps its own frame address in a local at CFA-24 (__builtin_frame_address(0)); the validator proved
// that store (a self slot), so the word is a's own copy, not the link of a jumped-over record.
TEST(Walker, AProvenOwnFrameAddressIsNotASkippedRecord) {
  Chain c;
  Regs r = c.in_b();
  const uint64_t a_frame = a_frame_of(c, r);
  c.w.mem.write_u64(a_frame - 8, a_frame);              // CFA - 24
  EXPECT_UNRELIABLE(c.fp(r), Reason::FrameSkipped, 1);  // no slot recorded: the scan cannot tell
  c.w.self_slot(c.a, -24, metadata::SlotKind::FrameAddress);
  Unwind u = c.run(r);
  EXPECT_TRUE(u.trace.verdict.reliable) << u.trace.verdict.detail;
  EXPECT_EQ(symbols(u.trace), (std::vector<std::string>{"b", "a", "main", "_start"}));
  // The slot is a's: a slot at another offset spares nothing.
  Chain d;
  Regs r2 = d.in_b();
  d.w.mem.write_u64(a_frame_of(d, r2) - 8, a_frame_of(d, r2));
  d.w.self_slot(d.a, -32, metadata::SlotKind::FrameAddress);
  EXPECT_UNRELIABLE(d.fp(r2), Reason::FrameSkipped, 1);
}

// The same with _RET_IP_: a keeps its return address (after main's call to a) at CFA-24, which the scan for
// a's own return address takes for the record of a skipped call to a, unless the slot is proven.
TEST(Walker, AProvenOwnReturnAddressIsNotASkippedCall) {
  Chain c;
  Regs r = c.in_b();
  const uint64_t a_frame = a_frame_of(c, r);
  c.w.mem.write_u64(a_frame - 8, c.ret_main);
  EXPECT_UNRELIABLE(c.fp(r), Reason::FrameSkipped, 1);
  c.w.self_slot(c.a, -24, metadata::SlotKind::ReturnAddress);
  EXPECT_TRUE(c.fp(r).verdict.reliable) << c.fp(r).verdict.detail;
  // A slot spares only the value the function stored there: another call's return address to a (a
  // recursion's skipped frame) in that slot is still a trace.
  const uint64_t other_call_to_a = c.w.call(c.main_fn, 0x60, c.a);
  c.w.mem.write_u64(a_frame - 8, other_call_to_a);
  EXPECT_UNRELIABLE(c.fp(r), Reason::FrameSkipped, 1);
}

// The same slot located through rsp (a realigned or alloca frame, where the validator knows it only as
// rsp + 8 at a's calls): placed from b's CFA, a's rsp at the call.
TEST(Walker, AProvenOwnCopyLocatedThroughRspIsNotATrace) {
  Chain c;
  Regs r = c.in_b();
  const uint64_t a_frame = a_frame_of(c, r);
  c.w.mem.write_u64(a_frame - 8, a_frame);  // b's CFA is a_frame - 16 (a's two locals): the slot is CFA + 8
  EXPECT_UNRELIABLE(c.fp(r), Reason::FrameSkipped, 1);
  c.w.self_slot(c.a, 8, metadata::SlotKind::FrameAddress, metadata::SlotBase::CallSp);
  EXPECT_TRUE(c.fp(r).verdict.reliable) << c.fp(r).verdict.detail;
  c.w.mem.write_u64(a_frame - 8, c.ret_main);  // now _RET_IP_ there, but the slot says frame address
  EXPECT_UNRELIABLE(c.fp(r), Reason::FrameSkipped, 1);
  c.w.self_slot(c.a, 8, metadata::SlotKind::ReturnAddress, metadata::SlotBase::CallSp);
  EXPECT_TRUE(c.fp(r).verdict.reliable) << c.fp(r).verdict.detail;
}

// A proven slot never hides a real skip: b's saved rbp redirected past a to main's frame, with a's slot
// recorded. The slot is placed from the claimed frame (main's), where no copy lies; a's record still links
// to main's frame and is found.
TEST(Walker, AProvenSlotDoesNotHideASkippedRecord) {
  Chain c;
  Regs r = c.in_b();
  const uint64_t a_frame = a_frame_of(c, r);
  c.w.mem.write_u64(a_frame - 8, a_frame);
  c.w.self_slot(c.a, -24, metadata::SlotKind::FrameAddress);
  c.w.self_slot(c.a, -16, metadata::SlotKind::ReturnAddress);
  c.w.self_slot(c.a, 0, metadata::SlotKind::FrameAddress, metadata::SlotBase::CallSp);
  c.w.self_slot(c.a, 8, metadata::SlotKind::ReturnAddress, metadata::SlotBase::CallSp);
  redirect_b_past_a(c, r);
  WalkOptions no_target;
  no_target.check_call_targets = false;
  EXPECT_UNRELIABLE(c.fp(r, no_target), Reason::FrameSkipped, 1);
}

TEST(Walker, AWrongFrameSizeInTheMetadataIsAMismatch) {
  // The true chain, but the metadata claims a keeps one more local word than it does: the frame-size check
  // must believe the metadata and fire (it reads the size nowhere else).
  Chain c;
  write_prologue(c.w, c.main_fn, 3);
  write_prologue(c.w, c.a, 3);  // a really has 2 (Chain's Machine pushed 2)
  Regs r = c.in_b();
  EXPECT_UNRELIABLE(c.fp(r), Reason::FrameSizeMismatch, 1);
}

TEST(Walker, FrameSizesComeFromTheMetadataAlone) {
  // With no depths recorded there is no frame-size check, whatever the code bytes say.
  Chain c;
  Regs r = c.in_b();
  const uint64_t a_frame = redirect_b_past_a(c, r);
  c.w.mem.write_u64(a_frame, 0);
  c.w.mem.write_u64(a_frame + 8, 0);
  WalkOptions no_target;
  no_target.check_call_targets = false;
  EXPECT_TRUE(c.fp(r, no_target).verdict.reliable) << "no depths recorded: nothing can see this skip";
  write_prologue(c.w, c.main_fn, 3);
  write_prologue(c.w, c.a, 2);
  std::vector<uint8_t> garbage(FakeWorld::kTextSize, 0xcc);  // no instruction is read
  c.w.mem.write(FakeWorld::kText, garbage.data(), garbage.size());
  EXPECT_UNRELIABLE(c.fp(r, no_target), Reason::FrameSizeMismatch, 1);
}

TEST(Walker, CrossCheckComparesFrameAddresses) {
  Trace fp, cfa;
  fp.frames = {Frame{0x401000, 0x1000, 0x1010}, Frame{0x402000, 0x1020, 0x1030}};
  cfa.frames = fp.frames;
  fp.verdict.reliable = cfa.verdict.reliable = true;
  EXPECT_TRUE(cross_check(fp, cfa).agree);
  cfa.frames[1].sp = 0x1028;
  CrossCheck x = cross_check(fp, cfa);
  EXPECT_FALSE(x.agree);
  EXPECT_EQ(x.first_difference, 1);
  cfa.frames[1].sp = 0x1020;
  cfa.frames[1].fp = 0x1040;
  EXPECT_FALSE(cross_check(fp, cfa).agree);
  cfa.frames[1].fp = 0;  // unknown to the metadata-only walk: not compared
  EXPECT_TRUE(cross_check(fp, cfa).agree);
}

TEST(Walker, UnreadableMemory) {
  Chain c;
  Regs r = c.in_b();
  // The stack bounds claim more than is mapped: map a fresh, small stack and point rbp into a hole.
  FakeWorld& w = c.w;
  uint64_t a_frame = 0;
  w.mem.read(RemoteAddr(r.rbp), &a_frame, 8);
  CodeMap code = w.code_map();
  StackBounds wide{w.bounds().low, w.bounds().high + 0x10000};
  w.mem.write_u64(r.rbp, FakeWorld::kStackTop + 0x800);  // in bounds, not mapped
  // The redirected rbp also skips a's frame, whose return address the own-return-address scan finds first.
  Trace skipped = walk_frame_pointers(WalkContext{w.mem, code, wide, {}}, r);
  EXPECT_UNRELIABLE(skipped, Reason::FrameSkipped, 1);
  WalkOptions no_scan;
  no_scan.scan_for_skipped_frames = false;
  Trace t = walk_frame_pointers(WalkContext{w.mem, code, wide, no_scan}, r);
  EXPECT_UNRELIABLE(t, Reason::MemoryUnreadable, 1);
}

TEST(Walker, MaximumDepth) {
  FakeWorld w;
  Machine m(w);
  uint64_t s = w.add("_start", Kind::Entry);
  uint64_t rec = w.add("rec", Kind::Framed);
  uint64_t ret_s = w.call(s, 0x10, rec);
  uint64_t ret_rec = w.call(rec, 0x20, rec);
  m.call(ret_s);
  m.prologue();
  const int depth = 1000;
  for (int i = 1; i < depth; ++i) {
    m.locals(1);
    m.call(ret_rec);
    m.prologue();
  }
  CodeMap code = w.code_map();
  Regs r = m.regs(rec + 0x40);
  Unwind u = unwind(WalkContext{w.mem, code, w.bounds(), {}}, r);
  EXPECT_TRUE(u.trace.verdict.reliable) << u.trace.verdict.detail;
  EXPECT_EQ(u.trace.frames.size(), static_cast<size_t>(depth + 1));
  EXPECT_TRUE(u.cross_check.agree);
  WalkOptions shallow;
  shallow.max_depth = 100;
  Trace t = walk_frame_pointers(WalkContext{w.mem, code, w.bounds(), shallow}, r);
  EXPECT_UNRELIABLE(t, Reason::TooDeep, 100);
}

TEST(Walker, ZeroRbpWithoutProvenEndIsUnreliable) {
  FakeWorld w;
  Machine m(w);
  uint64_t s = w.add("entry_no_marker", Kind::Framed);  // a framed function that is not the real entry
  uint64_t f = w.add("f", Kind::Framed);
  uint64_t ret = w.call(s, 0x10, f, uint8_t{0});  // no kCallFrameValid, no kCallBpZero
  m.call(ret);
  m.prologue();  // saved rbp = 0
  CodeMap code = w.code_map();
  Trace t = walk_frame_pointers(WalkContext{w.mem, code, w.bounds(), {}}, m.regs(f + 0x40));
  EXPECT_FALSE(t.verdict.reliable);
  // The call site had no frame, reported first; with a frame-valid call site it is the end that is missing.
  FakeWorld w2;
  Machine m2(w2);
  uint64_t s2 = w2.add("not_start", Kind::Framed);
  uint64_t f2 = w2.add("f", Kind::Framed);
  uint64_t ret2 = w2.call(s2, 0x10, f2);
  m2.call(ret2);
  m2.prologue();
  CodeMap code2 = w2.code_map();
  Trace t2 = walk_frame_pointers(WalkContext{w2.mem, code2, w2.bounds(), {}}, m2.regs(f2 + 0x40));
  EXPECT_UNRELIABLE(t2, Reason::StackEndNotReached, 1);
}

// Found by the guest's regression module (fcregress: rbp_clobbered/zero): a frame function that zeroes rbp
// before a call looks like an entry point's ABI end marker. It is not one: its CFA lives in rbp, so its own
// callers are cut off.
TEST(Walker, ZeroedRbpInsideAFrameFunctionIsNotTheStackEnd) {
  FakeWorld w;
  Machine m(w);
  uint64_t s = w.add("_start", Kind::Entry);
  uint64_t g = w.add("g", Kind::Framed);  // the skipped, true caller
  uint64_t f = w.add("f", Kind::Framed);  // push %rbp; mov %rsp,%rbp; xor %ebp,%ebp; call leaf
  uint64_t leaf = w.add("leaf", Kind::Framed);
  m.call(w.call(s, 0x10, g));
  m.prologue();
  m.call(w.call(g, 0x20, f));
  m.prologue();
  w.set_row(f + 0x30, FrameState{CfaBase::Bp, 16, -16, kBpZero | kBpSaved});
  m.call(w.call(f, 0x30, leaf, uint8_t{kCallBpZero}));
  m.rbp = 0;
  m.prologue();  // leaf saves the zeroed rbp
  CodeMap code = w.code_map();
  Trace t = walk_frame_pointers(WalkContext{w.mem, code, w.bounds(), {}}, m.regs(leaf + 0x40));
  EXPECT_UNRELIABLE(t, Reason::BpClobbered, 1);
  EXPECT_FALSE(unwind(WalkContext{w.mem, code, w.bounds(), {}}, m.regs(leaf + 0x40)).trace.verdict.reliable);
}

// A kernel stack ends only at its end frame or an end-of-stack hint: an entry-point style "rbp zeroed, saved
// rbp 0" is no end there, whatever the caller's CFA rule.
TEST(Walker, ZeroedRbpEndsNoKernelStack) {
  Chain c;
  Regs r = c.in_b();
  ASSERT_TRUE(c.fp(r).verdict.reliable);  // in user space, _start's zeroed rbp is the end
  WalkOptions kernel;
  kernel.zeroed_rbp_ends_stack = false;
  Unwind u = c.run(r, kernel);
  EXPECT_FALSE(u.trace.verdict.reliable);
  EXPECT_FALSE(u.cfa_trace.verdict.reliable);
}

TEST(Walker, SavedRbpNotZeroWhereCallerZeroedIt) {
  Chain c;
  Regs r = c.in_b();
  uint64_t a_frame = 0, main_frame = 0;
  c.w.mem.read(RemoteAddr(r.rbp), &a_frame, 8);
  c.w.mem.read(RemoteAddr(a_frame), &main_frame, 8);
  c.w.mem.write_u64(main_frame, main_frame + 0x40);  // main's saved rbp should be _start's 0
  Trace t = c.fp(r);
  EXPECT_UNRELIABLE(t, Reason::BpClobbered, 3);
}

TEST(Walker, NoMetadataAndNoFrameState) {
  Chain c;
  Regs r = c.in_b();
  CodeMap bare = c.w.code_map(/*with_metadata=*/false);
  Trace t = walk_frame_pointers(WalkContext{c.w.mem, bare, c.w.bounds(), {}}, r);
  EXPECT_UNRELIABLE(t, Reason::NoMetadata, 0);
  EXPECT_EQ(symbols(t), (std::vector<std::string>{"b", "a", "main", "_start"}));  // still shown, best effort

  Chain d;
  uint64_t u = d.w.add("unproven", Kind::NoState);
  Regs r2 = d.m.regs(u + 4);
  Trace t2 = d.fp(r2);
  EXPECT_UNRELIABLE(t2, Reason::NoFrameState, 0);
}

TEST(Walker, RbpLostAtInnermostPc) {
  Chain c;
  Regs r = c.in_b();
  c.w.set_row(c.b + 0x40, FrameState{CfaBase::Sp, 0x38, 0, 0});  // rbp used as scratch here
  c.w.set_row(c.b + 0x41, FrameState{CfaBase::Bp, 16, -16, kBpIsFrame | kBpSaved});
  Trace t = c.fp(r);
  EXPECT_UNRELIABLE(t, Reason::BpClobbered, 0);
}

TEST(Walker, InterruptFrameMidStack) {
  Chain c;
  // Mark a's call site as a place with a register frame on the stack.
  c.w.set_row(c.ret_a - 1, FrameState{CfaBase::Sp, 8, 0, kRegsFrame});
  c.w.set_row(c.ret_a, FrameState{CfaBase::Bp, 16, -16, kBpIsFrame | kBpSaved});
  Trace t = c.fp(c.in_b());
  EXPECT_UNRELIABLE(t, Reason::InterruptFrameMidStack, 1);

  Chain d;
  uint64_t restorer = d.w.add("__restore_rt", Kind::Frameless);
  Regs r = d.in_b();
  d.w.mem.write_u64(r.rbp + 8, restorer);  // a signal handler's return address
  Trace t2 = d.fp(r);
  EXPECT_UNRELIABLE(t2, Reason::InterruptFrameMidStack, 1);
}

TEST(Walker, CrossCheckMismatchDemotesReliable) {
  Chain c;
  // Wrong CFA rule at a's call site: the frame-pointer chain is fine, the metadata-only walk is not.
  c.w.set_row(c.ret_main - 1, FrameState{CfaBase::Bp, 24, -16, kBpIsFrame | kBpSaved});
  c.w.set_row(c.ret_main, FrameState{CfaBase::Bp, 16, -16, kBpIsFrame | kBpSaved});
  Unwind u = c.run(c.in_b());
  EXPECT_FALSE(u.cross_check.agree);
  EXPECT_UNRELIABLE(u.trace, Reason::CrossCheckMismatch, u.cross_check.first_difference);
}

TEST(Walker, KernelEndFrame) {
  FakeWorld w;
  Machine m(w);
  uint64_t entry = w.add("ret_from_fork", Kind::Framed);
  uint64_t fn = w.add("kthread_fn", Kind::Framed);
  uint64_t ret = w.call(entry, 0x10, fn);
  m.push(0);  // the end frame record (task_pt_regs - 16)
  uint64_t end_frame = m.rsp - 8;
  m.push(0);
  m.rbp = end_frame;
  m.call(ret);
  m.prologue();
  CodeMap code = w.code_map();
  WalkOptions o;
  o.end_frame = end_frame;
  Unwind u = unwind(WalkContext{w.mem, code, w.bounds(), o}, m.regs(fn + 0x40));
  EXPECT_TRUE(u.trace.verdict.reliable) << u.trace.verdict.detail;
  EXPECT_TRUE(u.cross_check.agree) << u.cross_check.detail;
  Trace without = walk_frame_pointers(WalkContext{w.mem, code, w.bounds(), {}}, m.regs(fn + 0x40));
  EXPECT_FALSE(without.verdict.reliable);
}

// An end-of-stack hint ends a kernel stack only at the stack's top. ftrace's return_to_handler carries one
// and calls out without a frame: a walk that took its return site for the end called a trace reliable with
// every real caller below it missing (found by the function_graph tracer in the guest).
struct KernelHintChain {
  FakeWorld w;
  Machine m{w};
  uint64_t entry = w.add("ret_from_fork", Kind::Framed);
  uint64_t fn = w.add("kthread_fn", Kind::Framed);
  uint64_t tramp = w.add("return_to_handler", Kind::NoState);
  uint64_t leaf = w.add("leaf", Kind::Framed);
  uint64_t end_frame = 0;
  KernelHintChain() {
    w.set_row(entry + 0x10, FrameState{CfaBase::Undefined, 0, 0, kEndOfStack});
    uint64_t ret_entry = w.call(entry, 0x10, fn, uint8_t{0});
    w.set_row(tramp, FrameState{CfaBase::Undefined, 0, 0, kEndOfStack});
    uint64_t ret_tramp = w.call(tramp, 0x10, leaf, uint8_t{0});
    m.push(0);
    end_frame = m.rsp - 8;
    m.push(0);
    m.rbp = end_frame;
    m.call(ret_entry);
    m.prologue();
    m.locals(2);
    m.call(w.call(fn, 0x20, tramp));  // kthread_fn -> return_to_handler (no frame of its own)
    m.call(ret_tramp);
    m.prologue();
  }
  WalkOptions kernel() const {
    WalkOptions o;
    o.end_frame = end_frame;
    o.zeroed_rbp_ends_stack = false;
    return o;
  }
};

TEST(Walker, EndOfStackHintMidKernelStackIsNoEnd) {
  KernelHintChain c;
  CodeMap code = c.w.code_map();
  Unwind u = unwind(WalkContext{c.w.mem, code, c.w.bounds(), c.kernel()}, c.m.regs(c.leaf + 0x40));
  EXPECT_UNRELIABLE(u.trace, Reason::StackEndNotReached, 1);
  EXPECT_FALSE(u.cfa_trace.verdict.reliable);
  // User space keeps the hint as an end (there is no end frame to reach).
  Trace user = walk_frame_pointers(WalkContext{c.w.mem, code, c.w.bounds(), {}}, c.m.regs(c.leaf + 0x40));
  EXPECT_TRUE(user.verdict.reliable) << user.verdict.detail;
}

TEST(Walker, InnermostPcUnderHintEndsKernelStackOnlyAtTheTop) {
  KernelHintChain c;
  CodeMap code = c.w.code_map();
  // Running inside return_to_handler, deep in the stack: its callers are unknown.
  Regs deep{c.tramp + 4, c.m.rsp + 16, c.m.rbp};
  Trace t = walk_frame_pointers(WalkContext{c.w.mem, code, c.w.bounds(), c.kernel()}, deep);
  EXPECT_UNRELIABLE(t, Reason::StackEndNotReached, 0);
  // Running in ret_from_fork itself with rsp at the pt_regs: the stack's real end.
  Regs top{c.entry + 0x12, c.end_frame + 16, 0};
  Trace e = walk_frame_pointers(WalkContext{c.w.mem, code, c.w.bounds(), c.kernel()}, top);
  EXPECT_TRUE(e.verdict.reliable) << e.verdict.detail;
}

// A kernel task's stack as the guest walker hands it to the judge: the pt_regs at the top (cs at +8), the
// end record below them returning into ret_from_fork, a kthread function and a leaf.
struct KernelTask {
  static constexpr uint64_t kPtRegsSize = 64;
  FakeWorld w;
  Machine m{w};
  uint64_t entry = w.add("ret_from_fork", Kind::Framed);
  uint64_t fn = w.add("kthread_fn", Kind::Framed);
  uint64_t leaf = w.add("leaf", Kind::Framed);
  uint64_t pt_regs = FakeWorld::kStackTop - kPtRegsSize;
  uint64_t ret_entry = 0, ret_fn = 0;
  explicit KernelTask(uint64_t cs = 0x10) {
    w.mem.write_u64(pt_regs + 8, cs);
    ret_entry = w.call(entry, 0x10, fn);
    ret_fn = w.call(fn, 0x20, leaf);
    m.rsp = pt_regs;
    m.rbp = 0;
    m.call(ret_entry);
    m.prologue();  // saves rbp 0: the end record at pt_regs - 16
    m.locals(2);
    m.call(ret_fn);
    m.prologue();
  }
  WalkOptions options(bool idle = false) const {
    WalkOptions o;
    o.end_frame = pt_regs - 16;
    o.end_record = KernelEndRecord{pt_regs, 8, entry, idle};
    o.zeroed_rbp_ends_stack = false;
    return o;
  }
  Unwind run(WalkOptions o) {
    CodeMap code = w.code_map();
    return unwind(WalkContext{w.mem, code, w.bounds(), o}, m.regs(leaf + 0x40));
  }
};

TEST(KernelEnd, KthreadEndsInRetFromForkWhichIsShown) {
  KernelTask k;
  Unwind u = k.run(k.options());
  EXPECT_TRUE(u.trace.verdict.reliable) << u.trace.verdict.detail;
  EXPECT_EQ(symbols(u.trace), (std::vector<std::string>{"leaf", "kthread_fn", "ret_from_fork"}));
  EXPECT_TRUE(u.cross_check.agree) << u.cross_check.detail;
  WalkOptions elsewhere = k.options();
  elsewhere.end_record->ret_from_fork = k.leaf;  // the last frame does not return into ret_from_fork
  EXPECT_UNRELIABLE(k.run(elsewhere).trace, Reason::StackEndNotReached, 2);
}

TEST(KernelEnd, UserPtRegsNeedEntryCodeHoldingThem) {
  KernelTask k(/*cs=*/0x33);
  EXPECT_UNRELIABLE(k.run(k.options()).trace, Reason::StackEndNotReached, 2);
  k.w.set_row(k.ret_entry - 1, FrameState{CfaBase::Sp, 8, 0, kRegsFrame});
  k.w.set_row(k.ret_entry, FrameState{CfaBase::Bp, 16, -16, kBpIsFrame | kBpSaved});
  Unwind u = k.run(k.options());
  EXPECT_TRUE(u.trace.verdict.reliable) << u.trace.verdict.detail;
}

TEST(KernelEnd, IdleTaskNeedsTheHeadMarker) {
  KernelTask k;
  // ret_from_fork is no idle task's end: head_64.S's marker (after an lretq, rbp 0) is.
  EXPECT_UNRELIABLE(k.run(k.options(/*idle=*/true)).trace, Reason::StackEndNotReached, 2);
  // The harness found the marker where this end record returns (KernelEndRecord::idle_marker): an end.
  WalkOptions o = k.options(/*idle=*/true);
  o.end_record->idle_marker = k.ret_entry;
  Unwind u = k.run(o);
  EXPECT_TRUE(u.trace.verdict.reliable) << u.trace.verdict.detail;
  // A marker elsewhere (a wrong answer), or none found: not an end.
  o.end_record->idle_marker = k.ret_entry + 1;
  EXPECT_UNRELIABLE(k.run(o).trace, Reason::StackEndNotReached, 2);
  o.end_record->idle_marker = 0;
  EXPECT_UNRELIABLE(k.run(o).trace, Reason::StackEndNotReached, 2);
  // The marker with a saved rbp that is not 0: something called it, it is no idle end.
  o.end_record->idle_marker = k.ret_entry;
  k.w.mem.write_u64(k.pt_regs - 16, 0x1234);
  EXPECT_FALSE(k.run(o).trace.verdict.reliable);
}

TEST(KernelEnd, EncodedFramePointerIsAnInterruptFrame) {
  KernelTask k;
  // The leaf's saved rbp encodes a pt_regs on this stack (ENCODE_FRAME_POINTER): regs address | 1.
  k.w.mem.write_u64(k.m.rbp, (k.pt_regs - 0x400) | 1);
  EXPECT_UNRELIABLE(k.run(k.options()).trace, Reason::InterruptFrameMidStack, 1);
  // Without the kernel end record it is just a misaligned frame.
  WalkOptions plain = k.options();
  plain.end_record.reset();
  EXPECT_UNRELIABLE(k.run(plain).trace, Reason::FrameMisaligned, 1);
}

TEST(KernelEnd, SleepingTasksFrameZeroIsAReturnAddress) {
  // Asleep in the leaf: it called the switch; frame 0 is the return address into it, rbp the leaf's frame.
  KernelTask k;
  uint64_t sw = k.w.add("switch_to", Kind::Frameless);
  uint64_t ret_leaf = k.w.call(k.leaf, 0x30, sw);
  uint64_t frameless = k.w.add("frameless_switcher", Kind::Frameless);
  uint64_t ret_bad = k.w.call(frameless, 0x10, sw, uint8_t{0});
  k.m.call(ret_leaf);
  CodeMap code = k.w.code_map();
  WalkOptions o = k.options();
  o.innermost_is_return_address = true;
  Unwind u = unwind(WalkContext{k.w.mem, code, k.w.bounds(), o}, Regs{ret_leaf, k.m.rsp + 8, k.m.rbp});
  EXPECT_TRUE(u.trace.verdict.reliable) << u.trace.verdict.detail;
  EXPECT_EQ(symbols(u.trace), (std::vector<std::string>{"leaf", "kthread_fn", "ret_from_fork"}));
  // A return address after a call made without a frame: its caller would be skipped.
  Trace t = walk_frame_pointers(WalkContext{k.w.mem, code, k.w.bounds(), o}, Regs{ret_bad, k.m.rsp + 8, k.m.rbp});
  EXPECT_UNRELIABLE(t, Reason::NoFrameAtCallSite, 0);
  // Without the option frame 0 is taken for a pc, and nothing checks the call before it.
  o.innermost_is_return_address = false;
  Trace unchecked =
      walk_frame_pointers(WalkContext{k.w.mem, code, k.w.bounds(), o}, Regs{ret_bad, k.m.rsp + 8, k.m.rbp});
  EXPECT_NE(unchecked.verdict.reason, Reason::NoFrameAtCallSite);
}

TEST(KernelEnd, NonStandardFunctionIsNotVouchedFor) {
  KernelTask k;
  k.w.set_function_flags(k.fn, kFuncNonStandard);
  EXPECT_UNRELIABLE(k.run(k.options()).trace, Reason::NoMetadata, 1);
  // User space too: the validator skipped it.
  Chain c;
  c.w.set_function_flags(c.a, kFuncNonStandard);
  Trace t = c.fp(c.in_b());
  EXPECT_UNRELIABLE(t, Reason::NoMetadata, 1);
}

TEST(Reasons, NamesRoundTripAndAreDocumented) {
  std::ifstream doc(std::string(FRAMECERT_SOURCE_DIR) + "/docs/verdicts.md");
  ASSERT_TRUE(doc) << "docs/verdicts.md missing";
  std::string text((std::istreambuf_iterator<char>(doc)), std::istreambuf_iterator<char>());
  for (Reason r : all_reasons()) {
    EXPECT_EQ(reason_from_name(reason_name(r)), r);
    EXPECT_NE(text.find("`" + std::string(reason_name(r)) + "`"), std::string::npos) << reason_name(r);
  }
}

}  // namespace
}  // namespace framecert::testing

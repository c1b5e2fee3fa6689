// ftrace's dynamic trampolines (harness/guest/ftrace_trampolines.h) in fake memory: an ops list whose ops own
// copies of a fake ftrace_caller. A copy that repeats the original's unpatched bytes is known code and a walk
// through it uses the original's metadata; a copy that differs, one too short, a looping list and an
// unreadable ops are never taken for known code (the walk then stays unreliable).
#include <gtest/gtest.h>

#include "harness/guest/ftrace_trampolines.h"
#include "tests/unwinder/fake_world.h"
#include "unwinder/unwind.h"

namespace framecert::guest {
namespace {

using namespace framecert::testing;

constexpr uint64_t kOps = 0x30000000;                   // ops i at kOps + i*0x100
constexpr uint64_t kHead = 0x30100000;                  // the ftrace_ops_list variable
constexpr uint64_t kEnd = 0x30200000;                   // &ftrace_list_end
constexpr uint64_t kCopy = 0x40000000;                  // where the kernel put the trampoline (module space)
constexpr uint64_t kCopySize = FakeWorld::kFnSize + 9;  // the copy, a return and the ops pointer

// 6.1's struct ftrace_ops: func, next, flags, ..., trampoline, trampoline_size (placed by hand here).
const FtraceOpsLayout kLayout{true, 0x8, 0x40, 0x48, 8};

struct Fixture {
  FakeWorld w;
  Machine m{w};
  uint64_t start = w.add("_start", Kind::Entry);
  uint64_t main_fn = w.add("main", Kind::Framed);
  uint64_t caller = w.add("ftrace_caller", Kind::Framed);
  uint64_t b = w.add("b", Kind::Framed);
  std::vector<TrampolineOriginal> originals{{"ftrace_caller", caller, caller + FakeWorld::kFnSize, caller + 0x10}};
  uint64_t ret_start = 0, ret_main = 0, ret_in_copy = 0;

  Fixture() {
    // The original's first bytes (never patched in a copy) are its own, not the fake text's nops.
    const uint8_t head[] = {0x55, 0xff, 0x74, 0x24, 0x10, 0x55, 0x48, 0x89, 0xe5};
    w.mem.write(caller, head, sizeof head);
    ret_start = w.call(start, 0x10, main_fn);
    // The traced function's call lands in the copy: rewritten at run time, so recorded as not direct.
    ret_main = w.call(main_fn, 0x20, caller, kCallFrameValid | kCallIndirect);
    const uint64_t ret_in_caller = w.call(caller, 0x30, b);
    ret_in_copy = kCopy + (ret_in_caller - caller);
    std::vector<uint8_t> copy(kCopySize, 0xcc);
    w.mem.read(RemoteAddr(caller), copy.data(), FakeWorld::kFnSize);
    w.mem.map_bytes(kCopy, copy.data(), copy.size());
    w.mem.write(kCopy + 0x20, "\x48\x8b\x15\x00\x00\x00\x00", 7);  // the patched op load: may differ

    w.mem.map(kOps, 0x1000);
    w.mem.map(kHead, 8);
    w.mem.map(kEnd, 0x100);
    w.mem.write_u64(kHead, kOps);
    ops(0, 1, 0, 0);               // the global ops: runs from ftrace_caller itself
    ops(1, -1, kCopy, kCopySize);  // the function tracer's ops: its own trampoline

    m.call(ret_start);
    m.prologue();
    m.call(ret_main);
    m.prologue();
    m.call(ret_in_copy);
    m.prologue();
  }
  // Ops i links to ops `next` (-1: the list's end).
  void ops(int i, int next, uint64_t trampoline, uint64_t size) {
    const uint64_t at = kOps + i * 0x100;
    w.mem.write_u64(at + kLayout.next, next < 0 ? kEnd : kOps + next * 0x100);
    w.mem.write_u64(at + kLayout.trampoline, trampoline);
    w.mem.write_u64(at + kLayout.trampoline_size, size);
  }
  FtraceTrampolines find() { return find_ftrace_trampolines(w.mem, kLayout, FtraceOpsList{kHead, kEnd}, originals); }
  Unwind walk(const FtraceTrampolines& t) {
    CodeMap code = w.code_map();
    for (const FtraceTrampoline& f : t.found) code.add(trampoline_image(f, w.table()));
    return unwind(WalkContext{w.mem, code, w.bounds(), WalkOptions{}}, m.regs(b + 0x40));
  }
};

TEST(FtraceTrampolines, ACopyOfFtraceCallerIsKnownCodeWithTheOriginalsMetadata) {
  Fixture f;
  FtraceTrampolines t = f.find();
  ASSERT_EQ(t.found.size(), 1u);
  EXPECT_TRUE(t.warnings.empty());
  EXPECT_EQ(t.found[0].start, kCopy);
  EXPECT_EQ(t.found[0].ops, kOps + 0x100);
  EXPECT_EQ(t.found[0].original->name, "ftrace_caller");

  Unwind u = f.walk(t);
  EXPECT_TRUE(u.trace.verdict.reliable) << u.trace.verdict.detail;
  ASSERT_EQ(u.trace.frames.size(), 4u);
  EXPECT_EQ(u.trace.frames[1].pc, f.ret_in_copy);
  EXPECT_EQ(u.trace.frames[1].object, "[ftrace trampoline]");
  EXPECT_EQ(u.trace.frames[1].symbol, "ftrace_trampoline");
  EXPECT_EQ(u.trace.frames[1].offset, 0x35u);
  EXPECT_EQ(u.trace.frames[2].pc, f.ret_main);
  EXPECT_EQ(u.trace.frames[3].pc, f.ret_start);
}

TEST(FtraceTrampolines, WithoutTheOpsListTheCopyIsNotText) {
  Fixture f;
  Unwind u = f.walk(FtraceTrampolines{});
  EXPECT_FALSE(u.trace.verdict.reliable);
  EXPECT_EQ(u.trace.verdict.reason, Reason::ReturnAddressNotText);
  EXPECT_EQ(u.trace.verdict.frame, 1);
}

TEST(FtraceTrampolines, ACopyOfANonStandardOriginalIsNotVouchedForAndSaysWhere) {
  Fixture f;
  f.w.set_function_flags(f.caller, metadata::kFuncNonStandard);
  Unwind u = f.walk(f.find());
  EXPECT_FALSE(u.trace.verdict.reliable);
  EXPECT_EQ(u.trace.verdict.reason, Reason::NoMetadata);
  EXPECT_NE(u.trace.verdict.detail.find("ftrace_caller ([ftrace trampoline]) is STACK_FRAME_NON_STANDARD"),
            std::string::npos)
      << u.trace.verdict.detail;
}

TEST(FtraceTrampolines, CodeThatDiffersFromTheOriginalBeforeItsPatchedPartIsUnknown) {
  Fixture f;
  f.w.mem.write(kCopy + 3, "\x90", 1);
  FtraceTrampolines t = f.find();
  EXPECT_TRUE(t.found.empty());
  ASSERT_EQ(t.warnings.size(), 1u);
  EXPECT_NE(t.warnings[0].find("copy of no known original"), std::string::npos) << t.warnings[0];
  EXPECT_EQ(f.walk(t).trace.verdict.reason, Reason::ReturnAddressNotText);
}

TEST(FtraceTrampolines, ATrampolineShorterThanTheOriginalIsUnknown) {
  Fixture f;
  f.ops(1, -1, kCopy, FakeWorld::kFnSize - 1);
  EXPECT_TRUE(f.find().found.empty());
}

TEST(FtraceTrampolines, ALoopingOrUnreadableListEndsTheSearchWithAWarning) {
  Fixture f;
  f.ops(1, 0, kCopy, kCopySize);  // ops 1 links back to ops 0
  FtraceTrampolines loop = f.find();
  EXPECT_EQ(loop.found.size(), 1u);  // found before the loop closed
  ASSERT_EQ(loop.warnings.size(), 1u);
  EXPECT_NE(loop.warnings[0].find("loops"), std::string::npos);

  f.w.mem.write_u64(kOps + kLayout.next, 0x50000000);  // ops 0 links to unmapped memory
  FtraceTrampolines gone = f.find();
  EXPECT_TRUE(gone.found.empty());
  ASSERT_FALSE(gone.warnings.empty());
}

TEST(FtraceTrampolines, AKernelWithoutFtraceOpsHasNone) {
  Fixture f;
  EXPECT_TRUE(
      find_ftrace_trampolines(f.w.mem, FtraceOpsLayout{}, FtraceOpsList{kHead, kEnd}, f.originals).found.empty());
  EXPECT_TRUE(find_ftrace_trampolines(f.w.mem, kLayout, FtraceOpsList{}, f.originals).found.empty());
}

}  // namespace
}  // namespace framecert::guest

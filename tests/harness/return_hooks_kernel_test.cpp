// The kernel's records of hooked return addresses (harness/guest/return_hooks_kernel.h) on a fake task in
// fake memory, walked over a synthetic stack: ftrace's ret_stack[] and rethook's list recover the true trace;
// an entry that names another slot, entries out of order, an index out of range, a missing or unreadable
// ret_stack and a looping list never recover anything (the trace stays unreliable, no crash, no hang).
#include <gtest/gtest.h>

#include <climits>

#include "harness/guest/return_hooks_kernel.h"
#include "tests/unwinder/hooked_chain.h"

namespace framecert::guest {
namespace {

using framecert::testing::HookedChain;

constexpr uint64_t kTask = 0x20000000;
constexpr uint64_t kRetStack = 0x20010000;
constexpr uint64_t kNodes = 0x20020000;

// 6.1 x86-64 shapes: struct ftrace_ret_stack {ret, func, calltime, retp}; struct rethook_node {union
// {freelist, rcu_head}; llist; rethook; ret_addr; frame}.
KernelLayout layout() {
  KernelLayout k;
  k.fgraph = FgraphLayout{true, 0x100, 4, 0x108, 0x20, 0x0, 0x18};
  k.rethook = HookListLayout{true, 0x110, 0x10, 0x0, 0x20, 0x28};
  return k;
}

struct Fixture {
  HookedChain c;
  KernelLayout k = layout();
  HookTrampolines t{c.tramp, c.tramp2, 0};
  KernelReturnHooks hooks{c.w.mem, k, t, kTask};

  Fixture() {
    c.w.mem.map(kTask, 0x1000);
    c.w.mem.map(kRetStack, kFtraceRetfuncDepth * 0x20);
    c.w.mem.map(kNodes, 0x1000);
    set_fgraph(-1, kRetStack);
  }
  void set_fgraph(int32_t curr, uint64_t ret_stack) {
    c.w.mem.write(kTask + 0x100, &curr, 4);
    c.w.mem.write_u64(kTask + 0x108, ret_stack);
  }
  void entry(int i, uint64_t ret, uint64_t retp) {
    c.w.mem.write_u64(kRetStack + i * 0x20, ret);
    c.w.mem.write_u64(kRetStack + i * 0x20 + 0x18, retp);
  }
  // Node i at kNodes + i*0x40; `next` is a node index or -1. The list head points at node `first`.
  uint64_t link(int i) const { return kNodes + i * 0x40 + 0x10; }
  void node(int i, uint64_t ret, uint64_t frame, int next) {
    c.w.mem.write_u64(link(i), next < 0 ? 0 : link(next));
    c.w.mem.write_u64(kNodes + i * 0x40 + 0x20, ret);
    c.w.mem.write_u64(kNodes + i * 0x40 + 0x28, frame);
  }
  void head(int first) { c.w.mem.write_u64(kTask + 0x110, first < 0 ? 0 : link(first)); }
  Unwind run() { return c.run(&hooks); }
};

std::vector<uint64_t> pcs(const Trace& t) {
  std::vector<uint64_t> out;
  for (const Frame& f : t.frames) out.push_back(f.pc);
  return out;
}

#define EXPECT_UNRECOVERED_AT(u, why, at)                                                           \
  do {                                                                                              \
    EXPECT_FALSE((u).trace.verdict.reliable);                                                       \
    EXPECT_EQ(reason_name((u).trace.verdict.reason), reason_name(why)) << (u).trace.verdict.detail; \
    EXPECT_EQ((u).trace.verdict.frame, at) << (u).trace.verdict.detail;                             \
  } while (0)

TEST(KernelReturnHooks, FgraphEntriesNamingTheSlotsRecoverTheTrueTrace) {
  Fixture f;
  f.c.hook(f.c.slot_a, f.c.tramp);
  f.c.hook(f.c.slot_main, f.c.tramp);
  f.entry(0, f.c.ret_main, f.c.slot_main);
  f.entry(1, f.c.ret_a, f.c.slot_a);
  f.entry(2, 0x4242, f.c.slot_a - 0x40);  // an inner hook the chain does not meet (passed over)
  f.set_fgraph(2, kRetStack);
  Unwind u = f.run();
  EXPECT_TRUE(u.trace.verdict.reliable) << u.trace.verdict.detail;
  EXPECT_EQ(pcs(u.trace), f.c.true_pcs());
  EXPECT_TRUE(u.cross_check.agree) << u.cross_check.detail;
  EXPECT_EQ(u.trace.frames[1].trampoline_symbol, "return_to_handler");
  EXPECT_EQ(u.trace.frames[2].return_slot, f.c.slot_main);
}

TEST(KernelReturnHooks, AnEntryForAnotherSlotIsNeverUsed) {
  for (int64_t delta : {-8, 8, 16}) {
    Fixture f;
    f.c.hook(f.c.slot_a, f.c.tramp);
    f.entry(0, f.c.ret_a, f.c.slot_a + delta);  // the right original, recorded for another slot
    f.set_fgraph(0, kRetStack);
    Unwind u = f.run();
    EXPECT_UNRECOVERED_AT(u, Reason::TrampolineReturnUnrecovered, 1);
  }
}

TEST(KernelReturnHooks, EntriesOutOfOrderOrUsedTwiceProveNothing) {
  {
    // The outer slot's entry above the inner one's: not the order the kernel pushes them in.
    Fixture f;
    f.c.hook(f.c.slot_a, f.c.tramp);
    f.c.hook(f.c.slot_main, f.c.tramp);
    f.entry(0, f.c.ret_a, f.c.slot_a);
    f.entry(1, f.c.ret_main, f.c.slot_main);
    f.set_fgraph(1, kRetStack);
    EXPECT_UNRECOVERED_AT(f.run(), Reason::TrampolineReturnUnrecovered, 1);
  }
  {
    // One live entry, two hooked slots: the second has no record.
    Fixture f;
    f.c.hook(f.c.slot_a, f.c.tramp);
    f.c.hook(f.c.slot_main, f.c.tramp);
    f.entry(0, f.c.ret_a, f.c.slot_a);
    f.entry(1, f.c.ret_main, f.c.slot_main);  // above curr_ret_stack: not live
    f.set_fgraph(0, kRetStack);
    EXPECT_UNRECOVERED_AT(f.run(), Reason::TrampolineReturnUnrecovered, 2);
  }
}

TEST(KernelReturnHooks, ABadIndexOrRetStackIsUnreliableNotACrash) {
  for (int32_t curr : {-1, -2, static_cast<int32_t>(kFtraceRetfuncDepth), 1 << 30, INT32_MIN}) {
    Fixture f;
    f.c.hook(f.c.slot_a, f.c.tramp);
    f.entry(0, f.c.ret_a, f.c.slot_a);
    f.set_fgraph(curr, kRetStack);
    EXPECT_UNRECOVERED_AT(f.run(), Reason::TrampolineReturnUnrecovered, 1);
  }
  {
    Fixture f;
    f.c.hook(f.c.slot_a, f.c.tramp);
    f.set_fgraph(0, 0);  // no ret_stack
    EXPECT_UNRECOVERED_AT(f.run(), Reason::TrampolineReturnUnrecovered, 1);
  }
  {
    Fixture f;
    f.c.hook(f.c.slot_a, f.c.tramp);
    f.set_fgraph(3, 0x30000000);  // unmapped
    EXPECT_UNRECOVERED_AT(f.run(), Reason::MemoryUnreadable, 1);
  }
  {
    // The highest live index lies past the mapped array: unreadable, not read out of bounds of the fake.
    Fixture f;
    f.c.hook(f.c.slot_a, f.c.tramp);
    f.set_fgraph(static_cast<int32_t>(kFtraceRetfuncDepth) - 1, kRetStack + 0x20 * 10);
    EXPECT_UNRECOVERED_AT(f.run(), Reason::MemoryUnreadable, 1);
  }
}

TEST(KernelReturnHooks, RethookListRecoversAndPassesOverStackedHooks) {
  Fixture f;
  f.c.hook(f.c.slot_a, f.c.tramp2);
  f.c.hook(f.c.slot_main, f.c.tramp2);
  f.node(0, 0x4242, f.c.slot_a - 0x40, 1);  // an inner hook the chain does not meet
  f.node(1, f.c.tramp2, f.c.slot_a, 2);     // two kretprobes on b: the later one saved the trampoline
  f.node(2, f.c.ret_a, f.c.slot_a, 3);
  f.node(3, f.c.ret_main, f.c.slot_main, -1);
  f.head(0);
  Unwind u = f.run();
  EXPECT_TRUE(u.trace.verdict.reliable) << u.trace.verdict.detail;
  EXPECT_EQ(pcs(u.trace), f.c.true_pcs());
  EXPECT_EQ(u.trace.frames[1].trampoline_symbol, "arch_rethook_trampoline");
}

TEST(KernelReturnHooks, RethookWrongFrameOrderOrLoopIsUnrecovered) {
  {
    Fixture f;
    f.c.hook(f.c.slot_a, f.c.tramp2);
    f.node(0, f.c.ret_a, f.c.slot_a + 8, -1);  // the right original for another slot
    f.head(0);
    EXPECT_UNRECOVERED_AT(f.run(), Reason::TrampolineReturnUnrecovered, 1);
  }
  {
    Fixture f;
    f.c.hook(f.c.slot_a, f.c.tramp2);
    f.c.hook(f.c.slot_main, f.c.tramp2);
    f.node(0, f.c.ret_main, f.c.slot_main, 1);  // outer first
    f.node(1, f.c.ret_a, f.c.slot_a, -1);
    f.head(0);
    EXPECT_UNRECOVERED_AT(f.run(), Reason::TrampolineReturnUnrecovered, 1);
  }
  {
    Fixture f;
    f.c.hook(f.c.slot_a, f.c.tramp2);
    f.node(0, 0x4242, f.c.slot_a - 8, 0);  // links to itself
    f.head(0);
    Unwind u = f.run();
    EXPECT_UNRECOVERED_AT(u, Reason::TrampolineReturnUnrecovered, 1);
    EXPECT_NE(u.trace.verdict.detail.find("more than"), std::string::npos) << u.trace.verdict.detail;
  }
  {
    // The fgraph trampoline while the task's records are rethook's only: nothing names the slot.
    Fixture f;
    f.c.hook(f.c.slot_a, f.c.tramp);
    f.node(0, f.c.ret_a, f.c.slot_a, -1);
    f.head(0);
    EXPECT_UNRECOVERED_AT(f.run(), Reason::TrampolineReturnUnrecovered, 1);
  }
}

TEST(KernelReturnHooks, AKernelWithoutTheRecordsRecoversNothing) {
  Fixture f;
  f.k.fgraph.present = false;
  f.c.hook(f.c.slot_a, f.c.tramp);
  f.entry(0, f.c.ret_a, f.c.slot_a);
  f.set_fgraph(0, kRetStack);
  EXPECT_UNRECOVERED_AT(f.run(), Reason::TrampolineReturnUnrecovered, 1);
  EXPECT_EQ(f.hooks.trampoline_name(0), std::nullopt);  // an absent trampoline's address 0 is none
  EXPECT_EQ(f.hooks.trampoline_name(f.c.tramp2).value_or(""), "arch_rethook_trampoline");
}

}  // namespace
}  // namespace framecert::guest

// ShadowStacks on synthetic call/ret sequences shaped like what the kernel does.
#include "harness/shadow/shadow_stacks.h"

#include <gtest/gtest.h>

#include <atomic>
#include <stdexcept>
#include <thread>
#include <vector>

namespace framecert::shadow {
namespace {

// Two 16 KiB-aligned kernel task stacks (vmalloc space), and their tops.
constexpr uint64_t kStackA = 0xffffc90000010000ull;
constexpr uint64_t kStackB = 0xffffc90000028000ull;
constexpr uint64_t kTopA = kStackA + 0x4000;
constexpr uint64_t kTopB = kStackB + 0x4000;

// Made-up return addresses in kernel text.
constexpr uint64_t ra(unsigned n) { return 0xffffffff81000000ull + n * 0x100; }

std::vector<Entry> entries(const ShadowStacks& s) { return s.snapshot().entries; }

// In a consistent view every recorded call is either still there, retired by its ret, or dropped.
void expect_balanced(const Snapshot& snap) {
  const Counters& c = snap.counters;
  EXPECT_EQ(snap.entries.size(), c.calls - (c.rets - c.unmatched) - c.dropped);
}

TEST(ShadowStacks, NestedCallsAndRets) {
  ShadowStacks s;
  s.on_call(kTopA - 0x08, ra(1));  // entry_SYSCALL_64 calls do_syscall_64
  s.on_call(kTopA - 0x48, ra(2));  // ... which calls __x64_sys_foo
  s.on_call(kTopA - 0x88, ra(3));  // ... which calls a helper
  EXPECT_EQ(entries(s), (std::vector<Entry>{{kTopA - 0x88, ra(3)}, {kTopA - 0x48, ra(2)}, {kTopA - 0x08, ra(1)}}));
  s.on_ret(kTopA - 0x88);
  EXPECT_EQ(entries(s), (std::vector<Entry>{{kTopA - 0x48, ra(2)}, {kTopA - 0x08, ra(1)}}));
  s.on_ret(kTopA - 0x48);
  s.on_ret(kTopA - 0x08);
  const Snapshot snap = s.snapshot();
  EXPECT_TRUE(snap.entries.empty());
  EXPECT_EQ(snap.counters, (Counters{.calls = 3, .rets = 3, .unmatched = 0, .dropped = 0}));
  EXPECT_EQ(s.counters(), snap.counters);
}

TEST(ShadowStacks, ContextSwitchKeepsEachTaskStack) {
  ShadowStacks s;
  // Task A runs into schedule() and switches away; task B runs, calls, switches back; A returns.
  s.on_call(kTopA - 0x08, ra(1));
  s.on_call(kTopA - 0x40, ra(2));
  s.on_call(kTopA - 0x80, ra(3));  // __schedule -> __switch_to_asm
  s.on_call(kTopB - 0x08, ra(10));
  s.on_call(kTopB - 0x40, ra(11));
  s.on_ret(kTopB - 0x40);
  s.on_call(kTopB - 0x60, ra(12));  // B is now blocked in here
  EXPECT_EQ(entries(s), (std::vector<Entry>{{kTopA - 0x80, ra(3)},
                                            {kTopA - 0x40, ra(2)},
                                            {kTopA - 0x08, ra(1)},
                                            {kTopB - 0x60, ra(12)},
                                            {kTopB - 0x08, ra(10)}}));
  s.on_ret(kTopA - 0x80);  // back on A: B's stack is untouched
  s.on_ret(kTopA - 0x40);
  EXPECT_EQ(entries(s), (std::vector<Entry>{{kTopA - 0x08, ra(1)}, {kTopB - 0x60, ra(12)}, {kTopB - 0x08, ra(10)}}));
  expect_balanced(s.snapshot());
  EXPECT_EQ(s.counters().unmatched, 0u);
  EXPECT_EQ(s.counters().dropped, 0u);
}

TEST(ShadowStacks, InterruptOnTheSameStackLeavesTheInterruptedChain) {
  ShadowStacks s;
  s.on_call(kTopA - 0x08, ra(1));
  s.on_call(kTopA - 0x40, ra(2));  // interrupted somewhere in this callee, rsp around top - 0x60
  // Entry code below the hardware frame and pt_regs: error_entry, then the handler, which calls more.
  s.on_call(kTopA - 0x110, ra(20));
  s.on_ret(kTopA - 0x110);
  s.on_call(kTopA - 0x118, ra(21));
  s.on_call(kTopA - 0x150, ra(22));
  s.on_ret(kTopA - 0x150);
  s.on_ret(kTopA - 0x118);
  EXPECT_EQ(entries(s), (std::vector<Entry>{{kTopA - 0x40, ra(2)}, {kTopA - 0x08, ra(1)}}));
  // iret back; the interrupted function returns normally.
  s.on_ret(kTopA - 0x40);
  s.on_ret(kTopA - 0x08);
  EXPECT_TRUE(entries(s).empty());
  EXPECT_EQ(s.counters(), (Counters{.calls = 5, .rets = 5, .unmatched = 0, .dropped = 0}));
}

TEST(ShadowStacks, AbandonedFramesAreDroppedByTheNextCallAboveThem) {
  ShadowStacks s;
  s.on_call(kTopA - 0x08, ra(1));
  s.on_call(kTopA - 0x40, ra(2));
  s.on_call(kTopA - 0x80, ra(3));
  s.on_call(kTopA - 0xc0, ra(4));
  // Frames 3 and 4 are discarded without a ret (an exception fixup resets rsp to top - 0x48); while nothing
  // happens their entries stay, below rsp, where a reader filtering by rsp ignores them.
  EXPECT_EQ(entries(s).size(), 4u);
  s.on_call(kTopA - 0x50, ra(5));
  EXPECT_EQ(entries(s), (std::vector<Entry>{{kTopA - 0x50, ra(5)}, {kTopA - 0x40, ra(2)}, {kTopA - 0x08, ra(1)}}));
  EXPECT_EQ(s.counters().dropped, 2u);
  expect_balanced(s.snapshot());
}

TEST(ShadowStacks, AbandonedFramesAreDroppedByARetAboveThem) {
  ShadowStacks s;
  s.on_call(kTopA - 0x08, ra(1));
  s.on_call(kTopA - 0x40, ra(2));
  s.on_call(kTopA - 0x80, ra(3));
  s.on_ret(kTopA - 0x40);  // frame 3 abandoned, then frame 2 returns
  EXPECT_EQ(entries(s), (std::vector<Entry>{{kTopA - 0x08, ra(1)}}));
  EXPECT_EQ(s.counters(), (Counters{.calls = 3, .rets = 1, .unmatched = 0, .dropped = 1}));
}

TEST(ShadowStacks, CallUsedAsAPushStaysBelowUntilACallAboveIt) {
  ShadowStacks s;
  s.on_call(kTopA - 0x08, ra(1));
  // RSB stuffing: sixteen calls, each to the next instruction, then `add $128, %rsp`. No ret ever comes.
  for (unsigned i = 0; i < 16; ++i) s.on_call(kTopA - 0x48 - 8 * i, ra(100 + i));
  EXPECT_EQ(entries(s).size(), 17u);
  // The next real call lands at the restored rsp - 8, above all of them.
  s.on_call(kTopA - 0x40, ra(2));
  EXPECT_EQ(entries(s), (std::vector<Entry>{{kTopA - 0x40, ra(2)}, {kTopA - 0x08, ra(1)}}));
  EXPECT_EQ(s.counters().dropped, 16u);
  EXPECT_EQ(s.counters().unmatched, 0u);
}

TEST(ShadowStacks, CallOnAnOccupiedSlotReplacesTheEntry) {
  ShadowStacks s;
  s.on_call(kTopA - 0x40, ra(1));
  s.on_call(kTopA - 0x40, ra(2));  // the first frame was abandoned at exactly the same depth
  EXPECT_EQ(entries(s), (std::vector<Entry>{{kTopA - 0x40, ra(2)}}));
  EXPECT_EQ(s.counters().dropped, 1u);
}

TEST(ShadowStacks, RetWithoutAnEntryIsUnmatchedAndDropsWhatIsBelow) {
  ShadowStacks s;
  // A task's first switch-in returns from __switch_to_asm into ret_from_fork: a ret nothing called, here on a
  // stack never seen before. Nothing is created for it.
  s.on_ret(kTopB - 0x40);
  EXPECT_TRUE(entries(s).empty());
  EXPECT_EQ(s.counters(), (Counters{.calls = 0, .rets = 1, .unmatched = 1, .dropped = 0}));
  // The same on a recycled stack: entries the previous owner left lower down go, entries above stay.
  s.on_call(kTopA - 0x08, ra(1));
  s.on_call(kTopA - 0x100, ra(2));
  s.on_call(kTopA - 0x140, ra(3));
  s.on_ret(kTopA - 0x40);
  EXPECT_EQ(entries(s), (std::vector<Entry>{{kTopA - 0x08, ra(1)}}));
  EXPECT_EQ(s.counters(), (Counters{.calls = 3, .rets = 2, .unmatched = 2, .dropped = 2}));
  expect_balanced(s.snapshot());
}

TEST(ShadowStacks, ReturnAddressRewrittenInPlaceKeepsTheRecordedCaller) {
  ShadowStacks s;
  s.on_call(kTopA - 0x08, ra(1));
  s.on_call(kTopA - 0x40, ra(2));
  // ftrace's graph tracer (or a kretprobe) now overwrites the word at top - 0x40 with return_to_handler. That
  // is a plain store, not a call: the plugin reports nothing, and the entry keeps naming the real caller. The
  // trampoline's eventual ret still loads from the slot the call stored to.
  EXPECT_EQ(entries(s), (std::vector<Entry>{{kTopA - 0x40, ra(2)}, {kTopA - 0x08, ra(1)}}));
  s.on_ret(kTopA - 0x40);
  EXPECT_EQ(entries(s), (std::vector<Entry>{{kTopA - 0x08, ra(1)}}));
  EXPECT_EQ(s.counters().unmatched, 0u);
}

TEST(ShadowStacks, RegionSizeSeparatesStacks) {
  ShadowStacks small(4096);
  EXPECT_EQ(small.region_size(), 4096u);
  // Slots 4 KiB apart are different regions: a call on the lower one does not drop the upper one's entry.
  small.on_call(kStackA + 0x1ff8, ra(1));
  small.on_call(kStackA + 0x0ff8, ra(2));
  small.on_call(kStackA + 0x1ff0, ra(3));  // above region 2's entry, below region 1's: nothing dropped
  EXPECT_EQ(small.counters().dropped, 0u);
  ShadowStacks big;  // with 16 KiB regions the same sequence drops the entry at 0x0ff8
  big.on_call(kStackA + 0x1ff8, ra(1));
  big.on_call(kStackA + 0x0ff8, ra(2));
  big.on_call(kStackA + 0x1ff0, ra(3));
  EXPECT_EQ(big.counters().dropped, 1u);
  EXPECT_THROW(ShadowStacks(1000), std::invalid_argument);
  EXPECT_THROW(ShadowStacks(8), std::invalid_argument);
}

TEST(ShadowStacks, SnapshotIsSortedAcrossRegionsAndAddressHalves) {
  ShadowStacks s;
  s.on_call(kTopB - 0x08, ra(1));
  s.on_call(0x7ffc0000fff8ull, ra(2));  // a user stack slot: kept if the plugin passes it (user=1)
  s.on_call(kTopA - 0x08, ra(3));
  const std::vector<Entry> e = entries(s);
  ASSERT_EQ(e.size(), 3u);
  EXPECT_EQ(e[0].slot, 0x7ffc0000fff8ull);
  EXPECT_EQ(e[1].slot, kTopA - 0x08);
  EXPECT_EQ(e[2].slot, kTopB - 0x08);
}

// Eight threads (vCPUs), each running its own eight task stacks, so that stripes are shared between threads,
// while a ninth takes snapshots: nothing is lost and every snapshot is consistent.
TEST(ShadowStacks, ConcurrentThreadsOnDifferentRegions) {
  constexpr unsigned kThreads = 8, kStacksPerThread = 8, kRounds = 2000, kDepth = 6;
  ShadowStacks s;
  const auto top = [](unsigned thread, unsigned stack) {
    return kStackA + (uint64_t{thread} * kStacksPerThread + stack) * 0x8000 + 0x4000;
  };
  std::atomic<bool> done{false};
  std::atomic<unsigned> snapshots{0};
  std::thread reader([&] {
    while (!done.load()) {
      const Snapshot snap = s.snapshot();
      for (size_t i = 1; i < snap.entries.size(); ++i) ASSERT_LT(snap.entries[i - 1].slot, snap.entries[i].slot);
      expect_balanced(snap);
      snapshots.fetch_add(1);
    }
  });
  std::vector<std::thread> vcpus;
  for (unsigned t = 0; t < kThreads; ++t) {
    vcpus.emplace_back([&, t] {
      // The reader is reading before the writers start (on a loaded machine it could otherwise first run
      // after they all finished, and the test would see no concurrent snapshot at all).
      while (snapshots.load() == 0) std::this_thread::yield();
      for (unsigned round = 0; round < kRounds; ++round) {
        const uint64_t base = top(t, round % kStacksPerThread);
        for (unsigned d = 0; d < kDepth; ++d) s.on_call(base - 8 - 0x40 * d, ra(d));
        for (unsigned d = kDepth; d-- > 1;) s.on_ret(base - 8 - 0x40 * d);  // the outermost call stays
      }
    });
  }
  for (auto& v : vcpus) v.join();
  done.store(true);
  reader.join();
  EXPECT_GT(snapshots.load(), 0u);

  const Snapshot snap = s.snapshot();
  const uint64_t calls = uint64_t{kThreads} * kRounds * kDepth;
  const uint64_t rets = uint64_t{kThreads} * kRounds * (kDepth - 1);
  // Every round after a stack's first drops exactly one entry: its first call lands on the slot where the
  // previous round's outermost call is still recorded.
  const uint64_t dropped = uint64_t{kThreads} * (kRounds - kStacksPerThread);
  EXPECT_EQ(snap.counters, (Counters{.calls = calls, .rets = rets, .unmatched = 0, .dropped = dropped}));
  ASSERT_EQ(snap.entries.size(), size_t{kThreads} * kStacksPerThread);
  for (unsigned t = 0; t < kThreads; ++t) {
    for (unsigned k = 0; k < kStacksPerThread; ++k) {
      EXPECT_EQ(snap.entries[t * kStacksPerThread + k], (Entry{top(t, k) - 8, ra(0)}));
    }
  }
}

// The kernel's error_entry moves its own return address down (PUSH_AND_CLEAR_REGS save_ret=1) and returns
// from the lower slot: the ret is unmatched, and the slot rule alone would leave the call's entry inside the
// interrupted function's frame after iret. Where the ret went (the next block) names the entry it returned
// through.
TEST(ShadowStacks, ResyncPopsTheEntryAnUnmatchedRetReturnedThrough) {
  ShadowStacks s;
  s.on_call(kTopA - 0x08, ra(1));        // the interrupted chain
  s.on_call(kTopA - 0x60, ra(2));        // asm_sysvec_*: call error_entry
  EXPECT_FALSE(s.on_ret(kTopA - 0xd8));  // error_entry returns from 15 words further down
  s.resync(kTopA - 0xd8, ra(2));         // ... to asm_sysvec_*'s call site
  EXPECT_EQ(entries(s), (std::vector<Entry>{{kTopA - 0x08, ra(1)}}));
  Snapshot snap = s.snapshot();
  EXPECT_EQ(snap.counters.resynced, 1u);
  expect_balanced(snap);
}

TEST(ShadowStacks, ResyncTakesTheNearestMatchAndIgnoresOtherTargets) {
  ShadowStacks s;
  s.on_call(kTopA - 0x08, ra(7));  // recursion: the same return address twice
  s.on_call(kTopA - 0x48, ra(7));
  s.on_call(kTopA - 0x88, ra(3));
  EXPECT_FALSE(s.on_ret(kTopA - 0xc0));
  s.resync(kTopA - 0xc0, ra(9));  // a target no entry names (a trampoline, or an interrupt came first)
  EXPECT_EQ(entries(s).size(), 3u);
  s.resync(kTopA - 0xc0, ra(7));  // the nearest ra(7) is the inner one
  EXPECT_EQ(entries(s), (std::vector<Entry>{{kTopA - 0x08, ra(7)}}));
  s.resync(kTopB - 0x10, ra(7));  // another stack: nothing there
  EXPECT_EQ(entries(s).size(), 1u);
}

}  // namespace
}  // namespace framecert::shadow

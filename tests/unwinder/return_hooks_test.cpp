// Hooked return addresses in the walk (unwinder/return_hooks.h), with a scripted record of the hooks: a
// trampoline in a return slot is replaced by the original only where the record proves it, the recovered
// address is judged like any other (a record that lies is caught by the usual checks), and the frame shows
// both the trampoline and the recovered caller. The kernel's own records (ftrace's ret_stack, rethook's
// list) read from fake memory: tests/harness/return_hooks_kernel_test.cpp.
#include <gtest/gtest.h>

#include <map>

#include "tests/unwinder/hooked_chain.h"

namespace framecert::testing {
namespace {

// Answers from a fixed table, slot -> original; whatever the table says, right or wrong.
class ScriptedHooks final : public ReturnHooks {
 public:
  // `originals`: by slot, whatever the trampoline; `by_trampoline`: by (trampoline, slot), asked first (each
  // tracer keeps its own records).
  ScriptedHooks(std::map<uint64_t, std::string> trampolines, std::map<uint64_t, uint64_t> originals,
                std::map<std::pair<uint64_t, uint64_t>, uint64_t> by_trampoline = {})
      : trampolines_(std::move(trampolines)),
        originals_(std::move(originals)),
        by_trampoline_(std::move(by_trampoline)) {}
  std::optional<std::string> trampoline_name(uint64_t address) const override {
    auto it = trampolines_.find(address);
    if (it == trampolines_.end()) return std::nullopt;
    return it->second;
  }
  std::unique_ptr<ReturnHookCursor> begin() const override {
    return std::make_unique<Cursor>(originals_, by_trampoline_);
  }

 private:
  class Cursor final : public ReturnHookCursor {
   public:
    Cursor(const std::map<uint64_t, uint64_t>& o, const std::map<std::pair<uint64_t, uint64_t>, uint64_t>& t)
        : o_(o), t_(t) {}
    tl::expected<uint64_t, Problem> recover(uint64_t trampoline, uint64_t slot) override {
      if (auto k = t_.find({trampoline, slot}); k != t_.end()) return k->second;
      auto it = o_.find(slot);
      if (it == o_.end()) return tl::unexpected(Problem{Reason::TrampolineReturnUnrecovered, "not in the script"});
      return it->second;
    }

   private:
    const std::map<uint64_t, uint64_t>& o_;
    const std::map<std::pair<uint64_t, uint64_t>, uint64_t>& t_;
  };
  std::map<uint64_t, std::string> trampolines_;
  std::map<uint64_t, uint64_t> originals_;
  std::map<std::pair<uint64_t, uint64_t>, uint64_t> by_trampoline_;
};

std::vector<uint64_t> pcs(const Trace& t) {
  std::vector<uint64_t> out;
  for (const Frame& f : t.frames) out.push_back(f.pc);
  return out;
}

TEST(ReturnHooks, RecoveredReturnAddressesMakeTheTrueTraceReliable) {
  HookedChain c;
  c.hook(c.slot_a, c.tramp);
  c.hook(c.slot_main, c.tramp);
  ScriptedHooks hooks({{c.tramp, "return_to_handler"}}, {{c.slot_a, c.ret_a}, {c.slot_main, c.ret_main}});
  Unwind u = c.run(&hooks);
  EXPECT_TRUE(u.trace.verdict.reliable) << u.trace.verdict.detail;
  EXPECT_EQ(pcs(u.trace), c.true_pcs());
  EXPECT_TRUE(u.cross_check.agree) << u.cross_check.detail;  // the metadata-only walk recovers them too
  // Each hooked frame shows the trampoline the stack held beside the recovered caller.
  const Frame& f1 = u.trace.frames[1];
  EXPECT_EQ(f1.symbol, "a");
  EXPECT_EQ(f1.trampoline, c.tramp);
  EXPECT_EQ(f1.trampoline_symbol, "return_to_handler");
  EXPECT_EQ(f1.return_slot, c.slot_a);
  EXPECT_EQ(u.trace.frames[2].trampoline, c.tramp);
  EXPECT_EQ(u.trace.frames[3].trampoline, 0u);
}

TEST(ReturnHooks, WithoutARecordTheTrampolineIsNeverAReturnAddress) {
  HookedChain c;
  c.hook(c.slot_a, c.tramp);
  // No hooks known at all: the trampoline is judged as a return address and fails.
  EXPECT_FALSE(c.run(nullptr).trace.verdict.reliable);
  // Known trampoline, but the record does not name this slot (it names the next one up).
  ScriptedHooks hooks({{c.tramp, "return_to_handler"}}, {{c.slot_main, c.ret_a}});
  Unwind u = c.run(&hooks);
  EXPECT_FALSE(u.trace.verdict.reliable);
  EXPECT_EQ(u.trace.verdict.reason, Reason::TrampolineReturnUnrecovered) << u.trace.verdict.detail;
  EXPECT_EQ(u.trace.verdict.frame, 1);
  ASSERT_EQ(u.trace.frames.size(), 2u);  // nothing below an unknown caller is shown
  EXPECT_EQ(u.trace.frames[1].pc, c.tramp);
  EXPECT_EQ(u.trace.frames[1].symbol, "return_to_handler");  // named as the trampoline, not by pc - 1
  EXPECT_FALSE(u.cfa_trace.verdict.reliable);
}

TEST(ReturnHooks, ARecordThatLiesIsCaughtByTheUsualChecks) {
  HookedChain c;
  c.hook(c.slot_a, c.tramp);
  const std::map<uint64_t, std::string> t{{c.tramp, "return_to_handler"}, {c.tramp2, "arch_rethook_trampoline"}};
  struct Lie {
    uint64_t original;
    Reason expected;
  };
  for (Lie lie : {Lie{c.ret_main, Reason::CallTargetMismatch},        // a real return address, of a call to a
                  Lie{c.ret_main_other, Reason::CallTargetMismatch},  //   function other than b's caller's callee
                  Lie{c.ret_a + 1, Reason::ReturnAddressNotAfterCall}, Lie{0x10, Reason::ReturnAddressNotText},
                  Lie{c.tramp2, Reason::TrampolineReturnUnrecovered},  // another trampoline proves nothing
                  Lie{c.tramp, Reason::TrampolineReturnUnrecovered}}) {
    ScriptedHooks hooks(t, {{c.slot_a, lie.original}});
    Unwind u = c.run(&hooks);
    EXPECT_FALSE(u.trace.verdict.reliable) << std::hex << lie.original;
    EXPECT_EQ(reason_name(u.trace.verdict.reason), reason_name(lie.expected)) << u.trace.verdict.detail;
    EXPECT_EQ(u.trace.verdict.frame, 1) << u.trace.verdict.detail;
  }
}

// Issue 14: one slot hooked by two tracers. function_graph hooked a's return first (return_to_handler in
// the slot, the original in its ret_stack), then a kretprobe of the same function (its trampoline in the
// slot, return_to_handler as "its" original). Both records name the slot: followed in turn, the true caller.
TEST(ReturnHooks, ASlotHookedByTwoTracersIsRecoveredThroughBothRecords) {
  HookedChain c;
  c.hook(c.slot_a, c.tramp2);
  const std::map<uint64_t, std::string> t{{c.tramp, "return_to_handler"}, {c.tramp2, "arch_rethook_trampoline"}};
  ScriptedHooks hooks(t, {}, {{{c.tramp2, c.slot_a}, c.tramp}, {{c.tramp, c.slot_a}, c.ret_a}});
  Unwind u = c.run(&hooks);
  EXPECT_TRUE(u.trace.verdict.reliable) << u.trace.verdict.detail;
  EXPECT_EQ(u.trace.frames.at(1).pc, c.ret_a);
  EXPECT_EQ(u.trace.frames.at(1).trampoline, c.tramp2);  // the frame shows the hook found in the slot
  // The inner record missing: not proven.
  ScriptedHooks half(t, {}, {{{c.tramp2, c.slot_a}, c.tramp}});
  EXPECT_EQ(c.run(&half).trace.verdict.reason, Reason::TrampolineReturnUnrecovered);
  // Records that send the walk round in a circle: not proven.
  ScriptedHooks loop(t, {}, {{{c.tramp2, c.slot_a}, c.tramp}, {{c.tramp, c.slot_a}, c.tramp2}});
  EXPECT_EQ(c.run(&loop).trace.verdict.reason, Reason::TrampolineReturnUnrecovered);
}

TEST(ReturnHooks, AnOriginalFromAnotherFrameIsCaught) {
  // The record gives main's slot the original of the slot below (a's return address into... a): a return
  // address that exists, but not of a call to the frame below's function.
  HookedChain c;
  c.hook(c.slot_main, c.tramp);
  ScriptedHooks hooks({{c.tramp, "return_to_handler"}}, {{c.slot_main, c.ret_a}});
  Unwind u = c.run(&hooks);
  EXPECT_FALSE(u.trace.verdict.reliable);
  EXPECT_EQ(u.trace.verdict.frame, 2) << u.trace.verdict.detail;
}

TEST(ReturnHooks, UnhookedSlotsAreNeverAskedAbout) {
  HookedChain c;
  // The record would lie, but no slot holds a trampoline: it is never consulted.
  ScriptedHooks hooks({{c.tramp, "return_to_handler"}}, {{c.slot_a, c.ret_main}});
  Unwind u = c.run(&hooks);
  EXPECT_TRUE(u.trace.verdict.reliable) << u.trace.verdict.detail;
  EXPECT_EQ(pcs(u.trace), c.true_pcs());
  for (const Frame& f : u.trace.frames) EXPECT_EQ(f.trampoline, 0u);
}

}  // namespace
}  // namespace framecert::testing

// The checker's state table (validator/state_table.h): a state comes back exactly as it went in, equal
// states share one id and states that differ in any field get different ids. The expected states are
// built by hand here, field by field, not by the checker.
#include <gtest/gtest.h>

#include <functional>
#include <vector>

#include "validator/state_table.h"

namespace framecert {
namespace {

// One state per way a field can differ from the function-entry state, each a single change.
std::vector<CfiState> one_field_changed() {
  std::vector<std::function<void(CfiState&)>> edits = {
      [](CfiState& s) { s.cfa.base = cfi::kBp; },
      [](CfiState& s) { s.cfa.offset = 16; },
      [](CfiState& s) { s.cfa.offset = -2147483647 - 1; },  // the extremes of an int survive the encoding
      [](CfiState& s) { s.cfa.offset = 2147483647; },
      [](CfiState& s) { s.stack_size = 24; },
      [](CfiState& s) { s.drap_reg = 10; },
      [](CfiState& s) { s.drap_offset = -16; },
      [](CfiState& s) { s.bp_scratch = true; },
      [](CfiState& s) { s.drap = true; },
      [](CfiState& s) { s.type = cfi::kHintRegs; },
      [](CfiState& s) { s.end = true; },
      [](CfiState& s) { s.bp_zero = true; },
      [](CfiState& s) {
        s.regs[cfi::kBp] = {cfi::kCfa, -16};
      },
      [](CfiState& s) {
        s.regs[cfi::kRa] = {cfi::kUndefined, 0};
      },  // back to the empty register
      [](CfiState& s) {
        s.regs[15] = {cfi::kCfa, -56};
      },
      [](CfiState& s) {
        s.vals[cfi::kSp] = {cfi::kCfa, -8};
      },
      [](CfiState& s) {
        s.vals[3] = {cfi::kSpIndirect, 8};
      },
  };
  std::vector<CfiState> out;
  for (auto& edit : edits) {
    CfiState s = CfiState::function_entry();
    edit(s);
    out.push_back(s);
  }
  return out;
}

TEST(StateTable, EveryStateComesBackExactly) {
  StateTable table;
  const std::vector<CfiState> states = one_field_changed();
  std::vector<int32_t> ids;
  for (const CfiState& s : states) ids.push_back(table.intern(s));
  for (size_t k = 0; k < states.size(); ++k) EXPECT_TRUE(table[ids[k]] == states[k]) << "state " << k;
}

TEST(StateTable, EqualStatesShareAnIdAndDifferentStatesDoNot) {
  StateTable table;
  const std::vector<CfiState> states = one_field_changed();
  const int32_t entry = table.intern(CfiState::function_entry());
  EXPECT_EQ(table.intern(CfiState::function_entry()), entry);
  std::vector<int32_t> ids;
  for (const CfiState& s : states) ids.push_back(table.intern(s));
  for (size_t a = 0; a < ids.size(); ++a) {
    EXPECT_NE(ids[a], entry) << "state " << a << " taken for the entry state";
    for (size_t b = a + 1; b < ids.size(); ++b) EXPECT_NE(ids[a], ids[b]) << "states " << a << " and " << b;
  }
  for (size_t k = 0; k < states.size(); ++k) EXPECT_EQ(table.intern(states[k]), ids[k]);
  EXPECT_EQ(table.size(), states.size() + 1);
}

TEST(StateTable, AMillionStatesThroughSeveralRehashes) {
  // A run of pushes: each state one word deeper. Ids stay dense and every state is found again.
  StateTable table;
  CfiState s = CfiState::function_entry();
  constexpr int kStates = 1 << 20;
  for (int k = 0; k < kStates; ++k) {
    s.stack_size = 8 * k;
    s.cfa.offset = 8 + 8 * k;
    ASSERT_EQ(table.intern(s), k);
  }
  for (int k = 0; k < kStates; k += 4099) {
    s.stack_size = 8 * k;
    s.cfa.offset = 8 + 8 * k;
    EXPECT_EQ(table.intern(s), k);
    EXPECT_TRUE(table[k] == s);
  }
  EXPECT_EQ(table.size(), static_cast<size_t>(kStates));
}

}  // namespace
}  // namespace framecert

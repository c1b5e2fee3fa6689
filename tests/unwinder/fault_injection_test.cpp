// Fault injection in the test suite: smaller runs of the stress binary's trials on frozen programs.
#include <gtest/gtest.h>

#include "tests/unwinder/fault_injection.h"
#include "tests/unwinder/process_util.h"

namespace framecert::testing {
namespace {

TEST(FaultInjection, CorruptedStacksNeverWalkReliablyToAWrongTrace) {
  Child child(std::string(FRAMECERT_PROGRAMS_DIR) + "/fs_threads");
  ASSERT_TRUE(child.ready());
  ASSERT_TRUE(child.wait_parked(5, 6));
  std::shared_ptr<MetadataCache> cache;
  auto snap = snapshot_process(child.pid(), validator_metadata(cache));
  ASSERT_TRUE(snap) << snap.error();
  ASSERT_GE(snap->threads.size(), 5u);
  FaultStats st = run_fault_trials(*snap, 1500, 42);
  EXPECT_EQ(st.trials, 1500u);
  for (const std::string& f : st.false_reliables) ADD_FAILURE() << "false reliable: " << f;
  EXPECT_GT(st.unreliable, 100u);  // the corruption does bite
  EXPECT_TRUE(child.running_free());
}

// The same on fc_frame_locals: VLA frames (no exact sizes, so the skipped-frame scans do the work) that keep
// their own frame and return address in self slots the scans pass over. Corrupting the slots, the links or
// the return addresses must never turn into a reliable wrong trace.
TEST(FaultInjection, SelfSlotsNeverHideACorruption) {
  Child child(std::string(FRAMECERT_PROGRAMS_DIR) + "/fc_frame_locals");
  ASSERT_TRUE(child.ready());
  ASSERT_TRUE(child.wait_parked(1, 1));
  std::shared_ptr<MetadataCache> cache;
  auto snap = snapshot_process(child.pid(), validator_metadata(cache));
  ASSERT_TRUE(snap) << snap.error();
  ASSERT_EQ(snap->threads.size(), 1u) << "the one thread walks reliably";
  FaultStats st = run_fault_trials(*snap, 3000, 7);
  for (const std::string& f : st.false_reliables) ADD_FAILURE() << "false reliable: " << f;
  EXPECT_GT(st.reasons["frame-skipped"], 0u) << "the scans do run over these frames";
}

}  // namespace
}  // namespace framecert::testing

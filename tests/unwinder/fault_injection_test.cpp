// Fault injection in the test suite: a smaller run of the stress binary's trials on a frozen fs_threads.
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

}  // namespace
}  // namespace framecert::testing

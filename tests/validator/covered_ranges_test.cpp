// CoveredRanges answers "does some range hold this offset" by binary search over merged ranges; the answer
// must be the one a scan of every range gives (the code it replaced), on nested, overlapping, touching and
// empty-gap ranges.
#include "validator/covered_ranges.h"

#include <gtest/gtest.h>

#include <random>
#include <utility>
#include <vector>

namespace framecert {
namespace {

bool scan(const std::vector<std::pair<uint64_t, uint64_t>>& ranges, uint64_t offset) {
  for (auto [begin, end] : ranges)
    if (offset >= begin && offset < end) return true;
  return false;
}

TEST(CoveredRangesTest, NothingIsCoveredWithoutRanges) {
  CoveredRanges none;
  none.done();
  EXPECT_FALSE(none.covers(0));
  EXPECT_FALSE(none.covers(UINT64_MAX));
}

TEST(CoveredRangesTest, EndsAreExclusiveAndTouchingRangesJoin) {
  CoveredRanges r;
  r.add(20, 30);
  r.add(10, 20);  // touches the first: [10, 30)
  r.add(40, 41);
  r.add(12, 15);  // nested
  r.done();
  EXPECT_FALSE(r.covers(9));
  EXPECT_TRUE(r.covers(10));
  EXPECT_TRUE(r.covers(20));
  EXPECT_TRUE(r.covers(29));
  EXPECT_FALSE(r.covers(30));
  EXPECT_FALSE(r.covers(39));
  EXPECT_TRUE(r.covers(40));
  EXPECT_FALSE(r.covers(41));
}

TEST(CoveredRangesTest, AgreesWithAScanOfEveryRange) {
  std::mt19937_64 rng(7);
  for (int round = 0; round < 200; ++round) {
    std::vector<std::pair<uint64_t, uint64_t>> ranges;
    CoveredRanges r;
    const int n = static_cast<int>(rng() % 12);
    for (int k = 0; k < n; ++k) {
      const uint64_t begin = rng() % 100, end = begin + 1 + rng() % 15;
      ranges.emplace_back(begin, end);
      r.add(begin, end);
    }
    r.done();
    for (uint64_t offset = 0; offset < 130; ++offset)
      ASSERT_EQ(r.covers(offset), scan(ranges, offset)) << "round " << round << " offset " << offset;
  }
}

}  // namespace
}  // namespace framecert

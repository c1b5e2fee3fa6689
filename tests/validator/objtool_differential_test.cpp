// Differential test against the reference objtool 6.1 on compiler output: every C fixture compiled at
// -O0/-O2/-Os/-O3, with and without -fomit-frame-pointer. framecert must flag exactly the functions
// objtool flags, and objtool's finding for each must be among framecert's.
#include <gtest/gtest.h>

#include <filesystem>

#include <fmt/format.h>

#include "fixture_expectations.h"

namespace framecert::testing {
namespace {

namespace fs = std::filesystem;

std::vector<std::string> matrix_objects() {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(std::string(FIXTURE_OUT) + "/matrix"))
    if (e.path().extension() == ".o") out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

// The function a finding text is about: "f+0x1: ..." / "f() falls through ..." / ".text: ...".
std::string subject(const std::string& text) {
  auto end = text.find_first_of("+(:");
  return text.substr(0, end);
}

std::set<std::string> subjects(const std::multiset<std::string>& findings) {
  std::set<std::string> out;
  for (const auto& f : findings) out.insert(subject(f));
  return out;
}

class CompilerOutput : public ::testing::TestWithParam<std::string> {};

TEST_P(CompilerOutput, FlagsTheSameFunctionsAsObjtool) {
  const std::string object = std::string(FIXTURE_OUT) + "/matrix/" + GetParam();
  const auto theirs = objtool_findings(object);
  const auto ours = framecert_findings(object);
  EXPECT_EQ(subjects(ours), subjects(theirs));
  for (const auto& t : theirs) EXPECT_TRUE(ours.count(t)) << "objtool's finding missing from framecert's: " << t;
}

INSTANTIATE_TEST_SUITE_P(Matrix, CompilerOutput, ::testing::ValuesIn(matrix_objects()),
                         [](const ::testing::TestParamInfo<std::string>& param) { return test_name(param.param); });

TEST(CompilerOutputMatrix, HasEveryFlagCombinationOfEveryCFixture) {
  size_t c_fixtures = 0;
  for (const auto& n : fixture_names()) c_fixtures += n.ends_with(".c");
  EXPECT_GE(c_fixtures, 5u);
  EXPECT_EQ(matrix_objects().size(), c_fixtures * 8);
}

}  // namespace
}  // namespace framecert::testing

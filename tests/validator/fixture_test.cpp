// Every fixture's stated expectations hold for framecert, and (where the fixture does not document a
// deliberate difference) for the reference objtool too — so the fixtures themselves are verified.
#include <gtest/gtest.h>

#include "fixture_expectations.h"

namespace framecert::testing {
namespace {

class Fixture : public ::testing::TestWithParam<std::string> {};

std::string joined(const std::multiset<std::string>& s) {
  std::string out;
  for (const auto& x : s) out += "\n    " + x;
  return out.empty() ? " (none)" : out;
}

TEST_P(Fixture, FramecertReportsExactlyTheExpectedFindings) {
  const auto ex = read_expectations(GetParam());
  const auto got = framecert_findings(fixture_object(GetParam()));
  if (ex.in_function.empty()) {
    EXPECT_EQ(got, ex.framecert) << "framecert:" << joined(got) << "\nexpected:" << joined(ex.framecert);
  }
  for (const auto& [func, message] : ex.in_function) {
    bool found = false;
    for (const auto& g : got) found |= g.starts_with(func + "+0x") && g.ends_with(": " + message);
    EXPECT_TRUE(found) << "no '" << message << "' in " << func << "; framecert:" << joined(got);
  }
}

TEST_P(Fixture, ReferenceObjtoolAgreesWithTheFixture) {
  const auto ex = read_expectations(GetParam());
  const auto got = objtool_findings(fixture_object(GetParam()));
  if (!ex.in_function.empty()) {
    for (const auto& [func, message] : ex.in_function) {
      bool found = false;
      for (const auto& g : got) found |= g.starts_with(func) && g.ends_with(": " + message);
      EXPECT_TRUE(found) << "objtool has no '" << message << "' in " << func << ":" << joined(got);
    }
    return;
  }
  EXPECT_EQ(got, ex.objtool) << "objtool:" << joined(got) << "\nfixture says:" << joined(ex.objtool);
}

INSTANTIATE_TEST_SUITE_P(Validator, Fixture, ::testing::ValuesIn(fixture_names()),
                         [](const ::testing::TestParamInfo<std::string>& param) { return test_name(param.param); });

TEST(FixtureSet, CoversEveryRuleWithAtLeastFortyFixtures) {
  const auto names = fixture_names();
  EXPECT_GE(names.size(), 40u);
  std::multiset<std::string> all;
  for (const auto& n : names) {
    auto ex = read_expectations(n);
    for (const auto& t : ex.framecert) all.insert(t);
    for (const auto& [f, m] : ex.in_function) all.insert(m);
  }
  for (const char* rule :
       {"call without frame pointer save/setup", "return with modified stack frame",
        "sibling call from callable instruction with modified stack frame", "BP used as a scratch register",
        "stack state mismatch", "falls through to next function", "unreachable instruction",
        "unsupported instruction in callable function", "undefined stack state",
        "unsupported stack pointer realignment", "unexpected end of section", "unannotated intra-function call"}) {
    bool covered = false;
    for (const auto& t : all) covered |= t.find(rule) != std::string::npos;
    EXPECT_TRUE(covered) << "no fixture expects: " << rule;
  }
}

}  // namespace
}  // namespace framecert::testing

// Reading a fixture's stated expectations (tests/fixtures/validator: inline `# expect:` lines), and running the
// tools whose findings are compared with them.
#pragma once

#include <set>
#include <string>
#include <vector>

namespace framecert::testing {

struct FixtureExpectations {
  std::multiset<std::string> framecert;  // finding texts framecert must report, exactly
  std::multiset<std::string> objtool;    // finding texts objtool 6.1 reports (same as framecert unless differs)
  std::vector<std::pair<std::string, std::string>> in_function;  // expect-in: (function, message)
  bool objtool_differs = false;
};

std::vector<std::string> fixture_names();                // every fixture's file name, e.g. "bad_call_no_frame.S"
std::string fixture_object(const std::string& fixture);  // its compiled object
// Parses the expectations; `# expect:` lines are resolved to FUNC+0xOFF through the object's line table.
FixtureExpectations read_expectations(const std::string& fixture);
// Finding texts (after "warning: objtool: ") the reference objtool prints for `object`.
std::multiset<std::string> objtool_findings(const std::string& object);
std::multiset<std::string> framecert_findings(const std::string& object);
// A GoogleTest parameter name for a file name (letters and digits only).
std::string test_name(const std::string& file);

}  // namespace framecert::testing

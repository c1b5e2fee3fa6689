// Planted for the lint tests: a use after move, the kind of bug .clang-tidy's checks exist to find.
#include <string>
#include <utility>
#include <vector>

std::size_t planted_use_after_move(std::string s) {
  std::vector<std::string> out;
  out.push_back(std::move(s));
  return s.size() + out.size();
}

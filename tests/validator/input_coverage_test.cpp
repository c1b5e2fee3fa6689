// Issue 13, "nothing unchecked is ever called clean": objects whose code used to be skipped without a
// word. Each is generated at build time (tests/validator/CMakeLists.txt) and compared with the reference
// objtool 6.1 where objtool has the rule.
#include <elf.h>
#include <gtest/gtest.h>

#include <fstream>

#include <fmt/format.h>

#include "fixture_expectations.h"

namespace framecert::testing {
namespace {

std::string generated(const char* name) { return fmt::format("{}/{}", GENERATED_OUT, name); }

// The section count of an object, through the extended count in section 0 when e_shnum is 0.
uint64_t section_count(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  Elf64_Ehdr eh{};
  in.read(reinterpret_cast<char*>(&eh), sizeof eh);
  if (eh.e_shnum != 0) return eh.e_shnum;
  Elf64_Shdr first{};
  in.seekg(static_cast<std::streamoff>(eh.e_shoff));
  in.read(reinterpret_cast<char*>(&first), sizeof first);
  return first.sh_size;
}

std::string joined(const std::multiset<std::string>& s) {
  std::string out;
  for (const auto& x : s) out += "\n    " + x;
  return out.empty() ? " (none)" : out;
}

// Symbols in sections numbered past 0xff00 carry SHN_XINDEX; their real section is in SYMTAB_SHNDX.
// Reading st_shndx alone made every such function look undefined: f65500's bug went unseen.
TEST(InputCoverage, FunctionsInSectionsPastIndex0xff00AreChecked) {
  const std::string obj = generated("many_sections.o");
  ASSERT_GT(section_count(obj), uint64_t{SHN_LORESERVE}) << obj;
  const auto ours = framecert_findings(obj);
  const auto theirs = objtool_findings(obj);
  EXPECT_EQ(ours, std::multiset<std::string>{"f65500+0x0: call without frame pointer save/setup"}) << joined(ours);
  EXPECT_EQ(ours, theirs) << "framecert:" << joined(ours) << "\nobjtool:" << joined(theirs);
}

}  // namespace
}  // namespace framecert::testing

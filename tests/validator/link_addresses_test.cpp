// Metadata of a combined relocatable object, addressed like an image linked from the same code in
// another order (the vmlinux.o / vmlinux situation).
#include <gtest/gtest.h>

#include "validator/elf_file.h"
#include "validator/link_addresses.h"
#include "validator/validator.h"

namespace framecert {
namespace {

const std::string kCombined = std::string(LINK_OUT) + "/combined.o";
const std::string kLinked = std::string(LINK_OUT) + "/linked";

uint64_t image_address(const std::string& name) {
  auto elf = ElfFile::open(kLinked);
  EXPECT_TRUE(elf.has_value());
  for (const auto& s : (*elf)->symbols())
    if (s.name == name) return s.value;
  ADD_FAILURE() << name << " not in the image";
  return 0;
}

TEST(LinkAddresses, EveryFunctionIsFoundAtItsAddressInTheImage) {
  auto report = check_object(kCombined, CheckOptions{});
  ASSERT_TRUE(report.has_value()) << report.error();
  LinkReport link;
  auto placed = place_at_link_addresses(report->metadata, kCombined, kLinked, &link);
  ASSERT_TRUE(placed.has_value()) << placed.error();
  EXPECT_TRUE(placed->linked);
  EXPECT_GE(link.runs, 2u) << "the two parts moved by different amounts";
  EXPECT_EQ(link.functions_unplaced, 0u);
  for (const char* name : {"first_leaf", "first_caller", "second_work", "second_entry", "_start"}) {
    const uint64_t at = image_address(name);
    const FunctionEntry* f = placed->function_at_address(at);
    ASSERT_NE(f, nullptr) << name;
    EXPECT_EQ(f->name, name);
    // The state at the function's first instruction is the entry state.
    auto state = placed->state_at_address(at);
    ASSERT_TRUE(state.has_value()) << name;
    EXPECT_EQ(state->cfa_base, CfaBase::Sp);
    EXPECT_EQ(state->cfa_offset, 8);
  }
  // first_caller's calls have a frame: their return addresses are call sites with a valid frame.
  const uint64_t caller = image_address("first_caller");
  size_t calls = 0;
  for (uint64_t pc = caller; pc < caller + 64; ++pc)
    if (auto c = placed->call_site_at_address(pc)) {
      ++calls;
      EXPECT_TRUE(c->has(metadata::kCallFrameValid));
    }
  EXPECT_EQ(calls, 2u);
}

TEST(LinkAddresses, RefusesAnImageWithOtherCode) {
  auto report = check_object(kCombined, CheckOptions{});
  ASSERT_TRUE(report.has_value());
  // The combined object is not a linked image, and an unrelated image shares none of its functions.
  EXPECT_FALSE(place_at_link_addresses(report->metadata, kCombined, kCombined, nullptr).has_value());
  auto unrelated = place_at_link_addresses(report->metadata, kCombined, "/bin/true", nullptr);
  ASSERT_TRUE(unrelated.has_value());
  EXPECT_TRUE(unrelated->functions.empty());
}

}  // namespace
}  // namespace framecert

// Metadata of a combined relocatable object, addressed like an image linked from the same code in
// another order (the vmlinux.o / vmlinux situation).
#include <gtest/gtest.h>

#include <map>
#include <set>
#include <string>

#include "validator/elf_file.h"
#include "validator/link_addresses.h"
#include "validator/non_standard.h"
#include "validator/validator.h"

namespace framecert {
namespace {

const std::string kCombined = std::string(LINK_OUT) + "/combined.o";
const std::string kLinked = std::string(LINK_OUT) + "/linked";
const std::string kNonStandard = std::string(LINK_OUT) + "/nonstd.o";

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

// STACK_FRAME_NON_STANDARD: one decoder for the validator and module placement, against a function symbol
// and against a section symbol plus offset (a local function).
TEST(NonStandard, BothKindsOfEntryNameTheirFunctions) {
  auto elf = ElfFile::open(kNonStandard);
  ASSERT_TRUE(elf.has_value()) << elf.error();
  auto entries = read_non_standard(**elf);
  ASSERT_EQ(entries.size(), 2u);
  EXPECT_TRUE(entries[0].function_symbol);
  EXPECT_FALSE(entries[1].function_symbol);
  EXPECT_EQ(entries[1].offset, 1u);
  EXPECT_EQ(non_standard_function_names(**elf), (std::set<std::string>{"nonstd_global", "nonstd_local"}));
}

TEST(LoadAddresses, ModuleSectionsSymbolsAndNonStandardFunctionsArePlaced) {
  auto report = check_object(kNonStandard, CheckOptions{});
  ASSERT_TRUE(report.has_value()) << report.error();
  FrameTable table = report->metadata;
  // The flags must come from placement itself (a module's link drops .discard.*).
  for (FunctionEntry& f : table.functions) f.flags &= ~metadata::kFuncNonStandard;
  const uint64_t text = 0xffffffffc0001000ull;
  PlacedModule m = place_at_load_addresses(table, kNonStandard, {kNonStandard, "/nonexistent.o"}, {{".text", text}});
  EXPECT_TRUE(m.table.linked);
  ASSERT_EQ(m.warnings.size(), 1u) << "the unreadable object";
  ASSERT_EQ(m.ranges.size(), 1u);
  EXPECT_EQ(m.ranges[0].first, text);
  EXPECT_EQ(m.ranges[0].second, text + 4);
  std::map<std::string, uint64_t> at;
  for (const Symbol& s : m.symbols) at[s.name] = s.address;
  EXPECT_EQ(at["nonstd_global"], text);
  EXPECT_EQ(at["nonstd_local"], text + 1);
  EXPECT_EQ(at["plain"], text + 3);
  std::set<std::string> names;
  for (const FunctionEntry& f : m.table.functions) {
    names.insert(f.name);
    EXPECT_EQ(f.has(metadata::kFuncNonStandard), f.name != "plain") << f.name;
  }
  EXPECT_TRUE(names.count("plain") && names.count("nonstd_global")) << "the metadata lists the functions";
  // A section the module did not load describes nothing.
  PlacedModule none = place_at_load_addresses(table, kNonStandard, {}, {});
  EXPECT_TRUE(none.ranges.empty());
  EXPECT_TRUE(none.symbols.empty());
}

}  // namespace
}  // namespace framecert

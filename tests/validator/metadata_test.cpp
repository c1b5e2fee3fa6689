// Frame metadata: what the validator records for known fixtures, the file round trip, and the reader's
// refusal of damaged files.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "fixture_expectations.h"
#include "unwinder/frame_table.h"
#include "validator/validator.h"

namespace framecert::testing {
namespace {

namespace md = metadata;

FrameTable metadata_of(const std::string& fixture) {
  auto r = check_object(fixture_object(fixture), CheckOptions{});
  EXPECT_TRUE(r.has_value()) << (r ? "" : r.error());
  return r ? r->metadata : FrameTable{};
}

FrameState state(const FrameTable& t, uint64_t offset) { return t.state_at({0, offset}).value_or(FrameState{}); }

TEST(Metadata, StandardFrameStatesAndCallSites) {
  FrameTable t = metadata_of("ok_std_frame.S");
  ASSERT_EQ(t.sections.size(), 1u);
  EXPECT_FALSE(t.linked);
  // push %rbp; mov %rsp,%rbp; call; mov; call; pop %rbp; ret
  EXPECT_EQ(state(t, 0), (FrameState{CfaBase::Sp, 8, 0, md::kBpUnchanged}));
  EXPECT_EQ(state(t, 1), (FrameState{CfaBase::Sp, 16, -16, md::kBpUnchanged | md::kBpSaved}));
  EXPECT_EQ(state(t, 4), (FrameState{CfaBase::Bp, 16, -16, md::kBpIsFrame | md::kBpSaved}));
  EXPECT_EQ(state(t, 0x12), (FrameState{CfaBase::Sp, 8, 0, md::kBpUnchanged}));
  ASSERT_EQ(t.sections[0].calls.size(), 2u);
  for (const auto& c : t.sections[0].calls) EXPECT_TRUE(c.has(md::kCallFrameValid));
  ASSERT_EQ(t.functions.size(), 1u);
  EXPECT_TRUE(t.functions[0].has(md::kFuncCertified));
}

TEST(Metadata, RbpOverwrittenAfterSetupIsNoFrameAtTheCall) {
  FrameTable t = metadata_of("differs_bp_overwritten_before_call.S");
  const auto& calls = t.sections.at(0).calls;
  ASSERT_EQ(calls.size(), 2u);
  EXPECT_FALSE(calls[0].has(md::kCallFrameValid)) << "rbp holds %rdi, not the frame";
  EXPECT_FALSE(calls[1].has(md::kCallFrameValid));
  EXPECT_TRUE(calls[1].has(md::kCallBpZero)) << "xor %ebp,%ebp before the second call";
}

TEST(Metadata, FramelessCallIsRecordedAsNoFrame) {
  FrameTable t = metadata_of("bad_call_no_frame.S");
  bool any_call = false;
  for (const auto& s : t.sections)
    for (const auto& c : s.calls) {
      any_call = true;
      EXPECT_FALSE(c.has(md::kCallFrameValid));
    }
  EXPECT_TRUE(any_call);
  ASSERT_EQ(t.functions.size(), 2u);
  for (const auto& f : t.functions) {
    if (f.name == "callee") {  // a clean leaf beside the bad caller stays certified
      EXPECT_TRUE(f.has(md::kFuncCertified));
      EXPECT_EQ(f.finding, "");
    } else {
      EXPECT_EQ(f.name, "f");
      EXPECT_FALSE(f.has(md::kFuncCertified));
      EXPECT_EQ(f.finding, "f+0x5: call without frame pointer save/setup");
    }
  }
}

TEST(Metadata, NonStandardAndColdParts) {
  FrameTable t = metadata_of("c_cold_split.c");
  bool cold = false;
  for (const auto& f : t.functions)
    if (f.has(md::kFuncCold)) {
      cold = true;
      EXPECT_FALSE(f.parent.empty());
    }
  EXPECT_TRUE(cold) << "c_cold_split.c should produce a .cold part at -O2";
}

TEST(Metadata, EveryFixtureRoundTripsThroughTheFile) {
  const auto dir = std::filesystem::temp_directory_path() / "framecert-metadata-test";
  std::filesystem::create_directories(dir);
  for (const auto& name : fixture_names()) {
    auto r = check_object(fixture_object(name), CheckOptions{});
    ASSERT_TRUE(r.has_value()) << name;
    const std::string path = (dir / (name + ".fcmeta")).string();
    ASSERT_TRUE(write_frame_table(r->metadata, path).has_value());
    auto back = read_frame_table(path);
    ASSERT_TRUE(back.has_value()) << back.error();
    EXPECT_EQ(*back, r->metadata) << name;
  }
  std::filesystem::remove_all(dir);
}

TEST(Metadata, ReaderRejectsDamagedFiles) {
  FrameTable t = metadata_of("ok_std_frame.S");
  const std::vector<uint8_t> good = serialize_frame_table(t);
  ASSERT_TRUE(parse_frame_table(good).has_value());
  // Every truncation.
  for (size_t n = 0; n < good.size(); ++n)
    EXPECT_FALSE(parse_frame_table(std::span(good.data(), n)).has_value()) << "truncated to " << n;
  // Every single-byte corruption is caught (magic, version, sizes, or the checksum).
  for (size_t i = 0; i < good.size(); ++i) {
    auto bad = good;
    bad[i] ^= 0x5a;
    auto r = parse_frame_table(bad);
    EXPECT_FALSE(r.has_value()) << "byte " << i << " flipped and still accepted";
  }
  auto wrong_version = good;
  wrong_version[8] = 2;
  auto r = parse_frame_table(wrong_version);
  ASSERT_FALSE(r.has_value());
  EXPECT_NE(r.error().find("unsupported metadata version 2"), std::string::npos) << r.error();
  EXPECT_FALSE(read_frame_table("/nonexistent/file.fcmeta").has_value());
}

// Certified means checked whole. objtool reports only the file's first unreachable instruction (in f);
// g's dead code is not reported, but g was not checked whole either, so it must not be certified.
TEST(Metadata, AFunctionWithCodeNoPathReachedIsNotCertified) {
  FrameTable t = metadata_of("bad_unreachable_first_only.S");
  ASSERT_EQ(t.functions.size(), 2u);
  for (const auto& f : t.functions) {
    EXPECT_FALSE(f.has(md::kFuncCertified)) << f.name;
    EXPECT_NE(f.finding.find("unreachable instruction"), std::string::npos) << f.name << ": " << f.finding;
  }
}

// A position-independent switch table followed case by case: the function is certified only because
// every case was reached (reading the 4-byte entries as 8-byte addresses reaches case 0 alone).
TEST(Metadata, EveryCaseOfAPcRelativeSwitchTableIsChecked) {
  FrameTable t = metadata_of("ok_pic_jump_table.S");
  ASSERT_EQ(t.functions.size(), 1u);
  EXPECT_TRUE(t.functions[0].has(md::kFuncCertified)) << t.functions[0].finding;
  EXPECT_EQ(t.sections.at(0).calls.size(), 3u) << "the calls of cases 0, 1 and 3";
}

}  // namespace
}  // namespace framecert::testing

// Replays the offline golden cases (offline_case.h): every saved thread must walk to exactly the saved
// frames and verdict, with no process, no ptrace and no validator involved.
#include <gtest/gtest.h>

#include <filesystem>

#include "tests/unwinder/offline_case.h"
#include "unwinder/unwind.h"

namespace framecert::testing {
namespace {

namespace fs = std::filesystem;

const fs::path kOffline = fs::path(FRAMECERT_SOURCE_DIR) / "tests/unwinder/offline";

TEST(Offline, GoldenCasesReplayExactly) {
  size_t cases = 0;
  bool saw_reliable = false, saw_unreliable = false;
  for (const auto& program : fs::directory_iterator(kOffline)) {
    if (!program.is_directory()) continue;
    const std::string name = program.path().filename().string();
    auto table = read_frame_table((program.path() / (name + ".fcmeta")).string());
    ASSERT_TRUE(table) << table.error();
    auto metadata = std::make_shared<const FrameTable>(std::move(*table));
    FakeMemory text;
    auto code = offline_code_map((program.path() / (name + ".elf")).string(), metadata, text);
    ASSERT_TRUE(code) << code.error();
    for (const auto& dir : fs::directory_iterator(program.path())) {
      if (!dir.is_directory()) continue;
      SCOPED_TRACE(dir.path().string());
      auto c = read_offline_case(dir.path().string());
      ASSERT_TRUE(c) << c.error();
      ++cases;
      FakeMemory mem = text;
      mem.map_bytes(c->stack_address, c->stack.data(), c->stack.size());
      Unwind u = unwind(WalkContext{mem, *code, c->bounds, {}}, c->regs);
      const Trace& t = u.trace;
      EXPECT_EQ(t.verdict.reliable, c->reliable) << t.verdict.detail;
      EXPECT_EQ(reason_name(t.verdict.reason), c->reason) << t.verdict.detail;
      EXPECT_EQ(t.verdict.frame, c->reason_frame) << t.verdict.detail;
      ASSERT_EQ(t.frames.size(), c->frames.size());
      for (size_t i = 0; i < t.frames.size(); ++i) {
        EXPECT_EQ(t.frames[i].pc, c->frames[i].pc) << "frame " << i;
        EXPECT_EQ(t.frames[i].symbol, c->frames[i].symbol) << "frame " << i;
        EXPECT_EQ(t.frames[i].offset, c->frames[i].offset) << "frame " << i;
        EXPECT_EQ(trust_name(t.frames[i].trust), c->frames[i].trust) << "frame " << i;
      }
      (c->reliable ? saw_reliable : saw_unreliable) = true;
      if (dir.path().filename() == "t1_top-forged-skip") {
        // Only the exact frame size exposes this forgery: without it the forged chain walks "reliably".
        WalkOptions o;
        o.check_frame_sizes = false;
        EXPECT_TRUE(unwind(WalkContext{mem, *code, c->bounds, o}, c->regs).trace.verdict.reliable);
      }
    }
  }
  EXPECT_GE(cases, 5u);
  EXPECT_TRUE(saw_reliable);
  EXPECT_TRUE(saw_unreliable);
}

}  // namespace
}  // namespace framecert::testing

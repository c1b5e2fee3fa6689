// The CFI oracle on a known call chain (chain.c): the chain runs for real once, its innermost function
// copies the stack; the copy, in a FakeMemory, is unwound by harness/cfi from the chain object's
// .debug_frame alone (relocated to where the functions run), and must give exactly the return addresses the
// functions saw — with frame pointers, and without them with rbp garbage or unknown. Where there is no CFI
// (an assembly function without .cfi directives) it must stop and say so, never guess.
#include <gtest/gtest.h>

#include <cstdint>
#include <optional>
#include <vector>

#include "harness/cfi/cfi_unwind.h"
#include "tests/cfi/chain.h"
#include "unwinder/memory_fake.h"

namespace framecert::cfi {
namespace {

template <typename F>
uint64_t faddr(F* f) {
  return reinterpret_cast<uint64_t>(reinterpret_cast<void*>(f));
}

struct Run {
  fc_cfi_capture cap{};
  std::vector<uint8_t> stack = std::vector<uint8_t>(1 << 16);
  FakeMemory mem;
};

std::unique_ptr<Run> run_chain(fc_cfi_fn fn) {
  auto r = std::make_unique<Run>();
  r->cap.stack = r->stack.data();
  r->cap.stack_cap = r->stack.size();
  fc_cfi_run(fn, &r->cap);
  EXPECT_GT(r->cap.stack_len, 0u);
  r->mem.map_bytes(r->cap.rsp, r->stack.data(), r->cap.stack_len);
  return r;
}

CfiCode fp_code() {
  CfiCode code;
  auto img = CfiImage::load_relocatable(FRAMECERT_CHAIN_FP, "chain_fp.o",
                                        {{".text.fp_leaf", faddr(fp_leaf)},
                                         {".text.fp_inner", faddr(fp_inner)},
                                         {".text.fp_mid", faddr(fp_mid)},
                                         {".text.fp_top", faddr(fp_top)},
                                         {".text.fp_top_nocfi", faddr(fp_top_nocfi)},
                                         {".text.fc_cfi_nocfi", faddr(fc_cfi_nocfi)}});
  EXPECT_TRUE(img) << img.error();
  if (img) code.add(std::move(*img));
  return code;
}

CfiCode nofp_code() {
  CfiCode code;
  auto img = CfiImage::load_relocatable(FRAMECERT_CHAIN_NOFP, "chain_nofp.o",
                                        {{".text.nofp_leaf", faddr(nofp_leaf)},
                                         {".text.nofp_inner", faddr(nofp_inner)},
                                         {".text.nofp_mid", faddr(nofp_mid)},
                                         {".text.nofp_top", faddr(nofp_top)}});
  EXPECT_TRUE(img) << img.error();
  if (img) code.add(std::move(*img));
  return code;
}

CfiStart start_of(const Run& r, std::optional<uint64_t> rbp) {
  CfiStart s;
  s.pc = r.cap.rip;
  s.regs[kRsp] = r.cap.rsp;
  s.regs[kRbp] = rbp;
  return s;
}

CfiStack stack_of(const Run& r) { return CfiStack{r.cap.rsp, r.cap.top, r.cap.top}; }

std::vector<uint64_t> pcs(const CfiTrace& t) {
  std::vector<uint64_t> out;
  for (const CfiFrame& f : t.frames) out.push_back(f.pc);
  return out;
}

// The truth: the innermost pc, then every return address the chain's functions saw, innermost first.
std::vector<uint64_t> truth(const Run& r) { return {r.cap.rip, r.cap.ra[0], r.cap.ra[1], r.cap.ra[2], r.cap.ra[3]}; }

void expect_consistent_cfas(const CfiTrace& t, uint64_t top) {
  for (size_t i = 0; i + 1 < t.frames.size(); ++i) {
    ASSERT_TRUE(t.frames[i].cfa) << "frame " << i;
    EXPECT_EQ(*t.frames[i].cfa, t.frames[i + 1].sp) << "frame " << i;
    EXPECT_GT(t.frames[i + 1].sp, t.frames[i].sp) << "frame " << i;
  }
  if (t.complete) {
    EXPECT_EQ(t.frames.back().sp, top);
  }
}

// Every frame an incomplete unwind reports is a true one (a prefix of the truth): never a guess.
void expect_prefix_of_truth(const CfiTrace& t, const std::vector<uint64_t>& want) {
  ASSERT_LE(t.frames.size(), want.size());
  for (size_t i = 0; i < t.frames.size(); ++i) EXPECT_EQ(t.frames[i].pc, want[i]) << "frame " << i;
}

TEST(CfiOracle, WithFramePointersExactFrames) {
  auto r = run_chain(fp_top);
  CfiCode code = fp_code();
  CfiTrace t = cfi_unwind(r->mem, code, start_of(*r, r->cap.rbp), stack_of(*r));
  EXPECT_TRUE(t.complete) << t.why;
  EXPECT_EQ(pcs(t), truth(*r));
  EXPECT_EQ(t.stopped_at, -1);
  expect_consistent_cfas(t, r->cap.top);
  ASSERT_EQ(t.frames.size(), 5u);
  EXPECT_EQ(t.frames[0].symbol.rfind("fp_leaf+", 0), 0u) << t.frames[0].symbol;
  EXPECT_EQ(t.frames[1].symbol.rfind("fp_inner+", 0), 0u) << t.frames[1].symbol;
  EXPECT_EQ(t.frames[2].symbol.rfind("fp_mid+", 0), 0u) << t.frames[2].symbol;
  EXPECT_EQ(t.frames[3].symbol.rfind("fp_top+", 0), 0u) << t.frames[3].symbol;
}

TEST(CfiOracle, WithoutFramePointersExactFramesWhateverRbpHolds) {
  auto r = run_chain(nofp_top);
  CfiCode code = nofp_code();
  for (std::optional<uint64_t> rbp :
       {std::optional<uint64_t>(r->cap.rbp), std::optional<uint64_t>(0xdeadbeefdeadbeefull),
        std::optional<uint64_t>(r->cap.rsp + 16), std::optional<uint64_t>()}) {
    CfiTrace t = cfi_unwind(r->mem, code, start_of(*r, rbp), stack_of(*r));
    EXPECT_TRUE(t.complete) << t.why;
    EXPECT_EQ(pcs(t), truth(*r));
    expect_consistent_cfas(t, r->cap.top);
  }
}

TEST(CfiOracle, FramePointerCodeWithGarbageRbpStopsWithoutGuessing) {
  auto r = run_chain(fp_top);
  CfiCode code = fp_code();
  for (std::optional<uint64_t> rbp : {std::optional<uint64_t>(0xdeadbeefdeadbeefull), std::optional<uint64_t>()}) {
    CfiTrace t = cfi_unwind(r->mem, code, start_of(*r, rbp), stack_of(*r));
    EXPECT_FALSE(t.complete);
    EXPECT_EQ(t.stopped_at, 0);
    EXPECT_NE(t.why.find("no truth at frame 0"), std::string::npos) << t.why;
    expect_prefix_of_truth(t, truth(*r));
  }
}

TEST(CfiOracle, NoCfiForAssemblyFunctionStops) {
  auto r = run_chain(fp_top_nocfi);
  CfiCode code = fp_code();
  CfiTrace t = cfi_unwind(r->mem, code, start_of(*r, r->cap.rbp), stack_of(*r));
  EXPECT_FALSE(t.complete);
  // Exactly the leaf and the return address into the assembly function; nothing past it.
  ASSERT_EQ(t.frames.size(), 2u) << t.why;
  EXPECT_EQ(t.frames[0].pc, r->cap.rip);
  EXPECT_EQ(t.frames[1].pc, r->cap.ra[0]);
  EXPECT_EQ(t.stopped_at, 1);
  EXPECT_NE(t.why.find("no truth at frame 1: no CFI for pc"), std::string::npos) << t.why;
  EXPECT_NE(t.why.find("fc_cfi_nocfi+"), std::string::npos) << t.why;
}

TEST(CfiOracle, UnreadableStackStops) {
  auto r = run_chain(nofp_top);
  CfiCode code = nofp_code();
  FakeMemory half;
  size_t keep = r->cap.stack_len / 2;
  half.map_bytes(r->cap.rsp, r->stack.data(), keep);
  CfiTrace t = cfi_unwind(half, code, start_of(*r, std::nullopt), stack_of(*r));
  EXPECT_FALSE(t.complete);
  EXPECT_NE(t.why.find("memory unreadable"), std::string::npos) << t.why;
  expect_prefix_of_truth(t, truth(*r));
}

TEST(CfiOracle, UnknownCodeStops) {
  auto r = run_chain(nofp_top);
  CfiCode none;
  CfiTrace t = cfi_unwind(r->mem, none, start_of(*r, r->cap.rbp), stack_of(*r));
  EXPECT_FALSE(t.complete);
  EXPECT_EQ(t.frames.size(), 1u);
  EXPECT_NE(t.why.find("in no known code"), std::string::npos) << t.why;
}

TEST(CfiOracle, EndOfStackIsRequired) {
  // A stack whose end lies elsewhere: the walk must not call itself complete when passing it.
  auto r = run_chain(nofp_top);
  CfiCode code = nofp_code();
  CfiStack s = stack_of(*r);
  s.end_cfa = r->cap.top - 8;
  CfiTrace t = cfi_unwind(r->mem, code, start_of(*r, std::nullopt), s);
  EXPECT_FALSE(t.complete);
  expect_prefix_of_truth(t, truth(*r));
}

TEST(CfiOracle, UnloadedSectionsNeverAnswer) {
  // Only the leaf's section is loaded: the leaf unwinds, its caller's code is unknown.
  auto r = run_chain(nofp_top);
  CfiCode code;
  auto img = CfiImage::load_relocatable(FRAMECERT_CHAIN_NOFP, "chain_nofp.o", {{".text.nofp_leaf", faddr(nofp_leaf)}});
  ASSERT_TRUE(img) << img.error();
  code.add(std::move(*img));
  CfiTrace t = cfi_unwind(r->mem, code, start_of(*r, std::nullopt), stack_of(*r));
  EXPECT_FALSE(t.complete);
  ASSERT_EQ(t.frames.size(), 2u) << t.why;
  EXPECT_EQ(t.stopped_at, 1);
  EXPECT_NE(t.why.find("in no known code"), std::string::npos) << t.why;
  expect_prefix_of_truth(t, truth(*r));
}

TEST(CfiOracle, CodeClaimedByTwoImagesIsNobodys) {
  // Two images claiming the same addresses (a module's stale section address reused by another module):
  // whose CFI answers would be a guess.
  auto r = run_chain(nofp_top);
  CfiCode code = nofp_code();
  auto again = CfiImage::load_relocatable(FRAMECERT_CHAIN_NOFP, "again.o", {{".text.nofp_leaf", faddr(nofp_leaf)}});
  ASSERT_TRUE(again) << again.error();
  code.add(std::move(*again));
  CfiTrace t = cfi_unwind(r->mem, code, start_of(*r, std::nullopt), stack_of(*r));
  EXPECT_FALSE(t.complete);
  EXPECT_EQ(t.frames.size(), 1u);
  EXPECT_NE(t.why.find("ambiguous"), std::string::npos) << t.why;
}

}  // namespace
}  // namespace framecert::cfi

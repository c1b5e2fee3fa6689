// Frame metadata: what the validator records for known fixtures, the file round trip, and the reader's
// refusal of damaged files.
#include <gtest/gtest.h>

#include <tuple>

#include <filesystem>
#include <fstream>
#include <optional>

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

// enter $32,$0 is push %rbp; mov %rsp,%rbp; sub $32,%rsp: the frame, with rbp holding it, right after it.
TEST(Metadata, EnterLevelZeroSetsUpTheFrame) {
  FrameTable t = metadata_of("differs_enter_frame.S");
  // f: enter; call; mov %rax,-8(%rbp); call; leave; ret
  EXPECT_EQ(state(t, 0), (FrameState{CfaBase::Sp, 8, 0, md::kBpUnchanged}));
  EXPECT_EQ(state(t, 4), (FrameState{CfaBase::Bp, 16, -16, md::kBpIsFrame | md::kBpSaved}));
  EXPECT_EQ(state(t, 0x12), (FrameState{CfaBase::Bp, 16, -16, md::kBpIsFrame | md::kBpSaved}));
  EXPECT_EQ(state(t, 0x13), (FrameState{CfaBase::Sp, 8, 0, md::kBpUnchanged}));
  const auto& calls = t.sections.at(0).calls;
  ASSERT_EQ(calls.size(), 3u);
  for (int k = 0; k < 2; ++k) {
    EXPECT_TRUE(calls[k].has(md::kCallFrameValid)) << k;
    // The exact frame size: return address, saved rbp and the 32 bytes enter reserved.
    EXPECT_TRUE(calls[k].has(md::kCallSpDepth) && calls[k].has(md::kCallBpDepth)) << k;
    EXPECT_EQ(calls[k].sp_depth, 48) << k;
    EXPECT_EQ(calls[k].bp_depth, 16) << k;
  }
  // g: enter $16,$1 (nesting level 1) is not modelled: no frame, and rbp holds something unknown.
  EXPECT_FALSE(calls[2].has(md::kCallFrameValid));
  EXPECT_FALSE(state(t, 0x18).has(md::kBpIsFrame));
  for (const auto& f : t.functions) EXPECT_EQ(f.has(md::kFuncCertified), f.name == "f") << f.name;
}

// _start: xor %ebp,%ebp; and $-16,%rsp; push; push; call main. No CFA rule after the realignment, but rbp
// known 0 there and at the call: the unwinder ends the stack on rbp = 0 (kBpZero, kCallBpZero).
TEST(Metadata, OutermostRealignmentKeepsRbpZero) {
  FrameTable t = metadata_of("differs_outermost_realign.S");
  EXPECT_EQ(state(t, 2), (FrameState{CfaBase::Sp, 8, 0, md::kBpZero}));
  for (uint64_t at : {6, 7, 8}) {
    const FrameState s = state(t, at);
    EXPECT_EQ(s.cfa_base, CfaBase::Other) << at;
    EXPECT_TRUE(s.has(md::kBpZero)) << at;
    EXPECT_FALSE(s.has(md::kEndOfStack)) << at << ": rbp = 0 ends the walk, checked at run time; no hint";
  }
  const auto& calls = t.sections.at(0).calls;
  ASSERT_EQ(calls.size(), 1u);
  EXPECT_TRUE(calls[0].has(md::kCallBpZero));
  EXPECT_FALSE(calls[0].has(md::kCallFrameValid));
  EXPECT_FALSE(calls[0].has(md::kCallSpDepth));
  ASSERT_EQ(t.functions.size(), 1u);
  EXPECT_TRUE(t.functions[0].has(md::kFuncCertified)) << t.functions[0].finding;
}

// The same realignment where rbp is not 0 on every path: no rbp = 0 after it, so nothing ends a walk there.
TEST(Metadata, RealignmentWithoutZeroedRbpProvesNothing) {
  FrameTable t = metadata_of("bad_realign_bp_not_zero.S");
  for (const auto& c : t.sections.at(0).calls) EXPECT_FALSE(c.has(md::kCallBpZero)) << c.return_offset;
  for (const auto& f : t.functions) EXPECT_FALSE(f.has(md::kFuncCertified)) << f.name;
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

// The exact stack depths at call sites (validator/call_depth.h), against the depths worked out by hand in
// the fixture's comments; and the direct call targets.
TEST(Metadata, CallSiteDepthsAreExactOrUnknown) {
  FrameTable t = metadata_of("ok_call_depths.S");
  ASSERT_EQ(t.sections.size(), 1u);
  for (const FunctionEntry& f : t.functions) EXPECT_TRUE(f.has(md::kFuncCertified)) << f.name << ": " << f.finding;
  struct Expect {
    uint64_t ret;
    std::optional<int32_t> sp, bp;
  };
  const Expect expected[] = {
      {0x0e, 48, 16},
      {0x15, 56, 16},
      {0x22, 24, 16},  // plain
      {0x32, 32, 16},
      {0x3a, std::nullopt, 16},
      {0x42, 16, 16},                      // alloca_fn: unknown after the alloca
      {0x51, std::nullopt, 16},            // realign
      {0x62, std::nullopt, 16},            // merge: 16 or 24
      {0x6d, std::nullopt, std::nullopt},  // indirect: no depths at all
  };
  const auto& calls = t.sections[0].calls;
  ASSERT_EQ(calls.size(), std::size(expected));
  for (size_t i = 0; i < calls.size(); ++i) {
    const CallSite& c = calls[i];
    const Expect& e = expected[i];
    EXPECT_EQ(c.return_offset, e.ret);
    EXPECT_EQ(c.has(md::kCallSpDepth), e.sp.has_value()) << std::hex << e.ret;
    EXPECT_EQ(c.has(md::kCallBpDepth), e.bp.has_value()) << std::hex << e.ret;
    if (e.sp) {
      EXPECT_EQ(c.sp_depth, *e.sp) << std::hex << e.ret;
    }
    if (e.bp) {
      EXPECT_EQ(c.bp_depth, *e.bp) << std::hex << e.ret;
    }
  }
  // Targets: ext_a is external (a symbol), local_leaf a label the assembler resolved, global_leaf a symbol
  // defined here (both section offsets); __fentry__ is rewritten at run time (unknown).
  EXPECT_EQ(calls[0].target.kind, CallTargetKind::Symbol);
  EXPECT_EQ(t.target_symbols.at(calls[0].target.ref), "ext_a");
  EXPECT_EQ(calls[1].target, (CallTarget{CallTargetKind::Section, 0, 0x70}));
  EXPECT_EQ(calls[2].target, (CallTarget{CallTargetKind::Section, 0, 0x71}));
  EXPECT_EQ(calls[8].target.kind, CallTargetKind::Unknown);
  // A relocatable object's section targets resolve once its sections are placed (as the guest walker does
  // for a module), and its symbol targets once the loader knows the names.
  EXPECT_FALSE(t.call_target(calls[1]).has_value());
  FrameTable placed = t;
  placed.linked = true;
  placed.sections[0].address = 0xffffffffc0001000;
  EXPECT_EQ(placed.call_target(calls[1]), 0xffffffffc0001070u);
  EXPECT_FALSE(placed.call_target(calls[0]).has_value());
  placed.resolve_symbol_targets([](const std::string& name) -> std::optional<uint64_t> {
    return name == "ext_a" ? std::optional<uint64_t>(0xffffffff81000000) : std::nullopt;
  });
  EXPECT_EQ(placed.call_target(placed.sections[0].calls[0]), 0xffffffff81000000u);
}

TEST(Metadata, SyscallSitesAreRecordedApartFromCalls) {
  FrameTable t = metadata_of("bad_syscall.S");
  ASSERT_EQ(t.sections.size(), 1u);
  // movl $60,%eax (5 bytes); syscall (2 bytes)
  ASSERT_EQ(t.sections[0].syscalls.size(), 1u);
  EXPECT_EQ(t.sections[0].syscalls[0], (SyscallSite{5, 7}));
  EXPECT_TRUE(t.syscall_before({0, 7}).has_value());
  EXPECT_FALSE(t.call_site({0, 7}).has_value()) << "a syscall is never a call that proves a return address";
}

// Issue 14: proven tail calls. Expected offsets read from the fixtures' own disassembly (objdump -dr).
TEST(Metadata, ProvenTailCallsAreRecordedWithTheirTargets) {
  // c_tail_calls.c at -O2: direct_tail jumps to local_target (a label the assembler resolved, .text+0x0) at
  // 0x16 and to the external ext_fn at 0x24; indirect_tail's `jmp *%rax` (0x50) has no known target.
  FrameTable t = metadata_of("c_tail_calls.c");
  const auto& tails = t.sections.at(0).tail_calls;
  ASSERT_EQ(tails.size(), 2u);
  EXPECT_EQ(tails[0], (TailCall{0x16, CallTarget{CallTargetKind::Section, 0, 0x0}}));
  EXPECT_EQ(tails[1].offset, 0x24u);
  ASSERT_EQ(tails[1].target.kind, CallTargetKind::Symbol);
  EXPECT_EQ(t.target_symbols.at(tails[1].target.ref), "ext_fn");
  // The conditional tail call of ok_cond_tail_call.S (jne helper, after popq %rbp) counts too.
  FrameTable cond = metadata_of("ok_cond_tail_call.S");
  ASSERT_EQ(cond.sections.at(0).tail_calls.size(), 1u);
  EXPECT_EQ(cond.sections[0].tail_calls[0].target, (CallTarget{CallTargetKind::Section, 0, 0x0}));
  // A sibling call made with the frame still set up proves nothing: no record.
  EXPECT_TRUE(metadata_of("bad_sibling_call_direct.S").sections.at(0).tail_calls.empty());
  // Placed like call targets, and found per function.
  FrameTable placed = t;
  placed.linked = true;
  placed.sections[0].address = 0x401000;
  placed.resolve_symbol_targets([](const std::string& name) -> std::optional<uint64_t> {
    return name == "ext_fn" ? std::optional<uint64_t>(0x402000) : std::nullopt;
  });
  EXPECT_EQ(placed.tail_call_targets({0, 0x10}), (std::vector<uint64_t>{0x401000, 0x402000}));
  EXPECT_TRUE(placed.tail_call_targets({0, 0x30}).empty());
  // Through the file and back.
  auto back = parse_frame_table(serialize_frame_table(t));
  ASSERT_TRUE(back) << back.error();
  EXPECT_EQ(back->sections.at(0).tail_calls, tails);
}

// Issue 14: self slots (validator/self_slots.h). Expected slots from ok_self_slots.S's own comments: the
// store's d(%rbp) with CFA = rbp + 16.
TEST(Metadata, SelfSlotsAreProvenStoresOfTheOwnFrameOrReturnAddress) {
  FrameTable t = metadata_of("ok_self_slots.S");
  auto slots_of = [&](const std::string& name) {
    for (const FunctionEntry& f : t.functions)
      if (f.name == name) return t.self_slots({f.section, f.offset});
    ADD_FAILURE() << "no function " << name;
    return std::vector<SelfSlot>{};
  };
  using metadata::SlotBase;
  using metadata::SlotKind;
  auto kinds = [](const std::vector<SelfSlot>& v) {
    std::vector<std::tuple<SlotKind, SlotBase, int32_t>> out;
    for (const SelfSlot& s : v) out.emplace_back(s.kind, s.base, s.slot_offset);
    return out;
  };
  using Slots = std::vector<std::tuple<SlotKind, SlotBase, int32_t>>;
  EXPECT_EQ(kinds(slots_of("fa_direct")), (Slots{{SlotKind::FrameAddress, SlotBase::Cfa, -24}}));
  EXPECT_EQ(kinds(slots_of("ra_copied")), (Slots{{SlotKind::ReturnAddress, SlotBase::Cfa, -32}}));
  // Through rsp after a realignment: placed from rsp at the calls.
  EXPECT_EQ(kinds(slots_of("realigned")),
            (Slots{{SlotKind::ReturnAddress, SlotBase::CallSp, 8}, {SlotKind::FrameAddress, SlotBase::CallSp, 16}}));
  for (const char* none : {"ra_changed", "ra_joined", "arg_not_ra", "caller_fp", "across_call", "jumps_anywhere"})
    EXPECT_TRUE(slots_of(none).empty()) << none;
  // Through the file and back.
  auto back = parse_frame_table(serialize_frame_table(t));
  ASSERT_TRUE(back) << back.error();
  EXPECT_EQ(back->sections.at(0).self_slots, t.sections.at(0).self_slots);
  EXPECT_EQ(t.sections.at(0).self_slots.size(), 4u);
}

// Issue 14: a call in an alternative's replacement returns into the original's bytes once patched in.
// Expected sites from ok_alt_replacement_calls.S's own comments (offsets from its objdump).
TEST(Metadata, CallsOfAlternativeReplacementsAreRecordedAtTheOriginal) {
  FrameTable t = metadata_of("ok_alt_replacement_calls.S");
  auto fn = [&](const std::string& name) -> const FunctionEntry& {
    for (const FunctionEntry& f : t.functions)
      if (f.name == name) return f;
    throw std::runtime_error("no function " + name);
  };
  // The original's bytes: push %rbp; mov %rsp,%rbp (4), then the 5 patched bytes: the call returns at +9.
  auto site = [&](const std::string& name) { return t.call_site({fn(name).section, fn(name).offset + 9}); };
  auto one = site("one_call");
  ASSERT_TRUE(one);
  EXPECT_TRUE(one->has(md::kCallFrameValid));
  EXPECT_EQ(one->target, (CallTarget{CallTargetKind::Section, 0, fn("fill_a").offset}));
  auto two = site("two_calls");
  ASSERT_TRUE(two);
  EXPECT_TRUE(two->has(md::kCallFrameValid));
  EXPECT_EQ(two->target.kind, CallTargetKind::Unknown);  // fill_a or fill_b, whichever the CPU picked
  auto own = site("own_call");  // the original's own call, as it was: patched at boot, so no target
  ASSERT_TRUE(own);
  EXPECT_EQ(own->target.kind, CallTargetKind::Unknown);
  EXPECT_EQ(t.sections[fn("own_call").section].calls.size(), 3u);  // not recorded twice
  EXPECT_FALSE(t.call_site({fn("too_long").section, fn("too_long").offset + 9}));
  // Through the file and back.
  auto back = parse_frame_table(serialize_frame_table(t));
  ASSERT_TRUE(back) << back.error();
  EXPECT_EQ(back->sections, t.sections);
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
  wrong_version[8] = 5;
  auto r = parse_frame_table(wrong_version);
  ASSERT_FALSE(r.has_value());
  EXPECT_NE(r.error().find("unsupported metadata version 5"), std::string::npos) << r.error();
  // A version-3 file (an old cache, or one handed explicitly): one line that says to regenerate it.
  wrong_version[8] = 3;
  r = parse_frame_table(wrong_version);
  ASSERT_FALSE(r.has_value());
  EXPECT_NE(r.error().find("unsupported metadata version 3 (this reader knows 4: written by an older framecert"),
            std::string::npos)
      << r.error();
  EXPECT_EQ(r.error().find('\n'), std::string::npos);
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

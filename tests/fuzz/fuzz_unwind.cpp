// libFuzzer target: the frame-pointer walk, the reliability judge and the metadata-only walk (unwind())
// over a fake address space whose registers, stack words, code bytes and frame metadata (rows, call sites,
// functions) all come from the input. Must never crash or hang, and checks the invariants that are cheap
// to state: a reliable verdict means every frame lies inside the stack bounds, strictly ascending; and in
// kernel mode (no user-space "rbp zeroed" end), without any end-of-stack hint in the metadata, a reliable
// trace ends exactly at the end frame.
//
// Input layout (little-endian, read front to back; bytes past the end read as 0):
//   u8 flags      bit0..2: skip check_call_targets / scan_for_skipped_frames / check_frame_sizes,
//                 bit3: end_frame set, bit4: stopped in a system call, bit5: no symbol table,
//                 bit6: kernel mode (WalkOptions::zeroed_rbp_ends_stack off)
//   u8 rows, u8 calls, u8 functions, u8 text_len
//   u16 rip, u16 rsp, u16 rbp (offsets: rip from kText, rsp/rbp from kStack; rbp 0 stays 0), u16 end_frame
//   rows      x (u16 offset, u8 cfa_base, i8 cfa_offset, i8 bp_offset, u8 flags)
//   calls     x (u16 return_offset, u8 flags: bits 0-5 the call-site flags, 6-7 the depths, 7 a target)
//   functions x (u16 offset, u16 size, u8 flags)
//   text_len code bytes at kText (the rest of the text is nop)
//   the rest: the stack image from kStack upwards (only those bytes are readable)
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

#include "tests/fuzz/fuzz_input.h"
#include "unwinder/code_map.h"
#include "unwinder/memory_fake.h"
#include "unwinder/unwind.h"

namespace {

using namespace framecert;

constexpr uint64_t kText = 0x1000;
constexpr uint64_t kTextSize = 0x400;
constexpr uint64_t kBare = 0x3000;  // a second executable image without metadata
constexpr uint64_t kBareSize = 0x100;
constexpr uint64_t kStack = 0x10000;
constexpr uint64_t kStackSize = 0x1000;

using fuzz::Reader;

[[noreturn]] void violated(const char* walk, const Trace& t, const char* what, size_t i) {
  std::fprintf(stderr, "INVARIANT: %s walk reliable but frame %zu %s (sp %#llx)\n", walk, i, what,
               static_cast<unsigned long long>(t.frames[i].sp));
  std::abort();
}

// Reliable => frame 0's rsp inside [low, high), every caller's CFA inside (low, high], strictly ascending.
void check_reliable(const char* walk, const Trace& t, const StackBounds& b) {
  if (!t.verdict.reliable) return;
  if (t.verdict.reason != Reason::None) violated(walk, t, "has a reason", 0);
  if (t.frames.empty()) return;
  if (!b.contains(t.frames[0].sp, 8)) violated(walk, t, "is outside the stack", 0);
  for (size_t i = 1; i < t.frames.size(); ++i) {
    uint64_t sp = t.frames[i].sp;
    if (sp <= b.low || sp > b.high) violated(walk, t, "is outside the stack", i);
    if (sp <= t.frames[i - 1].sp) violated(walk, t, "is not above the previous one", i);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Reader in{data, size};
  const uint8_t flags = in.u8();
  const size_t rows = in.u8() % 33, calls = in.u8() % 33, functions = in.u8() % 9, text_len = in.u8();
  const uint16_t rip = in.u16(), rsp = in.u16(), rbp = in.u16(), end_frame = in.u16();

  FrameSection text{".text", kText, kTextSize, {}, {}};
  for (size_t i = 0; i < rows; ++i) {
    FrameRowEntry r;
    r.offset = in.u16() % kTextSize;
    r.state.cfa_base = static_cast<CfaBase>(in.u8() % 5);
    r.state.cfa_offset = static_cast<int8_t>(in.u8());
    r.state.bp_offset = static_cast<int8_t>(in.u8());
    r.state.flags = in.u8();
    text.rows.push_back(r);
  }
  for (size_t i = 0; i < calls; ++i) {
    CallSite c;
    c.return_offset = in.u16() % (kTextSize + 1);
    // One byte: the known flags (depth flags included); the top bits pick the depths and whether the
    // call's target is recorded (somewhere in the text, derived from the return offset).
    const uint8_t f = in.u8();
    c.flags = f & metadata::kCallFlagsKnown;
    c.sp_depth = 16 + 8 * ((f >> 6) & 3);
    c.bp_depth = (f & 0x40) ? 16 : 24;
    if (f & 0x80) c.target = CallTarget{CallTargetKind::Address, 0, kText + (c.return_offset * 0x9e37) % kTextSize};
    text.calls.push_back(c);
  }
  auto by_offset = [](const auto& a, const auto& b) { return a.offset < b.offset; };
  std::stable_sort(text.rows.begin(), text.rows.end(), by_offset);
  text.rows.erase(std::unique(text.rows.begin(), text.rows.end(),
                              [](const auto& a, const auto& b) { return a.offset == b.offset; }),
                  text.rows.end());
  std::stable_sort(text.calls.begin(), text.calls.end(),
                   [](const auto& a, const auto& b) { return a.return_offset < b.return_offset; });
  text.calls.erase(std::unique(text.calls.begin(), text.calls.end(),
                               [](const auto& a, const auto& b) { return a.return_offset == b.return_offset; }),
                   text.calls.end());
  FrameTable table;
  table.object_name = "fuzz";
  table.linked = true;
  table.sections.push_back(std::move(text));
  std::vector<Symbol> symbols;
  for (size_t i = 0; i < functions; ++i) {
    FunctionEntry f;
    f.name = "f" + std::to_string(i);
    f.offset = in.u16() % kTextSize;
    f.size = in.u16() % (kTextSize + 1);
    f.flags = in.u8() & 0xf;
    if (f.has(metadata::kFuncCold)) f.parent = "f0";
    symbols.push_back({kText + f.offset, f.size, f.name});
    table.functions.push_back(std::move(f));
  }
  std::stable_sort(table.functions.begin(), table.functions.end(), by_offset);

  // The unwinder only ever sees metadata that its parser accepted: keep to that domain.
  auto parsed = parse_frame_table(serialize_frame_table(table));
  if (!parsed) return 0;
  auto metadata = std::make_shared<const FrameTable>(std::move(*parsed));

  FakeMemory mem;
  std::vector<uint8_t> code(kTextSize, 0x90);
  for (size_t i = 0; i < text_len; ++i) code[i] = in.u8();
  mem.map_bytes(kText, code.data(), code.size());
  std::vector<uint8_t> bare(kBareSize, 0xcc);
  mem.map_bytes(kBare, bare.data(), bare.size());
  size_t stack_len = std::min<size_t>(in.n, kStackSize);
  if (stack_len > 0) mem.map_bytes(kStack, in.p, stack_len);

  CodeMap code_map;
  code_map.add(CodeImage{"fuzz",
                         kText,
                         kText + kTextSize,
                         0,
                         metadata,
                         (flags & 0x20) ? nullptr : std::make_shared<SymbolTable>(symbols),
                         {}});
  code_map.add(CodeImage{"bare", kBare, kBare + kBareSize, 0, nullptr, nullptr, "no metadata (fuzz)"});

  WalkOptions options;
  options.max_depth = 64;
  options.check_call_targets = !(flags & 0x01);
  options.scan_for_skipped_frames = !(flags & 0x02);
  options.check_frame_sizes = !(flags & 0x04);
  if (flags & 0x08) options.end_frame = kStack + end_frame;
  const bool kernel = flags & 0x40;
  options.zeroed_rbp_ends_stack = !kernel;
  StackBounds bounds{kStack, kStack + kStackSize};
  WalkContext ctx{mem, code_map, bounds, options};

  Regs regs;
  regs.rip = (rip & 0x8000) ? kBare + (rip & 0x7fff) : kText + rip;
  regs.rsp = kStack + rsp;
  regs.rbp = rbp == 0 ? 0 : kStack + rbp;
  regs.syscall_nr = (flags & 0x10) ? 0 : -1;

  Unwind u = unwind(ctx, regs);
  static const bool verbose = std::getenv("FUZZ_UNWIND_VERBOSE") != nullptr;  // to check what a seed reaches
  if (verbose)
    std::fprintf(stderr, "fp: %zu frames, %s %s | metadata-only: %zu frames, %s\n", u.trace.frames.size(),
                 std::string(reason_name(u.trace.verdict.reason)).c_str(), u.trace.verdict.detail.c_str(),
                 u.cfa_trace.frames.size(), std::string(reason_name(u.cfa_trace.verdict.reason)).c_str());
  check_reliable("frame-pointer", u.trace, bounds);
  check_reliable("metadata-only", u.cfa_trace, bounds);
  if (u.trace.verdict.reliable && !u.cross_check.agree) {
    std::fprintf(stderr, "INVARIANT: reliable verdict although the cross-check disagrees\n");
    std::abort();
  }
  const bool hinted_end =
      std::any_of(metadata->sections[0].rows.begin(), metadata->sections[0].rows.end(),
                  [](const FrameRowEntry& r) { return r.state.has(framecert::metadata::kEndOfStack); });
  if (kernel && !hinted_end && u.trace.verdict.reliable &&
      !(options.end_frame && !u.trace.frames.empty() && u.trace.frames.back().fp == *options.end_frame)) {
    std::fprintf(stderr, "INVARIANT: kernel-mode trace reliable without reaching the end frame\n");
    std::abort();
  }
  return 0;
}

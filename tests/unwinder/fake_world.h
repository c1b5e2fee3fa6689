// A small synthetic address space for unit tests: one text image with hand-described functions and their
// validator metadata, and a stack built by simulating calls (so the "true trace" is known exactly).
#pragma once

#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "unwinder/code_map.h"
#include "unwinder/memory_fake.h"
#include "unwinder/regs.h"
#include "unwinder/reliability.h"

namespace framecert::testing {

using namespace metadata;

enum class Kind { Framed, Frameless, Entry, NoState };

class FakeWorld {
 public:
  static constexpr uint64_t kText = 0x401000;
  static constexpr uint64_t kTextSize = 0x20000;
  static constexpr uint64_t kFnSize = 0x100;
  static constexpr uint64_t kStackTop = 0x7ffff000;
  static constexpr uint64_t kStackSize = 0x40000;

  FakeWorld() {
    mem.map(kText, kTextSize);
    std::vector<uint8_t> nops(kTextSize, 0x90);
    mem.write(kText, nops.data(), nops.size());
    mem.map(kStackTop - kStackSize, kStackSize);
  }

  uint64_t add(const std::string& name, Kind kind) {
    uint64_t start = kText + next_++ * kFnSize;
    fns_[start] = {name, kind};
    uint64_t off = start - kText;
    auto row = [&](uint64_t o, CfaBase b, int32_t cfa, uint8_t flags, int16_t bp = 0) {
      rows_.push_back({off + o, FrameState{b, cfa, bp, flags}});
    };
    switch (kind) {
      case Kind::Framed:  // push %rbp; mov %rsp,%rbp; ... leave; ret
        row(0, CfaBase::Sp, 8, kBpUnchanged);
        row(1, CfaBase::Sp, 16, kBpSaved, -16);
        row(4, CfaBase::Bp, 16, kBpIsFrame | kBpSaved, -16);
        row(0xf1, CfaBase::Sp, 8, kBpUnchanged);
        break;
      case Kind::Frameless:
        row(0, CfaBase::Sp, 8, kBpUnchanged);
        break;
      case Kind::Entry:  // xor %ebp,%ebp first; entered by the kernel, no return address
        row(0, CfaBase::Undefined, 0, 0);
        row(2, CfaBase::Sp, 8, kBpZero);
        break;
      case Kind::NoState:
        row(0, CfaBase::Undefined, 0, 0);
        break;
    }
    return start;
  }

  // A direct call instruction ending at the returned address, `at` bytes into `fn`. The metadata records
  // its target (the unwinder reads no code bytes; the e8 bytes are only there for a reader of the memory).
  uint64_t call(uint64_t fn, uint64_t at, uint64_t callee, std::optional<uint8_t> flags = std::nullopt) {
    uint64_t insn = fn + at, ret = insn + 5;
    uint8_t bytes[5] = {0xe8};
    int32_t rel = static_cast<int32_t>(callee - ret);
    std::memcpy(bytes + 1, &rel, 4);
    mem.write(insn, bytes, 5);
    uint8_t f = 0;
    if (flags) {
      f = *flags;
    } else if (fns_[fn].kind == Kind::Framed && at >= 4) {
      f = kCallFrameValid;
    } else if (fns_[fn].kind == Kind::Entry) {
      f = kCallBpZero;
    }
    CallSite site{ret - kText, f};
    site.target = CallTarget{CallTargetKind::Address, 0, callee};
    calls_.push_back(site);
    return ret;
  }

  // The recorded target of the call returning to `ret` (a wrong answer, or unknown).
  void set_call_target(uint64_t ret, CallTarget target) {
    for (CallSite& c : calls_)
      if (c.return_offset == ret - kText) c.target = target;
  }

  // A Framed function's exact frame: push %rbp; mov %rsp,%rbp; sub $locals*8,%rsp before its calls, so the
  // metadata of each call made with a frame records sp depth 16 + 8*locals and bp depth 16.
  void set_locals(uint64_t fn, int locals) { fns_[fn].locals = locals; }

  // A `syscall` instruction `at` bytes into `fn`: the metadata's syscall site, and nothing proven after it
  // (as the validator leaves it). Returns the address after it, where a task in the system call stops.
  uint64_t syscall(uint64_t fn, uint64_t at) {
    const uint64_t off = fn - kText + at;
    syscalls_.push_back({off, off + 2});
    rows_.push_back({off + 2, FrameState{}});
    return fn + at + 2;
  }

  void set_row(uint64_t address, FrameState s) { rows_.push_back({address - kText, s}); }
  // A self slot of `fn` (metadata::SelfSlotRecord): a store at fn+8 that keeps its own frame or return
  // address at `base` + offset.
  void self_slot(uint64_t fn, int32_t offset, metadata::SlotKind kind,
                 metadata::SlotBase base = metadata::SlotBase::Cfa) {
    slots_.push_back({fn - kText + 8, offset, kind, base});
  }
  // Extra function flags in the metadata (e.g. kFuncNonStandard).
  void set_function_flags(uint64_t fn, uint32_t flags) { fns_[fn].flags |= flags; }

  std::shared_ptr<FrameTable> table() const {
    auto t = std::make_shared<FrameTable>();
    t->linked = true;
    t->object_name = "fake";
    FrameSection s{".text", kText, kTextSize, rows_, calls_};
    std::stable_sort(s.rows.begin(), s.rows.end(), [](auto& a, auto& b) { return a.offset < b.offset; });
    // A later row at the same offset overrides (set_row): keep the last one.
    std::vector<FrameRowEntry> rows;
    for (auto& r : s.rows) {
      if (!rows.empty() && rows.back().offset == r.offset)
        rows.back() = r;
      else
        rows.push_back(r);
    }
    s.rows = rows;
    std::sort(s.calls.begin(), s.calls.end(), [](auto& a, auto& b) { return a.return_offset < b.return_offset; });
    for (CallSite& c : s.calls) {
      auto it = fns_.upper_bound(kText + c.return_offset - 1);
      if (it == fns_.begin()) continue;
      const Fn& f = std::prev(it)->second;
      if (f.kind != Kind::Framed || !f.locals || !c.has(kCallFrameValid)) continue;
      c.flags |= kCallSpDepth | kCallBpDepth;
      c.sp_depth = 16 + 8 * *f.locals;
      c.bp_depth = 16;
    }
    s.syscalls = syscalls_;
    s.self_slots = slots_;
    std::sort(s.self_slots.begin(), s.self_slots.end(), [](auto& a, auto& b) { return a.offset < b.offset; });
    std::sort(s.syscalls.begin(), s.syscalls.end(), [](auto& a, auto& b) { return a.return_offset < b.return_offset; });
    t->sections.push_back(s);
    for (auto& [start, f] : fns_)
      t->functions.push_back({f.name, 0, start - kText, kFnSize, kFuncCertified | f.flags, {}, {}});
    return t;
  }

  CodeMap code_map(bool with_metadata = true) const {
    CodeMap m;
    std::vector<Symbol> syms;
    for (auto& [start, f] : fns_) syms.push_back({start, kFnSize, f.name});
    CodeImage img{
        "fake", kText, kText + kTextSize, 0, with_metadata ? table() : nullptr, std::make_shared<SymbolTable>(syms),
        {}};
    m.add(std::move(img));
    return m;
  }

  StackBounds bounds() const { return {kStackTop - kStackSize, kStackTop}; }

  FakeMemory mem;

 private:
  struct Fn {
    std::string name;
    Kind kind;
    uint32_t flags = 0;
    std::optional<int> locals;
  };
  std::map<uint64_t, Fn> fns_;
  std::vector<FrameRowEntry> rows_;
  std::vector<CallSite> calls_;
  std::vector<SyscallSite> syscalls_;
  std::vector<SelfSlot> slots_;
  uint64_t next_ = 0;
};

// Simulates execution on the fake stack: calls push return addresses, prologues push rbp.
class Machine {
 public:
  explicit Machine(FakeWorld& w) : rsp(FakeWorld::kStackTop - 64), w_(w) {}
  void push(uint64_t v) {
    rsp -= 8;
    w_.mem.write_u64(rsp, v);
  }
  void call(uint64_t ret) { push(ret); }
  void prologue() {
    push(rbp);
    rbp = rsp;
  }
  // Locals filled with junk that looks like nothing in particular.
  void locals(int words) {
    for (int i = 0; i < words; ++i) push(0x1111000000000000ull + static_cast<uint64_t>(i));
  }
  Regs regs(uint64_t rip) const { return Regs{rip, rsp, rbp}; }

  uint64_t rsp;
  uint64_t rbp = 0;

 private:
  FakeWorld& w_;
};

}  // namespace framecert::testing

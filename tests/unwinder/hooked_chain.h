// A synthetic stack whose return addresses a tracer may have replaced with its trampoline (the function_graph
// tracer's return_to_handler, the rethook trampoline): _start -> main -> a -> b, stopped in b, with the slot
// of every return address recorded so that a test can hook it and describe the hook in a fake record.
#pragma once

#include "tests/unwinder/fake_world.h"
#include "unwinder/return_hooks.h"
#include "unwinder/unwind.h"

namespace framecert::testing {

struct HookedChain {
  FakeWorld w;
  Machine m{w};
  uint64_t start = w.add("_start", Kind::Entry);
  uint64_t main_fn = w.add("main", Kind::Framed);
  uint64_t a = w.add("a", Kind::Framed);
  uint64_t b = w.add("b", Kind::Framed);
  uint64_t other = w.add("other", Kind::Framed);
  // The trampolines: no frame of their own and an end-of-stack hint, as return_to_handler has.
  uint64_t tramp = w.add("return_to_handler", Kind::NoState);
  uint64_t tramp2 = w.add("arch_rethook_trampoline", Kind::NoState);
  uint64_t ret_start = 0, ret_main = 0, ret_a = 0;
  uint64_t ret_main_other = 0;  // main's call to `other`: a return address into main of another call target
  uint64_t slot_start = 0, slot_main = 0, slot_a = 0;  // where each of the three return addresses lies

  HookedChain() {
    w.set_row(tramp, FrameState{CfaBase::Undefined, 0, 0, metadata::kEndOfStack});
    ret_start = w.call(start, 0x10, main_fn);
    ret_main = w.call(main_fn, 0x20, a);
    ret_main_other = w.call(main_fn, 0x60, other);
    ret_a = w.call(a, 0x30, b);
    m.call(ret_start);
    slot_start = m.rsp;
    m.prologue();
    m.locals(3);
    m.call(ret_main);
    slot_main = m.rsp;
    m.prologue();
    m.locals(2);
    m.call(ret_a);
    slot_a = m.rsp;
    m.prologue();
    m.locals(4);
  }
  // The tracer's work: the return address at `slot` replaced by `trampoline`.
  void hook(uint64_t slot, uint64_t trampoline) { w.mem.write_u64(slot, trampoline); }
  Regs regs() const { return m.regs(b + 0x40); }
  Unwind run(const ReturnHooks* hooks) {
    CodeMap code = w.code_map();
    WalkOptions o;
    o.return_hooks = hooks;
    return unwind(WalkContext{w.mem, code, w.bounds(), o}, regs());
  }
  std::vector<uint64_t> true_pcs() const { return {b + 0x40, ret_a, ret_main, ret_start}; }
};

}  // namespace framecert::testing

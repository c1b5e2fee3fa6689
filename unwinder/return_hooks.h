// Hooked return addresses. Tracers that watch function returns (the kernel's function_graph tracer,
// kretprobes through rethook) overwrite a return address on the stack with their trampoline and keep the
// original in a per-task record of their own (ftrace's ret_stack[], the task's rethook list). A walk that
// meets the trampoline can go on only with the original, and only where that record names exactly the
// stack slot the trampoline was read from (the kernel's own unwinder asks the same,
// ftrace_graph_ret_addr(task, &idx, ret, retp) and rethook_find_ret_addr(task, frame, &cur)).
//
// The walkers read each return address through recover_return_address(); what a ReturnHooks implementation
// reads (guest RAM, a test's fake memory) stays behind this interface. A recovered address is then judged
// exactly like any other return address (after a call the validator knows, the call target, the frame size):
// a record that lies cannot make a wrong caller reliable, only an unproven one unreliable.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include <tl/expected.hpp>

#include "unwinder/reliability.h"

namespace framecert {

// Where one walk stands in the task's records. Records are consumed in order, innermost first, as the walk
// goes outward: a record may be passed over only if its slot is below (inner to) the slot asked about — a
// hook the chain did not meet (a frameless leaf, a hook being set up) — never one above it, and never
// used twice.
class ReturnHookCursor {
 public:
  virtual ~ReturnHookCursor() = default;
  // The original return address for `trampoline`, read from the stack word at `slot`. A Problem
  // (trampoline-return-unrecovered, or memory-unreadable for the record itself) when it is not proven.
  virtual tl::expected<uint64_t, Problem> recover(uint64_t trampoline, uint64_t slot) = 0;
};

class ReturnHooks {
 public:
  virtual ~ReturnHooks() = default;
  // The trampoline's name when `address` is exactly one (what a hook writes into the slot), else nullopt.
  virtual std::optional<std::string> trampoline_name(uint64_t address) const = 0;
  // A fresh cursor for one walk of the task (each walk — frame pointers, CFA rules — has its own).
  virtual std::unique_ptr<ReturnHookCursor> begin() const = 0;
};

// One return address as the walk uses it: `value` is what the caller frame is judged by.
struct ReturnAddress {
  uint64_t value = 0;
  uint64_t trampoline = 0;  // non-zero: the slot held this trampoline
  std::string trampoline_name;
  uint64_t slot = 0;
  bool unrecovered = false;  // the judge failed the trace: nothing below the trampoline can be shown
};

// The return address read from stack word `slot` (frame `index`): itself, or — at a known trampoline — the
// original proven by `cursor` (the walk's, from ctx.options.return_hooks->begin(); null: no hooks known).
// A record naming another trampoline (a second tracer's hook on the same slot) is followed to that
// trampoline's own record for the slot, each trampoline at most once. Failing that, or when a record names a
// trampoline already met, the judge fails the trace (trampoline-return-unrecovered).
ReturnAddress recover_return_address(const WalkContext& ctx, ReturnHookCursor* cursor, uint64_t ret, uint64_t slot,
                                     int index, Judge& judge);
// A cursor for one walk, or null when the walk knows no hooks.
std::unique_ptr<ReturnHookCursor> begin_return_hooks(const WalkContext& ctx);
// Shows the trampoline in the frame (`f.pc` is the recovered address, or the trampoline, named so).
void show_trampoline(Frame& f, const ReturnAddress& r);

}  // namespace framecert

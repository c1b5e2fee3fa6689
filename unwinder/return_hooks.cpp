#include "unwinder/return_hooks.h"

#include <algorithm>
#include <vector>

#include <fmt/format.h>

namespace framecert {

std::unique_ptr<ReturnHookCursor> begin_return_hooks(const WalkContext& ctx) {
  return ctx.options.return_hooks ? ctx.options.return_hooks->begin() : nullptr;
}

ReturnAddress recover_return_address(const WalkContext& ctx, ReturnHookCursor* cursor, uint64_t ret, uint64_t slot,
                                     int index, Judge& judge) {
  ReturnAddress r{ret, 0, {}, slot, false};
  const ReturnHooks* hooks = ctx.options.return_hooks;
  if (!hooks) return r;
  auto name = hooks->trampoline_name(ret);
  if (!name) return r;
  r.trampoline = ret;
  r.trampoline_name = *name;
  auto unrecovered = [&](std::string detail) {
    r.unrecovered = true;
    judge.fail(Reason::TrampolineReturnUnrecovered, index, std::move(detail));
    return r;
  };
  if (!cursor) return unrecovered(fmt::format("{} at {:#x}: no record of the task's hooks to read", *name, slot));
  // Two tracers may hook one slot (function_graph, then a kretprobe of the same function): the outer hook's
  // record names the inner trampoline, whose own record for the same slot names the original. Each
  // trampoline is asked at most once per slot; a record naming one already met proves nothing (the kernel's
  // own lookups skip such entries; an implementation that returned one is wrong).
  std::vector<uint64_t> met{ret};
  uint64_t current = ret;
  for (;;) {
    auto original = cursor->recover(current, slot);
    if (!original) {
      r.unrecovered = true;
      judge.fail(original.error(), index);
      return r;
    }
    if (!hooks->trampoline_name(*original)) {
      r.value = *original;
      break;
    }
    if (std::find(met.begin(), met.end(), *original) != met.end())
      return unrecovered(
          fmt::format("the hook record for the {} at {:#x} names the trampoline {:#x} again", *name, slot, *original));
    met.push_back(*original);
    current = *original;
  }
  // Anything else is judged by the walk's usual checks of a return address, so a lying record cannot make a
  // wrong caller reliable.
  return r;
}

void show_trampoline(Frame& f, const ReturnAddress& r) {
  if (!r.trampoline) return;
  f.trampoline = r.trampoline;
  f.trampoline_symbol = r.trampoline_name;
  f.return_slot = r.slot;
  if (r.unrecovered) {
    // The frame's pc is the trampoline itself: name it so, not by the function that happens to end before it
    // (return addresses are otherwise looked up at pc - 1).
    f.symbol = r.trampoline_name;
    f.offset = 0;
  }
}

}  // namespace framecert

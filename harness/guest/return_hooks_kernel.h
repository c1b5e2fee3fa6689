// The Linux kernel's records of hooked return addresses, read from a frozen task (unwinder/return_hooks.h
// says what a hook is and how a walk uses the answer). Linux 6.1, x86-64:
//
// - the function_graph tracer (kernel/trace/fgraph.c): prepare_ftrace_return() pushes
//   ret_stack[++curr_ret_stack] = {.ret = the original, .retp = the stack slot} and only then writes
//   return_to_handler into the slot; the kernel's unwinder finds the entry whose .retp is the slot
//   (ftrace_graph_ret_addr with HAVE_FUNCTION_GRAPH_RET_ADDR_PTR). Entries 0..curr_ret_stack are live;
//   curr_ret_stack is -1 when empty and below FTRACE_RETFUNC_DEPTH (50, include/linux/ftrace.h).
// - rethook (kernel/trace/rethook.c, arch/x86/kernel/rethook.c; kretprobes with CONFIG_KRETPROBE_ON_RETHOOK):
//   arch_rethook_prepare() records {.ret_addr = the original, .frame = the slot}, writes
//   arch_rethook_trampoline into the slot and links the node at the head of task->rethooks; nodes run
//   innermost first. Several hooks of one slot (two kretprobes on a function) leave nodes whose ret_addr
//   is the trampoline itself: passed over, as rethook_find_ret_addr() does.
// - kretprobes before rethook (kernel/kprobes.c): the same list, task->kretprobe_instances, with .ret_addr
//   and .fp (the slot) and the trampoline __kretprobe_trampoline.
//
// Nothing read from the guest is trusted: indices are bounds-checked, list walks are bounded, an unreadable
// word gives memory-unreadable, and whatever is recovered is still judged like any return address.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "harness/guest/kernel_layout.h"
#include "unwinder/memory.h"
#include "unwinder/return_hooks.h"

namespace framecert::guest {

inline constexpr int64_t kFtraceRetfuncDepth = 50;  // FTRACE_RETFUNC_DEPTH, include/linux/ftrace.h (6.1)
inline constexpr int kMaxHookNodes = 4096;          // a bound on a list walk: a corrupted list may loop

// The trampolines' addresses (0: the kernel has none).
struct HookTrampolines {
  uint64_t return_to_handler = 0;        // ftrace's function_graph
  uint64_t arch_rethook_trampoline = 0;  // rethook
  uint64_t kretprobe_trampoline = 0;     // __kretprobe_trampoline (kretprobes before rethook)
};

// One task's hooks.
class KernelReturnHooks final : public ReturnHooks {
 public:
  KernelReturnHooks(Memory& memory, const KernelLayout& layout, const HookTrampolines& trampolines, uint64_t task)
      : memory_(memory), layout_(layout), tramps_(trampolines), task_(task) {}
  std::optional<std::string> trampoline_name(uint64_t address) const override;
  std::unique_ptr<ReturnHookCursor> begin() const override;

 private:
  Memory& memory_;
  const KernelLayout& layout_;
  HookTrampolines tramps_;
  uint64_t task_;
};

}  // namespace framecert::guest

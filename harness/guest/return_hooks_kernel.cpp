#include "harness/guest/return_hooks_kernel.h"

#include <fmt/format.h>

namespace framecert::guest {

namespace {

using Recovered = tl::expected<uint64_t, Problem>;

tl::unexpected<Problem> unrecovered(std::string detail) {
  return tl::unexpected(Problem{Reason::TrampolineReturnUnrecovered, std::move(detail)});
}

tl::unexpected<Problem> unreadable(const MemoryFault& e, const char* what) {
  return tl::unexpected(Problem{Reason::MemoryUnreadable, fmt::format("{}: {}", what, e.describe())});
}

// ftrace's ret_stack, consumed from the top (the innermost hook) down, as the walk goes outward.
class FgraphCursor {
 public:
  FgraphCursor(Memory& memory, const FgraphLayout& layout, uint64_t task) : mem_(memory), l_(layout), task_(task) {}

  Recovered recover(uint64_t slot) {
    if (!l_.present) return unrecovered("return_to_handler, but the kernel's DWARF has no ftrace_ret_stack with .retp");
    if (!started_) {
      if (auto e = start()) return *e;
    }
    // Entries above `next_` were consumed or passed over by inner slots.
    for (int64_t i = next_; i >= 0; --i) {
      const uint64_t entry = base_ + static_cast<uint64_t>(i) * l_.entry_size;
      auto retp = mem_.read_u64(RemoteAddr(entry + l_.entry_retp));
      if (!retp) return unreadable(retp.error(), "ftrace ret_stack entry");
      if (*retp == slot) {
        auto ret = mem_.read_u64(RemoteAddr(entry + l_.entry_ret));
        if (!ret) return unreadable(ret.error(), "ftrace ret_stack entry");
        next_ = i - 1;
        return *ret;
      }
      // An entry for a slot above this one, met before this slot's own: the records do not describe this
      // stack in order (the kernel pushes them call by call, so inner hooks sit at higher indices).
      if (*retp > slot)
        return unrecovered(
            fmt::format("return_to_handler at {:#x}: ret_stack[{}] names the outer slot {:#x} before "
                        "any entry names this one",
                        slot, i, *retp));
    }
    return unrecovered(
        fmt::format("return_to_handler at {:#x}: no live ret_stack entry (curr_ret_stack {}) names "
                    "this slot",
                    slot, top_));
  }

 private:
  std::optional<tl::unexpected<Problem>> start() {
    started_ = true;
    const RemoteAddr at(task_ + l_.task_curr_ret_stack);
    // curr_ret_stack is an int in 6.1; its size comes from the DWARF.
    auto curr = l_.curr_ret_stack_size == 4 ? mem_.read_as<int32_t>(at).map([](int32_t v) { return int64_t{v}; })
                                            : mem_.read_as<int64_t>(at);
    auto base = mem_.read_u64(RemoteAddr(task_ + l_.task_ret_stack));
    if (!curr || !base) return unreadable((!curr ? curr.error() : base.error()), "task_struct's ret_stack");
    top_ = *curr;
    base_ = *base;
    if (top_ < -1 || top_ >= kFtraceRetfuncDepth)
      return unrecovered(
          fmt::format("curr_ret_stack {} outside [-1, FTRACE_RETFUNC_DEPTH {})", top_, kFtraceRetfuncDepth));
    if (base_ == 0) return unrecovered("return_to_handler, but the task has no ret_stack");
    next_ = top_;
    return std::nullopt;
  }

  Memory& mem_;
  const FgraphLayout& l_;
  uint64_t task_;
  bool started_ = false;
  int64_t top_ = -1, next_ = -1;
  uint64_t base_ = 0;
};

// rethook's or kretprobes' list, from its head (the innermost hook) on.
class ListCursor {
 public:
  ListCursor(Memory& memory, const HookListLayout& layout, uint64_t task, const char* name)
      : mem_(memory), l_(layout), task_(task), name_(name) {}

  Recovered recover(uint64_t trampoline, uint64_t slot) {
    if (!l_.present) return unrecovered(fmt::format("{}, but the kernel's DWARF has no list of its hooks", name_));
    if (!started_) {
      started_ = true;
      auto head = mem_.read_u64(RemoteAddr(task_ + l_.task_head));
      if (!head) return unreadable(head.error(), "the task's hook list");
      link_ = *head;
    }
    while (link_ != 0) {
      if (++visited_ > kMaxHookNodes)
        return unrecovered(fmt::format("{}: more than {} hook nodes (a loop?)", name_, kMaxHookNodes));
      const uint64_t node = link_ - l_.node_link;
      auto next = mem_.read_u64(RemoteAddr(link_ + l_.link_next));
      auto frame = mem_.read_u64(RemoteAddr(node + l_.node_frame));
      auto ret = mem_.read_u64(RemoteAddr(node + l_.node_ret));
      if (!next || !frame || !ret)
        return unreadable((!next ? next.error() : !frame ? frame.error() : ret.error()), "a hook node");
      link_ = *next;
      if (*frame == slot) {
        if (*ret == trampoline) continue;  // a second hook of the same slot: the original is further on
        return *ret;
      }
      if (*frame > slot)
        return unrecovered(fmt::format("{} at {:#x}: a hook node names the outer slot {:#x} before any names this one",
                                       name_, slot, *frame));
    }
    return unrecovered(fmt::format("{} at {:#x}: no hook node of the task names this slot", name_, slot));
  }

 private:
  Memory& mem_;
  const HookListLayout& l_;
  uint64_t task_;
  const char* name_;
  bool started_ = false;
  uint64_t link_ = 0;
  int visited_ = 0;
};

class KernelCursor final : public ReturnHookCursor {
 public:
  KernelCursor(Memory& memory, const KernelLayout& layout, const HookTrampolines& t, uint64_t task)
      : tramps_(t),
        fgraph_(memory, layout.fgraph, task),
        rethook_(memory, layout.rethook, task, "arch_rethook_trampoline"),
        kretprobe_(memory, layout.kretprobe, task, "__kretprobe_trampoline") {}

  Recovered recover(uint64_t trampoline, uint64_t slot) override {
    if (trampoline == tramps_.return_to_handler) return fgraph_.recover(slot);
    if (trampoline == tramps_.arch_rethook_trampoline) return rethook_.recover(trampoline, slot);
    if (trampoline == tramps_.kretprobe_trampoline) return kretprobe_.recover(trampoline, slot);
    return unrecovered(fmt::format("{:#x} is no trampoline this kernel has", trampoline));
  }

 private:
  HookTrampolines tramps_;
  FgraphCursor fgraph_;
  ListCursor rethook_, kretprobe_;
};

}  // namespace

std::optional<std::string> KernelReturnHooks::trampoline_name(uint64_t address) const {
  if (address == 0) return std::nullopt;
  if (address == tramps_.return_to_handler) return "return_to_handler";
  if (address == tramps_.arch_rethook_trampoline) return "arch_rethook_trampoline";
  if (address == tramps_.kretprobe_trampoline) return "__kretprobe_trampoline";
  return std::nullopt;
}

std::unique_ptr<ReturnHookCursor> KernelReturnHooks::begin() const {
  return std::make_unique<KernelCursor>(memory_, layout_, tramps_, task_);
}

}  // namespace framecert::guest

// Every task of a frozen guest kernel: thread-group leaders from init_task.tasks, their threads from the
// signal's thread list, and every online CPU's idle task (runqueues.idle, on no list). Read from guest
// memory with the offsets of kernel_layout.h; every pointer is checked (a damaged list ends the walk of
// that list with a warning, never a crash).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "harness/guest/kernel_layout.h"
#include "unwinder/memory.h"
#include "unwinder/result.h"

namespace framecert::guest {

inline constexpr uint64_t kStackEndMagic = 0x57AC6E9D;  // STACK_END_MAGIC, at the lowest word of a task stack
inline constexpr uint32_t kPfKthread = 0x00200000;      // PF_KTHREAD

struct GuestTask {
  uint64_t address = 0;  // struct task_struct *
  int32_t pid = 0, tgid = 0;
  int32_t ppid = -1;  // real_parent's pid (-1 if unreadable)
  std::string comm;
  uint32_t state = 0;  // __state
  int32_t on_cpu = 0;
  int32_t cpu = -1;  // thread_info.cpu: where it last ran
  uint32_t flags = 0;
  uint64_t stack = 0;  // lowest address of the stack; the stack is [stack, stack + THREAD_SIZE)
  uint64_t thread_sp = 0;
  bool idle = false;  // some CPU's idle task
  int idle_cpu = -1;
  bool stack_magic_ok = false;
  // The kernel's livepatch state of this task (KLP_UNDEFINED -1, KLP_UNPATCHED 0, KLP_PATCHED 1); nullopt
  // without CONFIG_LIVEPATCH.
  std::optional<int32_t> patch_state;
  // nvcsw + nivcsw: how often the kernel switched this task out (0 for a task that has never run). Not used
  // by the walk: the harness checks a "has not run yet" trace against it.
  uint64_t switches = 0;
  bool kthread() const { return (flags & kPfKthread) != 0; }
};

// The kernel globals the enumeration needs (from read_kernel_symbols).
struct KernelGlobals {
  uint64_t init_task = 0, runqueues = 0, per_cpu_offset = 0, cpu_online_mask = 0, current_task = 0;
};

struct TaskList {
  std::vector<GuestTask> tasks;
  std::vector<int> online_cpus;
  std::map<int, uint64_t> cpu_curr;          // rq->curr per online CPU
  std::map<int, uint64_t> cpu_current_task;  // per-CPU current_task
  std::vector<std::string> warnings;
};

// Fails only if the basics do not hold (init_task.comm must read "swapper/0", CPUs must be online).
Result<TaskList> enumerate_tasks(Memory& mem, const KernelLayout& k, const KernelGlobals& g);

// Reads one task's fields.
Result<GuestTask> read_task(Memory& mem, const KernelLayout& k, uint64_t address);

}  // namespace framecert::guest

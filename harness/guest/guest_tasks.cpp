#include "harness/guest/guest_tasks.h"

#include <cstring>
#include <set>

#include <fmt/format.h>

namespace framecert::guest {

namespace {

constexpr size_t kMaxListLength = 1 << 20;

bool kernel_pointer(uint64_t p) { return p >= 0xffff800000000000ull && p % 8 == 0; }

template <typename T>
Result<T> read(Memory& mem, uint64_t addr, const char* what) {
  auto v = mem.read_as<T>(RemoteAddr(addr));
  if (!v) return fail("cannot read {} at {:#x}: {}", what, addr, v.error().describe());
  return *v;
}

// The entries of a circular list_head list: addresses of the list_head members (not the head itself).
std::vector<uint64_t> list_entries(Memory& mem, uint64_t head, std::vector<std::string>& warnings, const char* what) {
  std::vector<uint64_t> out;
  std::set<uint64_t> seen;
  auto next = mem.read_u64(RemoteAddr(head));
  while (next && *next != head) {
    if (!kernel_pointer(*next) || !seen.insert(*next).second || out.size() >= kMaxListLength) {
      warnings.push_back(fmt::format("{} list at {:#x} is damaged at {:#x}", what, head, *next));
      return out;
    }
    out.push_back(*next);
    next = mem.read_u64(RemoteAddr(*next));
  }
  if (!next) warnings.push_back(fmt::format("{} list at {:#x}: {}", what, head, next.error().describe()));
  return out;
}

}  // namespace

Result<GuestTask> read_task(Memory& mem, const KernelLayout& k, uint64_t address) {
  if (!kernel_pointer(address)) return fail("{:#x} is not a task_struct pointer", address);
  std::vector<uint8_t> raw(k.task_size);
  if (auto r = mem.read_fully(RemoteAddr(address), raw.data(), raw.size()); !r)
    return fail("cannot read the task_struct at {:#x}: {}", address, r.error().describe());
  auto field = [&](uint64_t off, auto zero) {
    decltype(zero) v;
    std::memcpy(&v, raw.data() + off, sizeof v);
    return v;
  };
  GuestTask t;
  t.address = address;
  t.pid = field(k.task_pid, int32_t{});
  t.tgid = field(k.task_tgid, int32_t{});
  const char* comm = reinterpret_cast<const char*>(raw.data() + k.task_comm);
  t.comm.assign(comm, strnlen(comm, k.task_comm_len));
  t.state = field(k.task_state, uint32_t{});
  t.on_cpu = field(k.task_on_cpu, int32_t{});
  t.cpu = static_cast<int32_t>(field(k.task_cpu, uint32_t{}));
  t.flags = field(k.task_flags, uint32_t{});
  t.stack = field(k.task_stack, uint64_t{});
  t.thread_sp = field(k.task_thread_sp, uint64_t{});
  if (k.task_patch_state) t.patch_state = field(k.task_patch_state, int32_t{});
  t.switches = field(k.task_nvcsw, uint64_t{}) + field(k.task_nivcsw, uint64_t{});
  if (uint64_t parent = field(k.task_real_parent, uint64_t{}); kernel_pointer(parent)) {
    int32_t ppid = 0;
    if (mem.read_fully(RemoteAddr(parent + k.task_pid), &ppid, sizeof ppid)) t.ppid = ppid;
  }
  auto magic = mem.read_u64(RemoteAddr(t.stack));
  t.stack_magic_ok = magic && *magic == kStackEndMagic;
  return t;
}

Result<TaskList> enumerate_tasks(Memory& mem, const KernelLayout& k, const KernelGlobals& g) {
  TaskList out;
  auto init = read_task(mem, k, g.init_task);
  if (!init) return fail("init_task: {}", init.error());
  if (init->comm != "swapper/0" || init->pid != 0)
    return fail("init_task at {:#x} reads comm '{}' pid {}: wrong offsets, symbols or page tables", g.init_task,
                init->comm, init->pid);
  if (!init->stack_magic_ok) out.warnings.push_back("init_task's stack does not end with STACK_END_MAGIC");
  if (init->thread_sp < init->stack || init->thread_sp >= init->stack + k.thread_size)
    out.warnings.push_back("init_task's thread.sp is outside its stack");

  auto online = read<uint64_t>(mem, g.cpu_online_mask, "__cpu_online_mask");
  if (!online) return tl::unexpected(online.error());
  for (int cpu = 0; cpu < 64; ++cpu)
    if (*online & (1ull << cpu)) out.online_cpus.push_back(cpu);
  if (out.online_cpus.empty()) return fail("no CPU online in __cpu_online_mask");

  std::set<uint64_t> have;
  auto add = [&](uint64_t addr) {
    if (!have.insert(addr).second) return;
    auto t = read_task(mem, k, addr);
    if (!t) {
      out.warnings.push_back(t.error());
      return;
    }
    out.tasks.push_back(std::move(*t));
  };
  // Idle tasks first (CPU 0's is init_task itself).
  for (int cpu : out.online_cpus) {
    auto off = read<uint64_t>(mem, g.per_cpu_offset + 8 * cpu, "__per_cpu_offset[cpu]");
    if (!off) return tl::unexpected(off.error());
    uint64_t rq = *off + g.runqueues;
    auto idle = read<uint64_t>(mem, rq + k.rq_idle, "runqueues.idle");
    auto curr = read<uint64_t>(mem, rq + k.rq_curr, "runqueues.curr");
    if (!idle || !curr) return fail("CPU {}: {}", cpu, !idle ? idle.error() : curr.error());
    out.cpu_curr[cpu] = *curr;
    if (g.current_task) {
      if (auto cur = mem.read_u64(RemoteAddr(*off + g.current_task))) out.cpu_current_task[cpu] = *cur;
    }
    add(*idle);
    for (auto& t : out.tasks)
      if (t.address == *idle) {
        t.idle = true;
        t.idle_cpu = cpu;
      }
  }
  // Thread-group leaders, then each one's threads (the leader is on its own thread list too).
  for (uint64_t node : list_entries(mem, g.init_task + k.task_tasks, out.warnings, "init_task.tasks")) {
    uint64_t leader = node - k.task_tasks;
    add(leader);
    auto signal = mem.read_u64(RemoteAddr(leader + k.task_signal));
    if (!signal || !kernel_pointer(*signal)) {
      out.warnings.push_back(fmt::format("task {:#x}: unreadable signal pointer", leader));
      continue;
    }
    for (uint64_t tn : list_entries(mem, *signal + k.signal_thread_head, out.warnings, "signal->thread_head"))
      add(tn - k.task_thread_node);
  }
  return out;
}

}  // namespace framecert::guest

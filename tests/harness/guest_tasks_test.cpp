// The guest task enumeration on synthetic kernel memory: every list member found once, idle tasks from the
// per-CPU runqueues, and damaged lists (a loop, a wild pointer, an unreadable task) ending with a warning —
// never a crash or a hang.
#include <cstring>

#include <gtest/gtest.h>

#include "harness/guest/guest_tasks.h"
#include "unwinder/memory_fake.h"

namespace framecert::guest {
namespace {

constexpr uint64_t kBase = 0xffff888000100000;
constexpr uint64_t kTaskSize = 0x400;

struct FakeKernel {
  KernelLayout k;
  KernelGlobals g;
  framecert::FakeMemory mem;
  uint64_t next_task = kBase;

  FakeKernel() {
    k.task_size = kTaskSize;
    k.task_tasks = 0x10;
    k.task_pid = 0x20;
    k.task_tgid = 0x24;
    k.task_comm = 0x30;
    k.task_comm_len = 16;
    k.task_state = 0x40;
    k.task_on_cpu = 0x44;
    k.task_cpu = 0x48;
    k.task_flags = 0x4c;
    k.task_stack = 0x50;
    k.task_thread_sp = 0x58;
    k.task_signal = 0x60;
    k.task_thread_node = 0x70;
    k.signal_thread_head = 0x8;
    k.rq_idle = 0x18;
    k.rq_curr = 0x10;
    k.thread_size = 0x4000;
    g.per_cpu_offset = 0xffffffff82000000;
    g.cpu_online_mask = 0xffffffff82001000;
    g.runqueues = 0x100;
    mem.map(g.per_cpu_offset, 64);
    mem.map(g.cpu_online_mask, 8);
  }
  void put(uint64_t addr, uint64_t v) { ASSERT_TRUE(mem.write(addr, &v, 8)); }
  void put32(uint64_t addr, uint32_t v) { ASSERT_TRUE(mem.write(addr, &v, 4)); }
  // A task with its own signal struct (a thread-group leader) unless `leader` is given.
  uint64_t task(int pid, const char* comm, uint64_t leader = 0) {
    uint64_t t = next_task;
    next_task += 0x1000;
    mem.map(t, kTaskSize);
    put32(t + k.task_pid, pid);
    put32(t + k.task_tgid, leader ? 0 : pid);
    mem.write(t + k.task_comm, comm, std::strlen(comm));
    uint64_t signal = leader ? *mem.read_u64(RemoteAddr(leader + k.task_signal)) : t + 0x800;
    put(t + k.task_signal, signal);
    if (!leader) {
      mem.map(signal, 0x100);
      put(signal + k.signal_thread_head, signal + k.signal_thread_head);  // empty list
      put(signal + k.signal_thread_head + 8, signal + k.signal_thread_head);
    }
    // Append to the signal's thread list.
    uint64_t head = signal + k.signal_thread_head, node = t + k.task_thread_node;
    uint64_t last = *mem.read_u64(RemoteAddr(head + 8));
    put(node, head);
    put(node + 8, last);
    put(last, node);
    put(head + 8, node);
    return t;
  }
  void link_tasks(const std::vector<uint64_t>& tasks) {  // circular init_task.tasks
    for (size_t i = 0; i < tasks.size(); ++i)
      put(tasks[i] + k.task_tasks, tasks[(i + 1) % tasks.size()] + k.task_tasks);
  }
  void cpu(int n, uint64_t idle) {
    uint64_t off = 0xffff88801f000000 + n * 0x100000;
    put(g.per_cpu_offset + 8 * n, off);
    mem.map(off + g.runqueues, 0x40);
    put(off + g.runqueues + k.rq_idle, idle);
    put(off + g.runqueues + k.rq_curr, idle);
    uint64_t mask = *mem.read_u64(RemoteAddr(g.cpu_online_mask));
    put(g.cpu_online_mask, mask | (1ull << n));
  }
};

TEST(GuestTasks, EveryTaskOnceWithIdleTasksAndThreads) {
  FakeKernel f;
  uint64_t swapper0 = f.task(0, "swapper/0");
  uint64_t swapper1 = f.task(0, "swapper/1");
  uint64_t init = f.task(1, "init");
  uint64_t worker = f.task(2, "kthreadd");
  uint64_t multi = f.task(10, "fcload");
  f.task(11, "fcload", multi);
  f.task(12, "fcload", multi);
  f.g.init_task = swapper0;
  // init_task's stack: STACK_END_MAGIC at its lowest word, thread.sp inside.
  const uint64_t stack = 0xffffffff81a00000;
  f.mem.map(stack, 8);
  f.put(stack, kStackEndMagic);
  f.put(swapper0 + f.k.task_stack, stack);
  f.put(swapper0 + f.k.task_thread_sp, stack + 0x3e00);
  f.link_tasks({swapper0, init, worker, multi});
  f.cpu(0, swapper0);
  f.cpu(1, swapper1);
  auto list = enumerate_tasks(f.mem, f.k, f.g);
  ASSERT_TRUE(list) << list.error();
  std::vector<int> pids;
  for (const auto& t : list->tasks) pids.push_back(t.pid);
  EXPECT_EQ(pids, (std::vector<int>{0, 0, 1, 2, 10, 11, 12}));
  EXPECT_TRUE(list->tasks[0].idle && list->tasks[1].idle && !list->tasks[2].idle);
  EXPECT_EQ(list->tasks[1].idle_cpu, 1);
  EXPECT_EQ(list->online_cpus, (std::vector<int>{0, 1}));
  EXPECT_TRUE(list->warnings.empty()) << list->warnings.front();
  EXPECT_TRUE(list->tasks[0].stack_magic_ok);
}

TEST(GuestTasks, WrongInitTaskIsRefused) {
  FakeKernel f;
  uint64_t t = f.task(0, "not-swapper");
  f.g.init_task = t;
  f.link_tasks({t});
  f.cpu(0, t);
  EXPECT_FALSE(enumerate_tasks(f.mem, f.k, f.g));
}

TEST(GuestTasks, DamagedListsEndWithWarnings) {
  for (int damage = 0; damage < 4; ++damage) {
    FakeKernel f;
    uint64_t swapper0 = f.task(0, "swapper/0");
    uint64_t a = f.task(1, "init");
    uint64_t b = f.task(2, "kthreadd");
    uint64_t c = f.task(3, "c");
    f.g.init_task = swapper0;
    f.link_tasks({swapper0, a, b, c});
    f.cpu(0, swapper0);
    switch (damage) {
      case 0:
        f.put(b + f.k.task_tasks, a + f.k.task_tasks);
        break;  // a loop that misses the head
      case 1:
        f.put(b + f.k.task_tasks, 0x4141414141414141);
        break;  // a wild pointer
      case 2:
        f.put(b + f.k.task_tasks, 0xffff8880dead0000);
        break;  // unmapped
      case 3:
        f.put(a + f.k.task_signal, 0);
        break;  // no signal struct
    }
    auto list = enumerate_tasks(f.mem, f.k, f.g);
    ASSERT_TRUE(list) << list.error();
    EXPECT_FALSE(list->warnings.empty()) << damage;
    EXPECT_LE(list->tasks.size(), 4u);
  }
}

}  // namespace
}  // namespace framecert::guest

// What the guest walker needs to know about the guest kernel's data structures, read from vmlinux: struct
// member offsets and sizes from its DWARF (libdw; never hard-coded). The addresses of its global and
// per-CPU variables (link-time = run-time: the guest has no KASLR) come from the unwinder's ELF reader
// (ElfImage::named, read_symbol_values in unwinder/elf_image.h).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "unwinder/result.h"

namespace framecert::guest {

// Where tracers that hook function returns keep the original return addresses (harness/guest/
// return_hooks_kernel.h). Each part is optional: `present` false when the kernel has no such member (its
// hooks are then never recovered: trampoline-return-unrecovered).
struct FgraphLayout {  // CONFIG_FUNCTION_GRAPH_TRACER: task->ret_stack[0..curr_ret_stack], entries .ret/.retp
  bool present = false;
  uint64_t task_curr_ret_stack = 0, curr_ret_stack_size = 0, task_ret_stack = 0;
  uint64_t entry_size = 0, entry_ret = 0, entry_retp = 0;  // struct ftrace_ret_stack
};
struct HookListLayout {  // an llist of nodes holding (original return address, the slot it was taken from)
  bool present = false;
  uint64_t task_head = 0;  // task_struct's llist_head.first
  uint64_t node_link = 0;  // the node's llist_node (what the list links point at)
  uint64_t link_next = 0;  // llist_node.next
  uint64_t node_ret = 0, node_frame = 0;
};

// struct ftrace_ops (CONFIG_DYNAMIC_FTRACE): the ops list and each op's trampoline (ftrace_trampolines.h).
struct FtraceOpsLayout {
  bool present = false;
  uint64_t next = 0, trampoline = 0, trampoline_size = 0;
  uint64_t trampoline_size_bytes = 0;  // 8 (unsigned long) or 4 (unsigned int)
};

// struct module and its sysfs section attributes (CONFIG_MODULES, CONFIG_KALLSYMS): where each loaded module's
// sections are, as /sys/module/NAME/sections/ shows them (harness/guest/guest_modules.h).
struct ModuleLayout {
  bool present = false;
  uint64_t list = 0, name = 0, name_len = 0, sect_attrs = 0;
  uint64_t state = 0;  // enum module_state: MODULE_STATE_LIVE (0) once its init returned and .init* was freed
  uint64_t attrs_nsections = 0, attrs_attrs = 0;            // struct module_sect_attrs
  uint64_t attr_size = 0, attr_name = 0, attr_address = 0;  // struct module_sect_attr: battr.attr.name, address
};

struct KernelLayout {
  // struct task_struct
  uint64_t task_size = 0;
  uint64_t task_tasks = 0, task_pid = 0, task_tgid = 0, task_comm = 0, task_comm_len = 0, task_state = 0;
  uint64_t task_on_cpu = 0, task_cpu = 0, task_stack = 0, task_thread_sp = 0, task_signal = 0;
  uint64_t task_thread_node = 0, task_flags = 0, task_mm = 0, task_real_parent = 0;
  uint64_t task_nvcsw = 0, task_nivcsw = 0;  // context-switch counts (the harness's truth for never-run tasks)
  // CONFIG_LIVEPATCH's per-task patch state (0: the kernel has no such member)
  uint64_t task_patch_state = 0;
  // struct signal_struct
  uint64_t signal_thread_head = 0;
  // struct inactive_task_frame (what __switch_to_asm leaves at thread.sp)
  uint64_t itf_size = 0, itf_bp = 0, itf_ret_addr = 0;
  // struct rq (per-CPU `runqueues`)
  uint64_t rq_idle = 0, rq_curr = 0;
  // union thread_union: THREAD_SIZE (0 if the DWARF lacks the type: see guest_walk.cpp)
  uint64_t thread_size = 0;
  // struct pt_regs
  uint64_t pt_regs_size = 0, pt_regs_cs = 0, pt_regs_ip = 0, pt_regs_sp = 0, pt_regs_bp = 0;
  // Hooked return addresses: the function_graph tracer, rethook (kretprobes since 5.19 where
  // CONFIG_KRETPROBE_ON_RETHOOK), and kretprobes' own list (before it).
  FgraphLayout fgraph;
  HookListLayout rethook;    // task->rethooks; struct rethook_node .llist/.ret_addr/.frame
  HookListLayout kretprobe;  // task->kretprobe_instances; struct kretprobe_instance .llist/.ret_addr/.fp
  FtraceOpsLayout ftrace_ops;
  ModuleLayout modules;
};

// Reads every offset above from the DWARF of `vmlinux`; fails naming the first one it cannot find.
Result<KernelLayout> read_kernel_layout(const std::string& vmlinux);

}  // namespace framecert::guest

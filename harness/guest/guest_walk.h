// The guest walk: every task of a frozen guest kernel walked by the unwinder library and judged.
//
// prepare() loads everything that does not depend on the frozen state (DWARF offsets, symbols, metadata of
// vmlinux and of loaded modules relocated to their section addresses); walk() then only reads guest RAM,
// so freeze-to-verdict is the walk itself.
//
// Where each task starts:
// - sleeping: from thread.sp, the struct inactive_task_frame __switch_to_asm left there (its saved rbp and
//   ret_addr, the return into __schedule), the way the kernel's unwind_start() does for a blocked task;
// - on a vCPU in kernel mode (the vCPU's rsp lies in its stack): from the vCPU's registers, the metadata's
//   CFA rule at that exact pc giving the first step;
// - on a vCPU in user mode: nothing on its kernel stack.
// The recognised end (kernel/unwind_frame.c's is_last_frame): the frame record just below the pt_regs at
// the top of the stack; the return address in it must be the entry code holding the user pt_regs (user
// tasks) or ret_from_fork (kthreads: its end-of-stack hint).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "harness/guest/ftrace_trampolines.h"
#include "harness/guest/guest_tasks.h"
#include "harness/guest/kernel_layout.h"
#include "harness/guest/return_hooks_kernel.h"
#include "unwinder/code_map.h"
#include "unwinder/memory_guest.h"
#include "unwinder/unwind.h"

namespace framecert::guest {

struct ModuleConfig {
  std::string name;
  std::string object;                        // the .ko (symbols)
  std::string metadata;                      // `framecert check --metadata` of the .ko: sections at 0
  std::map<std::string, uint64_t> sections;  // load address of each section (/sys/module/NAME/sections)
  // The objects linked into the module: their .discard.func_stack_frame_non_standard, which the module link
  // drops, names the STACK_FRAME_NON_STANDARD functions. Frames in those are never reliable; without the
  // objects (and without the section in the .ko) no frame of the module is.
  std::vector<std::string> objects;
};

class Vmcore;

struct GuestConfig {
  std::string ram;                        // QEMU's memory-backend file (file offset = guest-physical address)
  std::string vmcore;                     // instead of ram: a dump of the guest (vmcore.h), with its CPUs' registers
  std::shared_ptr<Vmcore> opened_vmcore;  // or that dump, already opened (Vmcore::open)
  std::string vmlinux;
  std::string metadata;                              // vmlinux's metadata at link addresses
  std::shared_ptr<const FrameTable> metadata_table;  // instead of the file: that metadata, already read
  std::vector<ModuleConfig> modules;
  // Besides `modules`: every other module the guest has loaded, read from its memory (guest_modules.h) and
  // found as NAME.ko in one of these directories, with the objects beside it; its metadata (left empty in its
  // ModuleConfig) by module_metadata.
  std::vector<std::string> module_dirs;
  std::function<Result<FrameTable>(const std::string& ko)> module_metadata;
};

struct CpuRegs {
  int cpu = 0;
  uint64_t rip = 0, rsp = 0, rbp = 0, cs = 0, cr3 = 0;
};

struct TaskReport {
  GuestTask task;
  bool running = false;  // found on a vCPU
  int vcpu = -1;
  bool user_mode = false;  // running in user mode: no kernel frames
  Unwind unwind;
  std::string note;
};

struct WalkReport {
  std::vector<TaskReport> tasks;
  std::vector<int> online_cpus;
  std::vector<std::string> warnings;
  std::vector<FtraceTrampoline> ftrace_trampolines;  // known code at this freeze (ftrace_trampolines.h)
  double enumerate_ms = 0, walk_ms = 0;
};

class GuestWalker {
 public:
  static Result<std::unique_ptr<GuestWalker>> prepare(const GuestConfig& config);
  // The guest must be frozen. `cpus`: each vCPU's registers (may be empty: then running tasks are judged
  // `no-registers`).
  Result<WalkReport> walk(const std::vector<CpuRegs>& cpus);
  // For tests: the guest memory as the walk sees it.
  Memory& memory() { return *memory_; }
  const KernelLayout& layout() const { return layout_; }
  const CodeMap& code() const { return code_; }
  uint64_t kernel_cr3() const { return kernel_cr3_; }     // init_top_pgt's physical address
  const Vmcore* vmcore() const { return vmcore_.get(); }  // the dump walked, if the config named one

 private:
  GuestWalker() = default;
  TaskReport walk_task(const GuestTask& t, const CpuRegs* regs, bool user_mode);

  GuestConfig config_;
  KernelLayout layout_;
  KernelGlobals globals_;
  uint64_t ret_from_fork_ = 0;
  uint64_t first_switch_ = 0;  // where a task that never ran returns at its first switch-in
  uint64_t idle_marker_ = 0;   // the address after secondary_startup_64's lretq (0: not found)
  HookTrampolines trampolines_;
  uint64_t kernel_cr3_ = 0;
  std::shared_ptr<const Vmcore> vmcore_;
  std::unique_ptr<GuestRam> ram_;
  std::unique_ptr<GuestVirtualMemory> memory_;
  CodeMap code_;        // fixed_code_ and the ftrace trampolines of the last walk
  CodeMap fixed_code_;  // vmlinux and the modules
  std::shared_ptr<const FrameTable> kernel_metadata_;
  FtraceOpsList ftrace_ops_list_;
  std::vector<TrampolineOriginal> trampoline_originals_;
  std::vector<std::string> prepare_warnings_;
};

}  // namespace framecert::guest

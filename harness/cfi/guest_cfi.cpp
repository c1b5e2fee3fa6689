#include "harness/cfi/guest_cfi.h"

#include <chrono>

#include <fmt/format.h>

#include "unwinder/elf_image.h"

namespace framecert::cfi {

namespace {
constexpr uint64_t kStartKernelMap = 0xffffffff80000000ull;  // __START_KERNEL_map (no KASLR)
}

Result<std::unique_ptr<GuestCfi>> GuestCfi::prepare(const CfiGuestConfig& config) {
  std::unique_ptr<GuestCfi> g(new GuestCfi());
  auto layout = guest::read_kernel_layout(config.vmlinux);
  if (!layout) return tl::unexpected(layout.error());
  g->layout_ = *layout;
  auto syms = read_symbol_values(config.vmlinux,
                                 {"init_task", "runqueues", "__per_cpu_offset", "__cpu_online_mask", "current_task",
                                  "init_top_pgt", "ret_from_fork", "__start_init_task", "__end_init_task"});
  if (!syms) return tl::unexpected(syms.error());
  for (const char* need : {"init_task", "runqueues", "__per_cpu_offset", "__cpu_online_mask", "init_top_pgt"})
    if (!syms->count(need)) return fail("{}: no symbol `{}`", config.vmlinux, need);
  g->globals_ =
      guest::KernelGlobals{(*syms)["init_task"], (*syms)["runqueues"], (*syms)["__per_cpu_offset"],
                           (*syms)["__cpu_online_mask"], syms->count("current_task") ? (*syms)["current_task"] : 0};
  if (g->layout_.thread_size == 0) {
    if (!syms->count("__start_init_task") || !syms->count("__end_init_task"))
      return fail("{}: no THREAD_SIZE", config.vmlinux);
    g->layout_.thread_size = (*syms)["__end_init_task"] - (*syms)["__start_init_task"];
  }
  uint64_t cr3 = (*syms)["init_top_pgt"] - kStartKernelMap;
  auto ram = GuestRam::map_file(config.ram);
  if (!ram) return tl::unexpected(ram.error());
  g->ram_ = std::make_unique<GuestRam>(std::move(*ram));
  auto self = translate(*g->ram_, cr3, GuestVirt((*syms)["init_top_pgt"]));
  if (!self || self->value != cr3) return fail("init_top_pgt at physical {:#x} does not map itself", cr3);
  g->memory_ = std::make_unique<GuestVirtualMemory>(*g->ram_, cr3);

  auto vmlinux = CfiImage::load_linked(config.vmlinux, "vmlinux");
  if (!vmlinux) return tl::unexpected(vmlinux.error());
  if (!(*vmlinux)->has_cfi()) return fail("{}: no .debug_frame or .eh_frame", config.vmlinux);
  g->code_.add(std::move(*vmlinux));
  for (const CfiModuleConfig& m : config.modules) {
    auto img = CfiImage::load_relocatable(m.object, m.name + ".ko", m.sections);
    if (!img) {
      g->warnings_.push_back(fmt::format("module {}: {}: its code has no truth", m.name, img.error()));
      continue;
    }
    for (const std::string& w : (*img)->warnings()) g->warnings_.push_back(w);
    if (!(*img)->has_cfi()) g->warnings_.push_back(fmt::format("module {}: no CFI for module code", m.name));
    g->code_.add(std::move(*img));
  }
  return g;
}

CfiTrace GuestCfi::unwind_task(const guest::GuestTask& t, const CfiCpuRegs* regs) {
  CfiTrace tr;
  const uint64_t high = t.stack + layout_.thread_size;
  const CfiStack stack{t.stack, high, high - layout_.pt_regs_size};
  if (regs) {
    CfiStart s;
    s.pc = regs->rip;
    s.regs[kRsp] = regs->rsp;
    s.regs[kRbp] = regs->rbp;
    return cfi_unwind(*memory_, code_, s, stack);
  }
  if (t.stack == 0) {
    tr.complete = true;
    tr.why = "the task exited: its stack is freed (no frames)";
    return tr;
  }
  if (t.thread_sp % 8 != 0 || t.thread_sp < t.stack || t.thread_sp + layout_.itf_size > high) {
    tr.why = fmt::format("no truth at frame 0: thread.sp {:#x} outside the stack [{:#x}, {:#x})", t.thread_sp, t.stack,
                         high);
    tr.stopped_at = 0;
    return tr;
  }
  auto bp = memory_->read_u64(RemoteAddr(t.thread_sp + layout_.itf_bp));
  auto ret = memory_->read_u64(RemoteAddr(t.thread_sp + layout_.itf_ret_addr));
  if (!bp || !ret) {
    tr.why = fmt::format("no truth at frame 0: memory unreadable at {:#x} (inactive_task_frame)",
                         (!bp ? bp.error() : ret.error()).address.value);
    tr.stopped_at = 0;
    return tr;
  }
  CfiStart s;
  s.pc = *ret;
  s.regs[kRsp] = t.thread_sp + layout_.itf_size;
  s.regs[kRbp] = *bp;
  s.pc_is_return_address = true;
  return cfi_unwind(*memory_, code_, s, stack);
}

Result<CfiGuestReport> GuestCfi::unwind(const std::vector<CfiCpuRegs>& cpus) {
  auto t0 = std::chrono::steady_clock::now();
  if (auto intact = ram_->check_intact(); !intact) return tl::unexpected(intact.error());
  auto list = guest::enumerate_tasks(*memory_, layout_, globals_);
  if (!list) return tl::unexpected(list.error());
  CfiGuestReport out;
  out.warnings = warnings_;
  out.warnings.insert(out.warnings.end(), list->warnings.begin(), list->warnings.end());
  // Which task each vCPU runs (as the guest walker decides it): in kernel mode the task whose stack holds
  // rsp; in user mode the CPU's current task.
  std::map<uint64_t, const CfiCpuRegs*> in_kernel;
  std::map<uint64_t, int> in_user;
  std::map<uint64_t, std::string> off_stack;
  for (const CfiCpuRegs& c : cpus) {
    uint64_t current = list->cpu_current_task.count(c.cpu) ? list->cpu_current_task[c.cpu] : list->cpu_curr[c.cpu];
    if ((c.cs & 3) == 3) {
      in_user[current] = c.cpu;
      continue;
    }
    bool found = false;
    for (const guest::GuestTask& t : list->tasks) {
      if (t.stack && c.rsp >= t.stack && c.rsp < t.stack + layout_.thread_size) {
        in_kernel[t.address] = &c;
        found = true;
        break;
      }
    }
    if (!found)
      off_stack[current] = fmt::format(
          "no truth at frame 0: CPU {} is in kernel mode on a stack outside this task's "
          "(rsp {:#x}: an IRQ, exception or entry stack)",
          c.cpu, c.rsp);
  }
  for (const guest::GuestTask& t : list->tasks) {
    CfiTaskReport r;
    r.task = t;
    if (auto k = in_kernel.find(t.address); k != in_kernel.end()) {
      r.running = true;
      r.vcpu = k->second->cpu;
      r.trace = unwind_task(t, k->second);
    } else if (auto u = in_user.find(t.address); u != in_user.end()) {
      r.running = true;
      r.vcpu = u->second;
      r.trace.complete = true;
      r.trace.why = fmt::format("running in user mode on CPU {}: no kernel frames", u->second);
    } else if (auto o = off_stack.find(t.address); o != off_stack.end()) {
      r.running = true;
      r.trace.why = o->second;
      r.trace.stopped_at = 0;
    } else if (t.on_cpu) {
      r.running = true;
      r.trace.why = cpus.empty() ? "no truth at frame 0: on a CPU, and no vCPU registers were given"
                                 : "no truth at frame 0: on a CPU but on no vCPU's stack (mid context switch)";
      r.trace.stopped_at = 0;
    } else {
      r.trace = unwind_task(t, nullptr);
    }
    out.tasks.push_back(std::move(r));
  }
  out.walk_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  return out;
}

}  // namespace framecert::cfi

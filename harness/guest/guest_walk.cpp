#include "harness/guest/guest_walk.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <optional>
#include <unordered_map>

#include <fmt/format.h>

#include "harness/guest/guest_modules.h"
#include "harness/guest/vmcore.h"
#include "unwinder/elf_image.h"
#include "unwinder/frame_builder.h"
#include "validator/elf_file.h"
#include "validator/idle_marker.h"
#include "validator/link_addresses.h"

namespace framecert::guest {

using namespace metadata;

namespace {

constexpr uint64_t kStartKernelMap = 0xffffffff80000000ull;  // __START_KERNEL_map

double ms_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

// Whether `ko` is the very module loaded: a .ko rebuilt since would lend its metadata to other code. The build-id
// the loaded module carries in memory (its .note.gnu.build-id section) must be the file's.
Result<bool> is_loaded_module(Memory& mem, const LoadedModule& m, const std::string& ko) {
  auto file = ElfFile::open(ko);
  if (!file) return tl::unexpected(file.error());
  auto note = m.sections.find(".note.gnu.build-id");
  std::string loaded;
  if (note != m.sections.end()) {
    uint8_t bytes[64];
    loaded = build_id_from_notes(bytes, mem.read(RemoteAddr(note->second), bytes, sizeof bytes));
  }
  if (loaded.empty() || (*file)->build_id().empty())
    return fail("{}: no build-id {} to tell it is the loaded module", ko, loaded.empty() ? "in memory" : "in the file");
  if (loaded != (*file)->build_id())
    return fail("{} (build-id {}) is not the loaded module (build-id {})", ko, (*file)->build_id(), loaded);
  return true;
}

// The loaded modules `config.modules` does not name, each with its NAME.ko from config.module_dir (a
// module without one is left out, with a warning: its code stays unknown, so no trace through it is reliable).
std::vector<ModuleConfig> modules_in_memory(Memory& mem, const ModuleLayout& layout, uint64_t modules_head,
                                            const GuestConfig& config, std::vector<std::string>& warnings) {
  std::vector<ModuleConfig> out;
  if (!layout.present) {
    warnings.push_back(fmt::format("{}: no struct module_sect_attrs in DWARF: loaded modules unknown", config.vmlinux));
    return out;
  }
  LoadedModules loaded = read_loaded_modules(mem, layout, modules_head);
  warnings.insert(warnings.end(), loaded.warnings.begin(), loaded.warnings.end());
  for (LoadedModule& m : loaded.modules) {
    if (std::any_of(config.modules.begin(), config.modules.end(),
                    [&](const ModuleConfig& c) { return c.name == m.name; }))
      continue;
    // The kernel spells a module's name with '_' (KBUILD_MODNAME); its file may have '-' instead.
    std::string dashed = m.name;
    std::replace(dashed.begin(), dashed.end(), '_', '-');
    std::filesystem::path ko;
    for (const std::string& dir : config.module_dirs) {
      for (const std::string& file : {m.name, dashed}) {
        const std::filesystem::path candidate = std::filesystem::path(dir) / (file + ".ko");
        if (ko.empty() && ::access(candidate.c_str(), R_OK) == 0) ko = candidate;
      }
    }
    if (ko.empty()) {
      warnings.push_back(fmt::format("module {}: no {}.ko in --modules: its code is unknown", m.name, m.name));
      continue;
    }
    if (auto same = is_loaded_module(mem, m, ko.string()); !same) {
      warnings.push_back(fmt::format("module {}: {}: its code is unknown", m.name, same.error()));
      continue;
    }
    ModuleConfig c;
    c.name = m.name;
    c.object = ko.string();
    c.sections = std::move(m.sections);
    // Where its STACK_FRAME_NON_STANDARD annotations survive: Kbuild links NAME.ko from NAME.o (every object of
    // the module, .discard.* included) and NAME.mod.o, and leaves NAME.o beside the .ko.
    std::filesystem::path object = ko;
    object.replace_extension(".o");
    if (::access(object.c_str(), R_OK) == 0) c.objects.push_back(object.string());
    out.push_back(std::move(c));
  }
  return out;
}

}  // namespace

Result<std::unique_ptr<GuestWalker>> GuestWalker::prepare(const GuestConfig& config) {
  std::unique_ptr<GuestWalker> w(new GuestWalker());
  w->config_ = config;
  auto layout = read_kernel_layout(config.vmlinux);
  if (!layout) return tl::unexpected(layout.error());
  w->layout_ = *layout;
  // vmlinux read once: its segments and function symbols (the code map below) and the kernel globals.
  auto image = read_elf_image(config.vmlinux, {"init_task",
                                               "runqueues",
                                               "__per_cpu_offset",
                                               "__cpu_online_mask",
                                               "current_task",
                                               "init_top_pgt",
                                               "ret_from_fork",
                                               "ret_from_fork_asm",
                                               "__start_init_task",
                                               "__end_init_task",
                                               "__start_init_stack",
                                               "__end_init_stack",
                                               "return_to_handler",
                                               "arch_rethook_trampoline",
                                               "__kretprobe_trampoline",
                                               "secondary_startup_64",
                                               "modules",
                                               "ftrace_ops_list",
                                               "ftrace_list_end",
                                               "ftrace_caller",
                                               "ftrace_caller_op_ptr",
                                               "ftrace_caller_end",
                                               "ftrace_regs_caller",
                                               "ftrace_regs_caller_op_ptr",
                                               "ftrace_regs_caller_end"});
  if (!image) return tl::unexpected(image.error());
  const auto& named = image->named;
  auto sym = [&](const char* n) { return named.count(n) ? named.at(n) : 0; };
  for (const char* need :
       {"init_task", "runqueues", "__per_cpu_offset", "__cpu_online_mask", "init_top_pgt", "ret_from_fork"})
    if (!named.count(need)) return fail("{}: no symbol `{}`", config.vmlinux, need);
  w->globals_ = KernelGlobals{sym("init_task"), sym("runqueues"), sym("__per_cpu_offset"), sym("__cpu_online_mask"),
                              sym("current_task")};
  w->ret_from_fork_ = sym("ret_from_fork");
  // A new task's first switch-in returns to the assembly entry: ret_from_fork itself up to 6.6, the
  // ret_from_fork_asm wrapper of the C ret_from_fork since 6.7.
  w->first_switch_ = sym("ret_from_fork_asm") ? sym("ret_from_fork_asm") : w->ret_from_fork_;
  // The tracers' trampolines (absent from a kernel without them: 0, never matched).
  w->trampolines_ =
      HookTrampolines{sym("return_to_handler"), sym("arch_rethook_trampoline"), sym("__kretprobe_trampoline")};
  // ftrace's dynamic trampolines are copies of these (absent symbols: 0, never matched).
  w->ftrace_ops_list_ = FtraceOpsList{sym("ftrace_ops_list"), sym("ftrace_list_end")};
  for (const char* n : {"ftrace_caller", "ftrace_regs_caller"}) {
    const std::string name = n;
    w->trampoline_originals_.push_back(
        TrampolineOriginal{name, sym(n), sym((name + "_end").c_str()), sym((name + "_op_ptr").c_str())});
  }
  if (w->layout_.thread_size == 0) {
    // INIT_TASK_DATA in the linker script: init_stack spans exactly THREAD_SIZE. Its bounds are named
    // __start/__end_init_task up to 6.7 and __start/__end_init_stack since.
    const char* start = named.count("__start_init_stack") ? "__start_init_stack" : "__start_init_task";
    const char* end = named.count("__end_init_stack") ? "__end_init_stack" : "__end_init_task";
    if (!named.count(start) || !named.count(end))
      return fail("{}: no THREAD_SIZE: neither union thread_union in DWARF nor __start/__end_init_stack (or _task)",
                  config.vmlinux);
    uint64_t size = sym(end) - sym(start);
    if (size < 4096 || (size & (size - 1)) != 0) return fail("{}: odd THREAD_SIZE {}", config.vmlinux, size);
    w->layout_.thread_size = size;
  }
  // The kernel's own page tables. Kernel-image shortcut (no KASLR; phys_base 0 unless a dump says
  // otherwise): checked below by translating init_top_pgt's own address through it.
  uint64_t phys_base = 0;
  if (!config.vmcore.empty() || config.opened_vmcore) {
    Result<std::shared_ptr<Vmcore>> core =
        config.opened_vmcore ? Result<std::shared_ptr<Vmcore>>(config.opened_vmcore) : Vmcore::open(config.vmcore);
    if (!core) return tl::unexpected(core.error());
    const VmcoreKernel& k = (*core)->kernel();
    if (k.kaslr_offset.value_or(0) != 0)
      return fail("{}: the kernel was relocated by KASLR (offset {:#x}); only kernels booted with nokaslr are walked",
                  config.vmcore, *k.kaslr_offset);
    if (!k.build_id.empty() && !image->build_id.empty() && k.build_id != image->build_id)
      return fail("{}: a dump of the kernel with build-id {}, not of {} ({})", config.vmcore, k.build_id,
                  config.vmlinux, image->build_id);
    phys_base = k.phys_base.value_or(0);
    w->ram_ = std::make_unique<GuestRam>(GuestRam::from_source(*core));
    w->vmcore_ = std::move(*core);
  } else {
    auto ram = GuestRam::map_file(config.ram);
    if (!ram) return tl::unexpected(ram.error());
    w->ram_ = std::make_unique<GuestRam>(std::move(*ram));
  }
  w->kernel_cr3_ = sym("init_top_pgt") - kStartKernelMap + phys_base;
  auto self = translate(*w->ram_, w->kernel_cr3_, GuestVirt(sym("init_top_pgt")));
  if (!self || self->value != w->kernel_cr3_)
    return fail("init_top_pgt at physical {:#x} does not map itself: not this kernel's RAM, or KASLR", w->kernel_cr3_);
  w->memory_ = std::make_unique<GuestVirtualMemory>(*w->ram_, w->kernel_cr3_);
  // An idle task's stack ends at head_64.S's marker: its address, found once with the validator's decoder in
  // the kernel text the guest runs (vmlinux is not read a second time for it).
  if (const uint64_t head = sym("secondary_startup_64")) {
    std::vector<uint8_t> code(kIdleMarkerSearch);
    code.resize(w->memory_->read(RemoteAddr(head), code.data(), code.size()));
    if (auto marker = find_idle_end_marker(code, head)) {
      w->idle_marker_ = *marker;
    } else {
      w->prepare_warnings_.push_back(fmt::format("idle tasks' stack end unknown: {}", marker.error()));
    }
  } else {
    w->prepare_warnings_.push_back(
        fmt::format("idle tasks' stack end unknown: {}: no secondary_startup_64", config.vmlinux));
  }

  // vmlinux: every executable segment, one metadata table for all.
  // A module's calls into the kernel are relocations to names: resolved against the names vmlinux has once.
  std::unordered_map<std::string, std::optional<uint64_t>> kernel_names;
  for (const Symbol& s : image->symbols.all()) {
    auto [it, fresh] = kernel_names.try_emplace(s.name, s.address);
    if (!fresh && it->second != s.address) it->second.reset();  // ambiguous: never guessed
  }
  auto symbols = std::make_shared<SymbolTable>(std::move(image->symbols));
  std::shared_ptr<const FrameTable> meta = config.metadata_table;
  std::string meta_error;
  if (!meta) {
    if (auto t = read_frame_table(config.metadata)) {
      meta = std::make_shared<const FrameTable>(std::move(*t));
    } else {
      meta_error = t.error();
      w->prepare_warnings_.push_back(meta_error);
    }
  }
  if (meta && !meta->linked)
    return fail("{}: not metadata at link addresses (check --link-addresses)",
                config.metadata.empty() ? config.vmlinux + "'s metadata" : config.metadata);
  w->kernel_metadata_ = meta;
  for (const LoadSegment& s : image->segments) {
    if (!s.executable || s.memsz == 0) continue;
    w->code_.add(CodeImage{"vmlinux", s.vaddr, s.vaddr + s.memsz, 0, meta, symbols, meta_error});
  }
  // Modules: metadata of the relocatable .ko, each section placed at its load address (by the validator,
  // beside vmlinux.o's placement at link addresses).
  std::vector<ModuleConfig> modules = config.modules;
  if (!config.module_dirs.empty()) {
    for (const ModuleConfig& m :
         modules_in_memory(*w->memory_, w->layout_.modules, sym("modules"), config, w->prepare_warnings_))
      modules.push_back(m);
  }
  for (const ModuleConfig& m : modules) {
    auto t =
        m.metadata.empty() && config.module_metadata ? config.module_metadata(m.object) : read_frame_table(m.metadata);
    if (!t) {
      w->prepare_warnings_.push_back(fmt::format("module {}: {}", m.name, t.error()));
      continue;
    }
    PlacedModule pm = place_at_load_addresses(std::move(*t), m.object, m.objects, m.sections);
    w->prepare_warnings_.insert(w->prepare_warnings_.end(), pm.warnings.begin(), pm.warnings.end());
    pm.table.resolve_symbol_targets([&](const std::string& name) -> std::optional<uint64_t> {
      auto it = kernel_names.find(name);
      return it == kernel_names.end() ? std::nullopt : it->second;
    });
    std::shared_ptr<const FrameTable> placed = std::make_shared<const FrameTable>(std::move(pm.table));
    auto mtable = std::make_shared<SymbolTable>(std::move(pm.symbols));
    // Without its STACK_FRAME_NON_STANDARD list, any function of the module may be one objtool was told not to
    // vouch for: its metadata is not trusted (its code stays known by name, for the reports).
    std::string refused;
    if (!pm.non_standard_known) {
      refused = fmt::format(
          "{}.ko: its STACK_FRAME_NON_STANDARD functions are unknown (the module link drops "
          "them: keep the NAME.o it was linked from beside it)",
          m.name);
      w->prepare_warnings_.push_back(refused);
      placed = nullptr;
    }
    for (auto [lo, hi] : pm.ranges) w->code_.add(CodeImage{m.name + ".ko", lo, hi, 0, placed, mtable, refused});
  }
  w->fixed_code_ = w->code_;
  return w;
}

TaskReport GuestWalker::walk_task(const GuestTask& t, const CpuRegs* regs, bool user_mode) {
  TaskReport r;
  r.task = t;
  const StackBounds bounds{t.stack, t.stack + layout_.thread_size};
  WalkContext ctx{*memory_, code_, bounds, WalkOptions{}};
  // Every judgement about this kernel stack is the judge's (unwinder/reliability.h): where it ends and what
  // the end record must hold, encoded frame pointers, STACK_FRAME_NON_STANDARD functions.
  const uint64_t pt_regs = bounds.high - layout_.pt_regs_size;
  ctx.options.end_frame = pt_regs - 16;
  ctx.options.end_record = KernelEndRecord{pt_regs, layout_.pt_regs_cs, ret_from_fork_, t.idle, idle_marker_};
  ctx.options.zeroed_rbp_ends_stack = false;  // kernel stacks end at the user pt_regs or ret_from_fork only
  // Return addresses a tracer replaced with its trampoline: recovered from this task's own records.
  KernelReturnHooks hooks(*memory_, layout_, trampolines_, t.address);
  ctx.options.return_hooks = &hooks;
  Trace& tr = r.unwind.trace;
  if (regs) {
    r.running = true;
    r.vcpu = regs->cpu;
    if (user_mode) {
      r.user_mode = true;
      tr.verdict = Verdict{true, Reason::None, -1, {}};
      r.unwind.cfa_trace.verdict = tr.verdict;
      r.unwind.cross_check = CrossCheck{true, -1, {}};
      r.note = fmt::format("running in user mode on CPU {}: no kernel frames", regs->cpu);
      return r;
    }
    r.unwind = unwind(ctx, Regs{regs->rip, regs->rsp, regs->rbp, -1});
    return r;
  }
  if (t.stack == 0) {
    // An exited task (a zombie not yet reaped) whose stack was already freed: nothing left to walk.
    tr.verdict = Verdict{false, Reason::NoRegisters, 0, "the task exited: its stack is freed (task->stack == NULL)"};
    return r;
  }
  if (!t.stack_magic_ok) r.note = "no STACK_END_MAGIC at the stack's end (overflowed?)";
  if (t.thread_sp % 8 != 0 || !bounds.contains(t.thread_sp, layout_.itf_size)) {
    tr.verdict =
        Verdict{false, Reason::FrameOutOfBounds, 0,
                fmt::format("thread.sp {:#x} outside the stack [{:#x}, {:#x})", t.thread_sp, bounds.low, bounds.high)};
    return r;
  }
  auto bp = memory_->read_u64(RemoteAddr(t.thread_sp + layout_.itf_bp));
  auto ret = memory_->read_u64(RemoteAddr(t.thread_sp + layout_.itf_ret_addr));
  if (!bp || !ret) {
    tr.verdict = Verdict{false, Reason::MemoryUnreadable, 0, (!bp ? bp.error() : ret.error()).describe()};
    return r;
  }
  if (*ret == first_switch_) {
    // Created, never run: its first switch-in goes to ret_from_fork.
    push_frame(tr, code_, *ret, t.thread_sp + layout_.itf_size, *bp, FrameTrust::Context);
    tr.verdict = Verdict{true, Reason::None, -1, {}};
    r.unwind.cfa_trace = tr;
    r.unwind.cross_check = CrossCheck{true, -1, {}};
    r.note = "has not run yet";
    return r;
  }
  // Frame 0 is a return address (into __schedule): the call before it must be proven, with a frame.
  ctx.options.innermost_is_return_address = true;
  r.unwind = unwind(ctx, Regs{*ret, t.thread_sp + layout_.itf_size, *bp, -1});
  return r;
}

Result<WalkReport> GuestWalker::walk(const std::vector<CpuRegs>& cpus) {
  auto t0 = std::chrono::steady_clock::now();
  if (auto intact = ram_->check_intact(); !intact) return tl::unexpected(intact.error());
  auto list = enumerate_tasks(*memory_, layout_, globals_);
  if (!list) return tl::unexpected(list.error());
  WalkReport out;
  // ftrace's trampolines come and go with tracers: read at each freeze, as the kernel's own lookup does.
  code_ = fixed_code_;
  FtraceTrampolines tramps =
      find_ftrace_trampolines(*memory_, layout_.ftrace_ops, ftrace_ops_list_, trampoline_originals_);
  for (const FtraceTrampoline& t : tramps.found) code_.add(trampoline_image(t, kernel_metadata_));
  out.ftrace_trampolines = tramps.found;
  out.enumerate_ms = ms_since(t0);
  out.online_cpus = list->online_cpus;
  out.warnings = prepare_warnings_;
  out.warnings.insert(out.warnings.end(), list->warnings.begin(), list->warnings.end());
  out.warnings.insert(out.warnings.end(), tramps.warnings.begin(), tramps.warnings.end());
  auto t1 = std::chrono::steady_clock::now();
  // Which task each vCPU runs: in kernel mode, the task whose stack holds rsp; in user mode, current_task.
  std::map<uint64_t, const CpuRegs*> on_vcpu;
  std::map<uint64_t, bool> in_user;
  std::map<uint64_t, std::pair<int, std::string>> off_stack;  // vCPU in kernel mode on another stack (IRQ, exception)
  for (const CpuRegs& c : cpus) {
    uint64_t current = list->cpu_current_task.count(c.cpu) ? list->cpu_current_task[c.cpu] : list->cpu_curr[c.cpu];
    if ((c.cs & 3) == 3) {
      on_vcpu[current] = &c;
      in_user[current] = true;
      continue;
    }
    bool found = false;
    for (const GuestTask& t : list->tasks) {
      if (c.rsp >= t.stack && c.rsp < t.stack + layout_.thread_size) {
        on_vcpu[t.address] = &c;
        found = true;
        break;
      }
    }
    if (!found) {
      off_stack[current].first = c.cpu;
      off_stack[current].second = fmt::format(
          "CPU {} is in kernel mode on a stack outside this task's (rsp {:#x}: an IRQ, "
          "exception or entry stack)",
          c.cpu, c.rsp);
    }
  }
  for (const GuestTask& t : list->tasks) {
    if (auto it = on_vcpu.find(t.address); it != on_vcpu.end()) {
      out.tasks.push_back(walk_task(t, it->second, in_user.count(t.address) > 0));
    } else if (auto o = off_stack.find(t.address); o != off_stack.end()) {
      TaskReport r;
      r.task = t;
      r.running = true;
      r.vcpu = o->second.first;
      r.unwind.trace.verdict = Verdict{false, Reason::InterruptFrameMidStack, 0, o->second.second};
      out.tasks.push_back(std::move(r));
    } else if (t.on_cpu) {
      TaskReport r;
      r.task = t;
      r.running = true;
      r.unwind.trace.verdict = Verdict{false, Reason::NoRegisters, 0,
                                       cpus.empty() ? "on a CPU, and no vCPU registers were given"
                                                    : "on a CPU but on no vCPU's stack: mid context switch"};
      out.tasks.push_back(std::move(r));
    } else {
      out.tasks.push_back(walk_task(t, nullptr, false));
    }
  }
  out.walk_ms = ms_since(t1);
  return out;
}

}  // namespace framecert::guest

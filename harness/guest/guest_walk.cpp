#include "harness/guest/guest_walk.h"

#include <fcntl.h>
#include <gelf.h>
#include <libelf.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <set>
#include <tuple>
#include <unordered_map>

#include <fmt/format.h>

#include "unwinder/elf_image.h"
#include "unwinder/frame_builder.h"
#include "unwinder/scoped_fd.h"
#include "validator/idle_marker.h"

namespace framecert::guest {

using namespace metadata;

namespace {

constexpr uint64_t kStartKernelMap = 0xffffffff80000000ull;  // __START_KERNEL_map

double ms_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

// Function symbols of a module, placed at its sections' load addresses; `nonstandard` receives the names
// of the functions its .discard.func_stack_frame_non_standard lists (STACK_FRAME_NON_STANDARD: objtool
// does not vouch for their frames).
Result<std::vector<Symbol>> module_symbols(const ModuleConfig& m, std::set<std::string>& nonstandard) {
  elf_version(EV_CURRENT);
  ScopedFd fd(::open(m.object.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return fail("{}: {}", m.object, std::strerror(errno));
  Elf* elf = elf_begin(fd.get(), ELF_C_READ_MMAP, nullptr);
  if (!elf) return fail("{}: not an ELF file", m.object);
  size_t shstrndx = 0;
  elf_getshdrstrndx(elf, &shstrndx);
  std::vector<Symbol> out;
  std::vector<std::pair<uint64_t, int64_t>> section_refs;  // (section index, offset)
  std::vector<std::tuple<uint64_t, uint64_t, std::string>> funcs;  // (section index, offset, name)
  for (Elf_Scn* scn = nullptr; (scn = elf_nextscn(elf, scn));) {
    GElf_Shdr sh;
    if (!gelf_getshdr(scn, &sh) || sh.sh_entsize == 0) continue;
    const char* scn_name = elf_strptr(elf, shstrndx, sh.sh_name);
    if (sh.sh_type == SHT_RELA && scn_name && std::strcmp(scn_name, ".rela.discard.func_stack_frame_non_standard") == 0) {
      Elf_Data* rdata = elf_getdata(scn, nullptr);
      Elf_Scn* symscn = elf_getscn(elf, sh.sh_link);
      GElf_Shdr symsh;
      Elf_Data* sdata = symscn ? elf_getdata(symscn, nullptr) : nullptr;
      if (!rdata || !sdata || !gelf_getshdr(symscn, &symsh)) continue;
      for (size_t i = 0; i < sh.sh_size / sh.sh_entsize; ++i) {
        GElf_Rela rela;
        GElf_Sym sym;
        if (!gelf_getrela(rdata, static_cast<int>(i), &rela) ||
            !gelf_getsym(sdata, static_cast<int>(GELF_R_SYM(rela.r_info)), &sym))
          continue;
        const char* name = elf_strptr(elf, symsh.sh_link, sym.st_name);
        if (name && *name && GELF_ST_TYPE(sym.st_info) == STT_FUNC) nonstandard.insert(name);
        // Against a section symbol: the function at that offset (resolved below).
        if (GELF_ST_TYPE(sym.st_info) == STT_SECTION) section_refs.emplace_back(sym.st_shndx, rela.r_addend);
      }
      continue;
    }
    if (sh.sh_type != SHT_SYMTAB) continue;
    Elf_Data* data = elf_getdata(scn, nullptr);
    if (!data) continue;
    for (size_t i = 0; i < sh.sh_size / sh.sh_entsize; ++i) {
      GElf_Sym sym;
      if (!gelf_getsym(data, static_cast<int>(i), &sym) || GELF_ST_TYPE(sym.st_info) != STT_FUNC) continue;
      if (sym.st_shndx == SHN_UNDEF || sym.st_shndx >= SHN_LORESERVE) continue;
      GElf_Shdr target;
      Elf_Scn* tscn = elf_getscn(elf, sym.st_shndx);
      if (!tscn || !gelf_getshdr(tscn, &target)) continue;
      const char* secname = elf_strptr(elf, shstrndx, target.sh_name);
      const char* name = elf_strptr(elf, sh.sh_link, sym.st_name);
      if (!secname || !name || !*name) continue;
      funcs.emplace_back(sym.st_shndx, sym.st_value, name);
      auto it = m.sections.find(secname);
      if (it == m.sections.end()) continue;
      out.push_back(Symbol{it->second + sym.st_value, sym.st_size, name});
    }
  }
  for (auto [shndx, off] : section_refs)
    for (const auto& [fs, fv, fn] : funcs)
      if (fs == shndx && static_cast<int64_t>(fv) == off) nonstandard.insert(fn);
  elf_end(elf);
  return out;
}

}  // namespace

Result<std::unique_ptr<GuestWalker>> GuestWalker::prepare(const GuestConfig& config) {
  std::unique_ptr<GuestWalker> w(new GuestWalker());
  w->config_ = config;
  auto layout = read_kernel_layout(config.vmlinux);
  if (!layout) return tl::unexpected(layout.error());
  w->layout_ = *layout;
  auto syms = read_kernel_symbols(config.vmlinux, {"init_task", "runqueues", "__per_cpu_offset", "__cpu_online_mask",
                                                   "current_task", "init_top_pgt", "ret_from_fork",
                                                   "__start_init_task", "__end_init_task"});
  if (!syms) return tl::unexpected(syms.error());
  for (const char* need : {"init_task", "runqueues", "__per_cpu_offset", "__cpu_online_mask", "init_top_pgt",
                           "ret_from_fork"})
    if (!syms->count(need)) return fail("{}: no symbol `{}`", config.vmlinux, need);
  w->globals_ = KernelGlobals{(*syms)["init_task"], (*syms)["runqueues"], (*syms)["__per_cpu_offset"],
                              (*syms)["__cpu_online_mask"], syms->count("current_task") ? (*syms)["current_task"] : 0};
  w->ret_from_fork_ = (*syms)["ret_from_fork"];
  // An idle task's stack ends at head_64.S's marker: its address, found once with the validator's decoder.
  if (auto marker = find_idle_end_marker(config.vmlinux)) {
    w->idle_marker_ = *marker;
  } else {
    w->prepare_warnings_.push_back(fmt::format("idle tasks' stack end unknown: {}", marker.error()));
  }
  if (w->layout_.thread_size == 0) {
    // INIT_TASK_DATA in the linker script: init_stack spans exactly THREAD_SIZE.
    if (!syms->count("__start_init_task") || !syms->count("__end_init_task"))
      return fail("{}: no THREAD_SIZE: neither union thread_union in DWARF nor __start/__end_init_task", config.vmlinux);
    uint64_t size = (*syms)["__end_init_task"] - (*syms)["__start_init_task"];
    if (size < 4096 || (size & (size - 1)) != 0) return fail("{}: odd THREAD_SIZE {}", config.vmlinux, size);
    w->layout_.thread_size = size;
  }
  // The kernel's own page tables. Kernel-image shortcut (no KASLR, phys_base 0): checked below by
  // translating init_top_pgt's own address through it.
  w->kernel_cr3_ = (*syms)["init_top_pgt"] - kStartKernelMap;

  auto ram = GuestRam::map_file(config.ram);
  if (!ram) return tl::unexpected(ram.error());
  w->ram_ = std::make_unique<GuestRam>(std::move(*ram));
  auto self = translate(*w->ram_, w->kernel_cr3_, GuestVirt((*syms)["init_top_pgt"]));
  if (!self || self->value != w->kernel_cr3_)
    return fail("init_top_pgt at physical {:#x} does not map itself: not this kernel's RAM, or KASLR", w->kernel_cr3_);
  w->memory_ = std::make_unique<GuestVirtualMemory>(*w->ram_, w->kernel_cr3_);

  // vmlinux: every executable segment, one metadata table for all.
  auto image = read_elf_image(config.vmlinux);
  if (!image) return tl::unexpected(image.error());
  // A module's calls into the kernel are relocations to names: resolved against the names vmlinux has once.
  std::unordered_map<std::string, std::optional<uint64_t>> kernel_names;
  for (const Symbol& s : image->symbols.all()) {
    auto [it, fresh] = kernel_names.try_emplace(s.name, s.address);
    if (!fresh && it->second != s.address) it->second.reset();  // ambiguous: never guessed
  }
  auto symbols = std::make_shared<SymbolTable>(std::move(image->symbols));
  std::shared_ptr<const FrameTable> meta;
  std::string meta_error;
  if (auto t = read_frame_table(config.metadata)) {
    if (!t->linked) return fail("{}: not metadata at link addresses (check --link-addresses)", config.metadata);
    meta = std::make_shared<FrameTable>(std::move(*t));
  } else {
    meta_error = t.error();
    w->prepare_warnings_.push_back(meta_error);
  }
  for (const LoadSegment& s : image->segments) {
    if (!s.executable || s.memsz == 0) continue;
    w->code_.add(CodeImage{"vmlinux", s.vaddr, s.vaddr + s.memsz, 0, meta, symbols, meta_error});
  }
  // Modules: metadata of the relocatable .ko, each section placed at its load address.
  for (const ModuleConfig& m : config.modules) {
    auto t = read_frame_table(m.metadata);
    if (!t) {
      w->prepare_warnings_.push_back(fmt::format("module {}: {}", m.name, t.error()));
      continue;
    }
    auto placed = std::make_shared<FrameTable>(std::move(*t));
    placed->linked = true;
    placed->resolve_symbol_targets([&](const std::string& name) -> std::optional<uint64_t> {
      auto it = kernel_names.find(name);
      return it == kernel_names.end() ? std::nullopt : it->second;
    });
    std::vector<std::pair<uint64_t, uint64_t>> ranges;
    for (FrameSection& s : placed->sections) {
      auto it = m.sections.find(s.name);
      if (it == m.sections.end()) {
        s.size = 0;  // not loaded (e.g. .init.text freed): describes nothing
        continue;
      }
      s.address = it->second;
      if (s.size) ranges.emplace_back(s.address, s.address + s.size);
    }
    std::set<std::string> nonstandard;
    auto msyms = module_symbols(m, nonstandard);
    // Kbuild's module link discards .discard.*: the annotations survive only in the module's objects.
    for (const std::string& o : m.objects) {
      ModuleConfig obj;
      obj.object = o;
      if (auto r = module_symbols(obj, nonstandard); !r) w->prepare_warnings_.push_back(r.error());
    }
    if (!msyms) w->prepare_warnings_.push_back(msyms.error());
    for (FunctionEntry& f : placed->functions)
      if (nonstandard.count(f.name)) f.flags |= kFuncNonStandard;
    auto mtable = std::make_shared<SymbolTable>(msyms ? std::move(*msyms) : std::vector<Symbol>{});
    for (auto [lo, hi] : ranges) w->code_.add(CodeImage{m.name + ".ko", lo, hi, 0, placed, mtable, {}});
  }
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
    tr.verdict = Verdict{false, Reason::FrameOutOfBounds, 0,
                         fmt::format("thread.sp {:#x} outside the stack [{:#x}, {:#x})", t.thread_sp, bounds.low,
                                     bounds.high)};
    return r;
  }
  auto bp = memory_->read_u64(RemoteAddr(t.thread_sp + layout_.itf_bp));
  auto ret = memory_->read_u64(RemoteAddr(t.thread_sp + layout_.itf_ret_addr));
  if (!bp || !ret) {
    tr.verdict = Verdict{false, Reason::MemoryUnreadable, 0, (!bp ? bp.error() : ret.error()).describe()};
    return r;
  }
  if (*ret == ret_from_fork_) {
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
  out.enumerate_ms = ms_since(t0);
  out.online_cpus = list->online_cpus;
  out.warnings = prepare_warnings_;
  out.warnings.insert(out.warnings.end(), list->warnings.begin(), list->warnings.end());
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
      off_stack[current].second = fmt::format("CPU {} is in kernel mode on a stack outside this task's (rsp {:#x}: an IRQ, "
                                       "exception or entry stack)", c.cpu, c.rsp);
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

#include "harness/guest/kernel_layout.h"

#include <dwarf.h>
#include <elfutils/libdw.h>
#include <fcntl.h>
#include <unistd.h>

#include <cstring>
#include <map>

#include <fmt/format.h>
#include <optional>
#include <set>
#include <vector>

#include "unwinder/scoped_fd.h"

namespace framecert::guest {

namespace {

struct DwarfHandle {
  Dwarf* dw = nullptr;
  ~DwarfHandle() {
    if (dw) dwarf_end(dw);
  }
};

// Strips typedefs and qualifiers.
bool resolve_type(Dwarf_Die* die, Dwarf_Die* out) {
  Dwarf_Attribute attr;
  Dwarf_Die cur;
  if (!dwarf_attr_integrate(die, DW_AT_type, &attr) || !dwarf_formref_die(&attr, &cur)) return false;
  for (int i = 0; i < 16; ++i) {
    int tag = dwarf_tag(&cur);
    if (tag != DW_TAG_typedef && tag != DW_TAG_const_type && tag != DW_TAG_volatile_type) break;
    Dwarf_Die next;
    if (!dwarf_attr_integrate(&cur, DW_AT_type, &attr) || !dwarf_formref_die(&attr, &next)) return false;
    cur = next;
  }
  *out = cur;
  return true;
}

std::optional<uint64_t> member_location(Dwarf_Die* member) {
  Dwarf_Attribute attr;
  Dwarf_Word off = 0;
  if (!dwarf_attr_integrate(member, DW_AT_data_member_location, &attr)) return 0;  // unions
  if (dwarf_formudata(&attr, &off) != 0) return std::nullopt;  // location expressions: not used by GCC here
  return off;
}

// A member of `type` by name, searching anonymous struct/union members too. Returns its offset and, in
// *member, its DIE.
std::optional<uint64_t> find_member(Dwarf_Die* type, const char* name, Dwarf_Die* member) {
  Dwarf_Die child;
  if (dwarf_child(type, &child) != 0) return std::nullopt;
  do {
    if (dwarf_tag(&child) != DW_TAG_member) continue;
    const char* n = dwarf_diename(&child);
    auto off = member_location(&child);
    if (!off) continue;
    if (n && std::strcmp(n, name) == 0) {
      *member = child;
      return off;
    }
    if (!n) {
      Dwarf_Die sub;
      if (resolve_type(&child, &sub)) {
        if (auto inner = find_member(&sub, name, member)) return *off + *inner;
      }
    }
  } while (dwarf_siblingof(&child, &child) == 0);
  return std::nullopt;
}

class Types {
 public:
  std::map<std::string, Dwarf_Die> found;

  // Scans the top-level DIEs of every unit until all wanted complete struct/union types are found.
  void scan(Dwarf* dw, std::set<std::string> wanted) {
    Dwarf_CU* cu = nullptr;
    Dwarf_Die cudie, subdie;
    uint8_t unit_type;
    while (!wanted.empty() && dwarf_get_units(dw, cu, &cu, nullptr, &unit_type, &cudie, &subdie) == 0) {
      Dwarf_Die child;
      if (dwarf_child(&cudie, &child) != 0) continue;
      do {
        int tag = dwarf_tag(&child);
        if (tag != DW_TAG_structure_type && tag != DW_TAG_union_type) continue;
        const char* n = dwarf_diename(&child);
        if (!n || !wanted.count(n) || dwarf_hasattr(&child, DW_AT_declaration)) continue;
        found[n] = child;
        wanted.erase(n);
      } while (dwarf_siblingof(&child, &child) == 0);
    }
  }
};

// The tracers' hook records (KernelLayout::fgraph, rethook, kretprobe) and ftrace's ops: every member or none. A kernel
// built without a tracer, or an older layout (ftrace_ret_stack without retp: !HAVE_FUNCTION_GRAPH_RET_ADDR_PTR), leaves
// that part absent, never an error: its hooks are then reported unrecovered.
template <typename SizeOf, typename OffsetOf>
void read_hook_layouts(const std::map<std::string, Dwarf_Die>& found, SizeOf& size_of, OffsetOf& offset_of,
                       std::string& error, KernelLayout& k) {
  auto all_or_none = [&](auto&& read) {
    std::string saved = error;
    error.clear();
    read();
    const bool ok = error.empty();
    error = saved;
    return ok;
  };
  if (found.count("ftrace_ret_stack")) {
    FgraphLayout f;
    f.present = all_or_none([&] {
      f.task_curr_ret_stack = offset_of("task_struct", "curr_ret_stack", &f.curr_ret_stack_size);
      f.task_ret_stack = offset_of("task_struct", "ret_stack");
      f.entry_size = size_of("ftrace_ret_stack");
      f.entry_ret = offset_of("ftrace_ret_stack", "ret");
      f.entry_retp = offset_of("ftrace_ret_stack", "retp");
    });
    if (f.present && (f.curr_ret_stack_size == 4 || f.curr_ret_stack_size == 8) && f.entry_size > 0) k.fgraph = f;
  }
  auto list = [&](const char* type, const char* head, const char* link, const char* ret, const char* frame) {
    HookListLayout l;
    if (!found.count(type)) return l;
    l.present = all_or_none([&] {
      l.task_head = offset_of("task_struct", std::string(head) + ".first");
      l.node_link = offset_of(type, link);
      l.link_next = offset_of(type, std::string(link) + ".next") - l.node_link;
      l.node_ret = offset_of(type, ret);
      l.node_frame = offset_of(type, frame);
    });
    return l;
  };
  k.rethook = list("rethook_node", "rethooks", "llist", "ret_addr", "frame");
  // With CONFIG_KRETPROBE_ON_RETHOOK a kretprobe_instance is a rethook_node: no llist of its own, absent here.
  k.kretprobe = list("kretprobe_instance", "kretprobe_instances", "llist", "ret_addr", "fp");
  if (found.count("ftrace_ops")) {
    FtraceOpsLayout o;
    o.present = all_or_none([&] {
      o.next = offset_of("ftrace_ops", "next");
      o.trampoline = offset_of("ftrace_ops", "trampoline");
      o.trampoline_size = offset_of("ftrace_ops", "trampoline_size", &o.trampoline_size_bytes);
    });
    if (o.present && (o.trampoline_size_bytes == 4 || o.trampoline_size_bytes == 8)) k.ftrace_ops = o;
  }
}

}  // namespace

Result<KernelLayout> read_kernel_layout(const std::string& vmlinux) {
  ScopedFd fd(::open(vmlinux.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return fail("{}: {}", vmlinux, std::strerror(errno));
  DwarfHandle h;
  h.dw = dwarf_begin(fd.get(), DWARF_C_READ);
  if (!h.dw) return fail("{}: no DWARF: {}", vmlinux, dwarf_errmsg(-1));
  Types types;
  types.scan(
      h.dw, {"task_struct", "signal_struct", "inactive_task_frame", "rq", "thread_union", "pt_regs", "ftrace_ret_stack",
             "rethook_node", "kretprobe_instance", "ftrace_ops", "module", "module_sect_attrs", "module_sect_attr"});
  for (const char* t : {"task_struct", "signal_struct", "inactive_task_frame", "rq", "pt_regs"})
    if (!types.found.count(t)) return fail("{}: DWARF has no complete `{}`", vmlinux, t);

  std::string error;
  auto size_of = [&](const char* type) -> uint64_t {
    Dwarf_Die die = types.found[type];
    Dwarf_Word size = 0;
    Dwarf_Attribute attr;
    if (!dwarf_attr_integrate(&die, DW_AT_byte_size, &attr) || dwarf_formudata(&attr, &size) != 0) {
      if (error.empty()) error = fmt::format("no size for `{}`", type);
    }
    return size;
  };
  // "a.b.c": nested members.
  auto offset_of = [&](const char* type, const std::string& path, uint64_t* size = nullptr) -> uint64_t {
    Dwarf_Die cur = types.found[type];
    uint64_t total = 0;
    size_t pos = 0;
    while (true) {
      size_t dot = path.find('.', pos);
      std::string part = path.substr(pos, dot == std::string::npos ? std::string::npos : dot - pos);
      Dwarf_Die member;
      auto off = find_member(&cur, part.c_str(), &member);
      if (!off) {
        if (error.empty()) error = fmt::format("no member `{}` in `{}`", path, type);
        return 0;
      }
      total += *off;
      Dwarf_Die mtype;
      if (!resolve_type(&member, &mtype)) {
        if (error.empty()) error = fmt::format("no type for `{}.{}`", type, path);
        return 0;
      }
      if (dot == std::string::npos) {
        if (size) {
          Dwarf_Word s = 0;
          Dwarf_Attribute attr;
          if (dwarf_tag(&mtype) == DW_TAG_array_type) {
            // char comm[16]: the subrange's upper bound (gcc) or its count (clang).
            Dwarf_Die sub;
            if (dwarf_child(&mtype, &sub) == 0) {
              if (dwarf_attr_integrate(&sub, DW_AT_upper_bound, &attr) && dwarf_formudata(&attr, &s) == 0)
                s += 1;
              else if (dwarf_attr_integrate(&sub, DW_AT_count, &attr))
                dwarf_formudata(&attr, &s);
            }
          } else if (dwarf_attr_integrate(&mtype, DW_AT_byte_size, &attr)) {
            dwarf_formudata(&attr, &s);
          }
          *size = s;
        }
        return total;
      }
      cur = mtype;
      pos = dot + 1;
    }
  };

  KernelLayout k;
  k.task_size = size_of("task_struct");
  k.task_tasks = offset_of("task_struct", "tasks");
  k.task_pid = offset_of("task_struct", "pid");
  k.task_tgid = offset_of("task_struct", "tgid");
  k.task_comm = offset_of("task_struct", "comm", &k.task_comm_len);
  k.task_state = offset_of("task_struct", "__state");
  k.task_on_cpu = offset_of("task_struct", "on_cpu");
  {
    // 5.16+: thread_info.cpu; before: task_struct.cpu.
    std::string saved = error;
    k.task_cpu = offset_of("task_struct", "thread_info.cpu");
    if (error != saved) {
      error = saved;
      k.task_cpu = offset_of("task_struct", "cpu");
    }
  }
  k.task_stack = offset_of("task_struct", "stack");
  k.task_thread_sp = offset_of("task_struct", "thread.sp");
  k.task_signal = offset_of("task_struct", "signal");
  k.task_thread_node = offset_of("task_struct", "thread_node");
  k.task_flags = offset_of("task_struct", "flags");
  k.task_mm = offset_of("task_struct", "mm");
  k.task_real_parent = offset_of("task_struct", "real_parent");
  k.task_nvcsw = offset_of("task_struct", "nvcsw");
  k.task_nivcsw = offset_of("task_struct", "nivcsw");
  {
    // Only with CONFIG_LIVEPATCH: optional.
    std::string saved = error;
    k.task_patch_state = offset_of("task_struct", "patch_state");
    error = saved;
  }
  k.signal_thread_head = offset_of("signal_struct", "thread_head");
  k.itf_size = size_of("inactive_task_frame");
  k.itf_bp = offset_of("inactive_task_frame", "bp");
  k.itf_ret_addr = offset_of("inactive_task_frame", "ret_addr");
  k.rq_idle = offset_of("rq", "idle");
  k.rq_curr = offset_of("rq", "curr");
  // THREAD_SIZE: sizeof(union thread_union) when the DWARF has it (often unused, so absent); otherwise the
  // caller takes it from the linker's __start_init_task/__end_init_task.
  if (types.found.count("thread_union")) k.thread_size = size_of("thread_union");
  k.pt_regs_size = size_of("pt_regs");
  k.pt_regs_cs = offset_of("pt_regs", "cs");
  k.pt_regs_ip = offset_of("pt_regs", "ip");
  k.pt_regs_sp = offset_of("pt_regs", "sp");
  k.pt_regs_bp = offset_of("pt_regs", "bp");
  if (!error.empty()) return fail("{}: {}", vmlinux, error);
  read_hook_layouts(types.found, size_of, offset_of, error, k);
  if (types.found.count("module") && types.found.count("module_sect_attrs") && types.found.count("module_sect_attr")) {
    ModuleLayout& m = k.modules;
    m.list = offset_of("module", "list");
    m.name = offset_of("module", "name", &m.name_len);
    m.sect_attrs = offset_of("module", "sect_attrs");
    m.state = offset_of("module", "state");
    m.attrs_nsections = offset_of("module_sect_attrs", "nsections");
    m.attrs_attrs = offset_of("module_sect_attrs", "attrs");
    m.attr_size = size_of("module_sect_attr");
    m.attr_name = offset_of("module_sect_attr", "battr.attr.name");
    m.attr_address = offset_of("module_sect_attr", "address");
    m.present = error.empty();
    if (!m.present) return fail("{}: {}", vmlinux, error);
  }
  if (k.task_comm_len == 0 || k.task_comm_len > 64)
    return fail("{}: odd task_struct.comm size {}", vmlinux, k.task_comm_len);
  if (k.thread_size != 0 && (k.thread_size < 4096 || (k.thread_size & (k.thread_size - 1)) != 0))
    return fail("{}: odd THREAD_SIZE {} (sizeof(union thread_union))", vmlinux, k.thread_size);
  return k;
}

}  // namespace framecert::guest

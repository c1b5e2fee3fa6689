#include "harness/guest/guest_modules.h"

#include <set>

#include <fmt/format.h>

namespace framecert::guest {

namespace {
constexpr size_t kMaxModules = 4096;  // a looping or damaged list ends here
constexpr uint32_t kMaxSections = 1024;
constexpr size_t kMaxSectionName = 128;
constexpr uint32_t kModuleStateLive = 0;  // MODULE_STATE_LIVE

std::string read_c_string(Memory& mem, uint64_t addr, size_t max) {
  std::string out(max, '\0');
  out.resize(mem.read(RemoteAddr(addr), out.data(), max));
  if (auto nul = out.find('\0'); nul != std::string::npos) out.resize(nul);
  return out;
}
}  // namespace

LoadedModules read_loaded_modules(Memory& mem, const ModuleLayout& k, uint64_t modules_head) {
  LoadedModules out;
  if (!k.present || modules_head == 0) return out;
  std::set<uint64_t> seen;
  auto next = mem.read_u64(RemoteAddr(modules_head));
  while (next && *next != modules_head) {
    if (out.modules.size() >= kMaxModules || !seen.insert(*next).second) {
      out.warnings.push_back(fmt::format("the module list loops at {:#x}: read no further", *next));
      break;
    }
    const uint64_t module = *next - k.list;
    LoadedModule m;
    m.name = read_c_string(mem, module + k.name, k.name_len);
    const std::string who = m.name.empty() ? fmt::format("module at {:#x}", module) : "module " + m.name;
    uint32_t state = ~0u;
    const bool live =
        mem.read(RemoteAddr(module + k.state), &state, sizeof state) == sizeof state && state == kModuleStateLive;
    auto attrs = mem.read_u64(RemoteAddr(module + k.sect_attrs));
    uint32_t count = 0;
    if (attrs && *attrs != 0 &&
        mem.read(RemoteAddr(*attrs + k.attrs_nsections), &count, sizeof count) == sizeof count &&
        count <= kMaxSections) {
      for (uint32_t i = 0; i < count; ++i) {
        const uint64_t attr = *attrs + k.attrs_attrs + i * k.attr_size;
        auto name = mem.read_u64(RemoteAddr(attr + k.attr_name));
        auto address = mem.read_u64(RemoteAddr(attr + k.attr_address));
        if (!name || !address) {
          out.warnings.push_back(fmt::format("{}: section attribute {} unreadable", who, i));
          continue;
        }
        std::string section = read_c_string(mem, *name, kMaxSectionName);
        if (live && section.rfind(".init", 0) == 0) continue;
        m.sections[section] = *address;
      }
    } else {
      out.warnings.push_back(fmt::format("{}: no readable section list: its code is unknown", who));
    }
    out.modules.push_back(std::move(m));
    next = mem.read_u64(RemoteAddr(*next));
  }
  if (!next) out.warnings.push_back(fmt::format("the module list is unreadable: {}", next.error().describe()));
  return out;
}

}  // namespace framecert::guest

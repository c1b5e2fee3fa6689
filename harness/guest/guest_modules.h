// The modules a frozen guest (or its dump) has loaded, and where their sections are: the kernel's `modules`
// list and each module's sect_attrs, the very records /sys/module/NAME/sections/ prints. The live harness asks
// the guest for them; a dump can only be asked this way. Every pointer is checked: a damaged list ends with a
// warning, never a crash.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "harness/guest/kernel_layout.h"
#include "unwinder/memory.h"

namespace framecert::guest {

struct LoadedModule {
  std::string name;
  // ".text" -> its load address, ... Without the .init* sections of a live module: the kernel freed them when
  // its init returned (sysfs still lists their old addresses, where other modules may now be loaded).
  std::map<std::string, uint64_t> sections;
};

struct LoadedModules {
  std::vector<LoadedModule> modules;
  std::vector<std::string> warnings;
};

// `modules_head`: the address of the kernel's `modules` list head (0: none, nothing is read).
LoadedModules read_loaded_modules(Memory& mem, const ModuleLayout& layout, uint64_t modules_head);

}  // namespace framecert::guest

// STACK_FRAME_NON_STANDARD(func): the kernel puts a reference to func in .discard.func_stack_frame_non_standard
// (objtool then skips func). Decoded here only, for the validator (which skips those functions too) and for
// the placement of a kernel module's metadata (whose functions named there are never vouched for; the module
// link drops .discard.*, so they are read from the objects linked into it).
#pragma once

#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "validator/elf_file.h"

namespace framecert {

struct NonStandardEntry {
  // The referenced symbol is a function: that function (ElfFile::symbols() index). Otherwise (a section
  // symbol) the function starting at `offset` in `section`.
  bool function_symbol = false;
  uint32_t symbol = 0;
  uint32_t section = 0;
  uint64_t offset = 0;
};

// The entries of `elf`'s .discard.func_stack_frame_non_standard (none without one). Entries against
// symbols that are neither functions nor sections name nothing and are left out.
std::vector<NonStandardEntry> read_non_standard(const ElfFile& elf);

// Whether `elf` has the annotation section at all (a linked module that kept it, even empty, lost nothing).
bool has_non_standard_section(const ElfFile& elf);

// The names of every function symbol those entries name (a function and its aliases at the same place).
std::set<std::string> non_standard_function_names(const ElfFile& elf);

}  // namespace framecert

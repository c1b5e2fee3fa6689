#include "validator/non_standard.h"

#include <elf.h>

namespace framecert {

namespace {
constexpr char kSection[] = ".discard.func_stack_frame_non_standard";
}  // namespace

bool has_non_standard_section(const ElfFile& elf) { return elf.section_by_name(kSection) != nullptr; }

std::vector<NonStandardEntry> read_non_standard(const ElfFile& elf) {
  std::vector<NonStandardEntry> out;
  const ElfSection* sec = elf.section_by_name(kSection);
  if (!sec) return out;
  for (const ElfReloc& r : elf.relocs_for(sec->index)) {
    const ElfSymbol& s = elf.symbols()[r.symbol()];  // ElfFile checked the index
    if (s.type == STT_FUNC)
      out.push_back({true, s.index, s.section, s.offset});
    else if (s.type == STT_SECTION)
      out.push_back({false, s.index, s.section, static_cast<uint64_t>(r.addend)});
  }
  return out;
}

std::set<std::string> non_standard_function_names(const ElfFile& elf) {
  std::set<std::string> out;
  for (const NonStandardEntry& e : read_non_standard(elf)) {
    if (e.function_symbol && !elf.symbols()[e.symbol].name.empty()) out.emplace(elf.symbols()[e.symbol].name);
    for (const ElfSymbol& s : elf.symbols())
      if (!e.function_symbol && s.type == STT_FUNC && s.defined() && !s.name.empty() && s.section == e.section &&
          s.offset == e.offset)
        out.emplace(s.name);
  }
  return out;
}

}  // namespace framecert

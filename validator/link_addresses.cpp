#include "validator/link_addresses.h"

#include <elf.h>

#include <algorithm>
#include <set>
#include <unordered_map>

#include "validator/elf_file.h"
#include "validator/non_standard.h"

namespace framecert {

namespace {

struct Run {
  uint32_t section;
  uint64_t begin, end;  // section offsets
  int64_t delta;        // link address - offset
};

struct Anchor {
  uint64_t offset, size;
  std::string name;
};

using Addresses = std::unordered_map<std::string, std::vector<uint64_t>>;

bool is_code_label(const ElfSymbol& s) {
  return (s.type == STT_FUNC || s.type == STT_NOTYPE) && s.defined() && !s.name.empty() && !s.name.starts_with(".L");
}

// Runs of code (in address order) whose uniquely named labels all moved by the same delta.
std::vector<Run> find_runs(const FrameTable& table, const ElfFile& object, const Addresses& image) {
  std::unordered_map<std::string_view, int> in_object;
  for (const ElfSymbol& s : object.symbols())
    if (is_code_label(s)) ++in_object[s.name];
  std::vector<Run> runs;
  for (uint32_t sec = 0; sec < table.sections.size(); ++sec) {
    const ElfSection* elf_sec = object.section_by_name(table.sections[sec].name);
    if (!elf_sec) continue;
    std::vector<Anchor> anchors;
    for (const ElfSymbol& s : object.symbols())
      if (is_code_label(s) && s.section == elf_sec->index && in_object[s.name] == 1)
        anchors.push_back({s.offset, s.size, std::string(s.name)});
    std::sort(anchors.begin(), anchors.end(), [](const Anchor& a, const Anchor& b) { return a.offset < b.offset; });
    std::optional<Run> open;
    for (const Anchor& a : anchors) {
      auto it = image.find(a.name);
      if (it == image.end() || it->second.size() != 1) continue;
      const int64_t delta = static_cast<int64_t>(it->second[0]) - static_cast<int64_t>(a.offset);
      const uint64_t end = a.offset + std::max<uint64_t>(a.size, 1);
      if (open && open->delta == delta) {
        open->end = std::max(open->end, end);  // code between labels that moved together moved with them
      } else {
        if (open) runs.push_back(*open);
        // Code between two runs with different deltas stays unplaced: the boundary is unknown.
        open = Run{sec, a.offset, end, delta};
      }
    }
    if (open) runs.push_back(*open);
  }
  return runs;
}

// A call target of the object's table, at the image's addresses: a section offset inside a run moved with
// it, a symbol is looked up by its (unique) name; anything else is unknown rather than guessed.
CallTarget placed_target(const FrameTable& table, const CallTarget& t, const std::vector<Run>& runs,
                         const Addresses& image) {
  if (t.kind == CallTargetKind::Section) {
    for (const Run& run : runs)
      if (run.section == t.ref && t.value >= run.begin && t.value < run.end)
        return {CallTargetKind::Address, 0, static_cast<uint64_t>(static_cast<int64_t>(t.value) + run.delta)};
  } else if (t.kind == CallTargetKind::Symbol && t.ref < table.target_symbols.size()) {
    auto it = image.find(table.target_symbols[t.ref]);
    if (it != image.end() && it->second.size() == 1) return {CallTargetKind::Address, 0, it->second[0]};
  }
  return {};
}

}  // namespace

Result<FrameTable> place_at_link_addresses(const FrameTable& table, const std::string& object_path,
                                           const std::string& image_path, LinkReport* report) {
  auto image = ElfFile::open(image_path);
  if (!image) return tl::unexpected(image.error());
  auto object = ElfFile::open(object_path);
  if (!object) return tl::unexpected(object.error());
  if ((*image)->relocatable()) return fail("{}: not a linked image", image_path);
  if (table.linked) return fail("{}: the metadata is already at link addresses", table.object_name);
  Addresses addresses;
  for (const ElfSymbol& s : (*image)->symbols())
    if (is_code_label(s)) addresses[std::string(s.name)].push_back(s.value);

  FrameTable out;
  out.object_name = table.object_name;
  out.build_id = (*image)->build_id();
  out.linked = true;
  LinkReport r;
  std::vector<bool> placed(table.functions.size(), false);
  const std::vector<Run> runs = find_runs(table, **object, addresses);
  for (const Run& run : runs) {
    const FrameSection& src = table.sections[run.section];
    FrameSection dst;
    dst.name = src.name;
    dst.address = static_cast<uint64_t>(static_cast<int64_t>(run.begin) + run.delta);
    dst.size = run.end - run.begin;
    // The state in force at the run's start, then every change inside it.
    dst.rows.push_back({0, table.state_at({run.section, run.begin}).value_or(FrameState{})});
    for (const FrameRowEntry& row : src.rows)
      if (row.offset > run.begin && row.offset < run.end) dst.rows.push_back({row.offset - run.begin, row.state});
    for (const CallSite& c : src.calls) {
      if (c.return_offset <= run.begin || c.return_offset > run.end) continue;
      CallSite moved = c;
      moved.return_offset = c.return_offset - run.begin;
      moved.target = placed_target(table, c.target, runs, addresses);
      dst.calls.push_back(moved);
    }
    for (const TailCall& c : src.tail_calls)
      if (c.offset >= run.begin && c.offset < run.end)
        dst.tail_calls.push_back({c.offset - run.begin, placed_target(table, c.target, runs, addresses)});
    for (const SelfSlot& slot : src.self_slots)
      if (slot.offset >= run.begin && slot.offset < run.end)
        dst.self_slots.push_back({slot.offset - run.begin, slot.slot_offset, slot.kind, slot.base});
    for (const SyscallSite& sc : src.syscalls)
      if (sc.offset >= run.begin && sc.return_offset <= run.end)
        dst.syscalls.push_back({sc.offset - run.begin, sc.return_offset - run.begin});
    const uint32_t index = static_cast<uint32_t>(out.sections.size());
    for (size_t k = 0; k < table.functions.size(); ++k) {
      const FunctionEntry& f = table.functions[k];
      if (f.section != run.section || f.offset < run.begin || f.offset + f.size > run.end || f.size == 0) continue;
      FunctionEntry moved = f;
      moved.section = index;
      moved.offset = f.offset - run.begin;
      // Every placed function must be in the image, under its name, at exactly the computed address.
      const uint64_t at = dst.address + moved.offset;
      auto it = addresses.find(f.name);
      if (it == addresses.end() || std::find(it->second.begin(), it->second.end(), at) == it->second.end())
        return fail("{}: {} would be at 0x{:x}, but {} has no such symbol there: refusing to guess addresses",
                    table.object_name, f.name, at, image_path);
      ++r.functions_verified;
      placed[k] = true;
      out.functions.push_back(std::move(moved));
    }
    out.sections.push_back(std::move(dst));
    ++r.runs;
  }
  for (bool p : placed) (p ? r.functions_placed : r.functions_unplaced)++;
  std::stable_sort(out.functions.begin(), out.functions.end(), [](const FunctionEntry& a, const FunctionEntry& b) {
    return a.section != b.section ? a.section < b.section : a.offset < b.offset;
  });
  if (report) *report = r;
  return out;
}

PlacedModule place_at_load_addresses(FrameTable table, const std::string& module_object,
                                     const std::vector<std::string>& objects,
                                     const std::map<std::string, uint64_t>& sections) {
  PlacedModule out;
  out.table = std::move(table);
  out.table.linked = true;
  for (FrameSection& s : out.table.sections) {
    auto it = sections.find(s.name);
    if (it == sections.end()) {
      s.size = 0;  // not loaded (e.g. .init.text freed): describes nothing
      continue;
    }
    s.address = it->second;
    if (s.size) out.ranges.emplace_back(s.address, s.address + s.size);
  }
  std::set<std::string> nonstandard;
  auto ko = ElfFile::open(module_object);
  if (ko) {
    for (const ElfSymbol& s : (*ko)->symbols()) {
      if (s.type != STT_FUNC || !s.defined() || s.name.empty()) continue;
      auto it = sections.find(std::string((*ko)->sections()[s.section].name));
      if (it != sections.end()) out.symbols.push_back(Symbol{it->second + s.offset, s.size, std::string(s.name)});
    }
    nonstandard = non_standard_function_names(**ko);
    out.non_standard_known = has_non_standard_section(**ko);
  }
  bool objects_read = !objects.empty();
  for (const std::string& o : objects) {
    auto obj = ElfFile::open(o);
    if (!obj) {
      out.warnings.push_back(obj.error());
      objects_read = false;
      continue;
    }
    nonstandard.merge(non_standard_function_names(**obj));
  }
  out.non_standard_known = out.non_standard_known || objects_read;
  if (!ko) out.warnings.push_back(ko.error());
  for (FunctionEntry& f : out.table.functions)
    if (nonstandard.count(f.name)) f.flags |= metadata::kFuncNonStandard;
  return out;
}

}  // namespace framecert

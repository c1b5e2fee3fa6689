// `framecert dump METADATA`: the metadata as text, one line per change of frame state (like
// `objtool --dump=orc`), then the call sites and the functions.
#include <cstdio>

#include <fmt/format.h>

#include "harness/cli/commands.h"
#include "unwinder/frame_table.h"

namespace framecert::cli {

namespace {

std::string place(const FrameTable& t, uint32_t section, uint64_t offset) {
  std::string out = fmt::format("{}+0x{:x}", t.sections[section].name, offset);
  if (const FunctionEntry* f = t.function_at({section, offset}))
    out += fmt::format(" <{}+0x{:x}>", f->name, offset - f->offset);
  return out;
}

std::string call_flags(const CallSite& c) {
  using namespace metadata;
  std::string out = c.has(kCallFrameValid) ? "frame-valid" : "no-frame";
  if (c.has(kCallBpZero)) out += " rbp-zero";
  if (c.has(kCallIndirect)) out += " indirect";
  if (c.has(kCallNoReturn)) out += " noreturn";
  return out;
}

std::string function_flags(const FunctionEntry& f) {
  using namespace metadata;
  std::string out = f.has(kFuncCertified) ? "certified" : "not-certified";
  if (f.has(kFuncNonStandard)) out += " non-standard";
  if (f.has(kFuncCold)) out += fmt::format(" cold-part-of={}", f.parent);
  if (f.has(kFuncNoReturn)) out += " noreturn";
  if (!f.finding.empty()) out += fmt::format(" finding=\"{}\"", f.finding);
  return out;
}

// A call target as `dump` shows it: an address, a section offset or a symbol name.
std::string target_text(const FrameTable& t, const CallTarget& target) {
  switch (target.kind) {
    case CallTargetKind::Address:
      return fmt::format("0x{:x}", target.value);
    case CallTargetKind::Section:
      return target.ref < t.sections.size() ? place(t, target.ref, target.value) : "?";
    case CallTargetKind::Symbol:
      return target.ref < t.target_symbols.size() ? t.target_symbols[target.ref] : "?";
    case CallTargetKind::Unknown:
      break;
  }
  return "unknown";
}

int run_dump(const std::string& path) {
  auto t = read_frame_table(path);
  if (!t) {
    fmt::print(stderr, "framecert: {}\n", t.error());
    return 2;
  }
  fmt::print("object: {} ({})\n", t->object_name, t->linked ? "linked image" : "relocatable object");
  fmt::print("build-id: {}\n", t->build_id.empty() ? "-" : t->build_id);
  for (uint32_t s = 0; s < t->sections.size(); ++s) {
    const FrameSection& sec = t->sections[s];
    fmt::print("\nsection {} address 0x{:x} size 0x{:x}: {} rows, {} call sites\n", sec.name, sec.address, sec.size,
               sec.rows.size(), sec.calls.size());
    for (const auto& row : sec.rows) fmt::print("  {}: {}\n", place(*t, s, row.offset), describe_state(row.state));
    for (const auto& call : sec.calls)
      fmt::print("  call returning to {}: {}\n", place(*t, s, call.return_offset), call_flags(call));
    for (const auto& tail : sec.tail_calls)
      fmt::print("  tail call at {} to {}\n", place(*t, s, tail.offset), target_text(*t, tail.target));
    for (const auto& slot : sec.self_slots)
      fmt::print("  self slot stored at {}: {} at {}{:+d}{}\n", place(*t, s, slot.offset),
                 slot.kind == metadata::SlotKind::FrameAddress ? "frame address" : "return address",
                 slot.base == metadata::SlotBase::Cfa ? "cfa" : "rsp", slot.slot_offset,
                 slot.base == metadata::SlotBase::Cfa ? "" : " (rsp as the function's calls execute)");
  }
  fmt::print("\nfunctions:\n");
  for (const auto& f : t->functions)
    fmt::print("  {} {}+0x{:x} size 0x{:x}: {}\n", f.name, t->sections[f.section].name, f.offset, f.size,
               function_flags(f));
  return 0;
}

}  // namespace

void add_dump_command(CLI::App& app, int& exit_code) {
  auto path = std::make_shared<std::string>();
  CLI::App* cmd = app.add_subcommand("dump", "Print a frame-metadata file as text");
  cmd->add_option("metadata", *path, "Metadata file written by `framecert check --metadata`")->required();
  cmd->callback([path, &exit_code] { exit_code = run_dump(*path); });
}

}  // namespace framecert::cli

// Lookups in the in-memory frame metadata.
#include "unwinder/frame_table.h"

#include <algorithm>
#include <span>

#include <fmt/format.h>

namespace framecert {

std::optional<SectionOffset> FrameTable::locate(uint64_t address) const {
  if (!linked) return std::nullopt;
  for (uint32_t i = 0; i < sections.size(); ++i) {
    const FrameSection& s = sections[i];
    if (address >= s.address && address - s.address < s.size) return SectionOffset{i, address - s.address};
  }
  return std::nullopt;
}

std::optional<FrameState> FrameTable::state_at(SectionOffset where) const {
  if (where.section >= sections.size()) return std::nullopt;
  const FrameSection& s = sections[where.section];
  if (where.offset >= s.size) return std::nullopt;
  auto it = std::upper_bound(s.rows.begin(), s.rows.end(), where.offset,
                             [](uint64_t off, const FrameRowEntry& r) { return off < r.offset; });
  if (it == s.rows.begin()) return FrameState{};  // before the first row: nothing proven
  return std::prev(it)->state;
}

std::optional<CallSite> FrameTable::call_site(SectionOffset where) const {
  if (where.section >= sections.size()) return std::nullopt;
  const auto& calls = sections[where.section].calls;
  auto it = std::lower_bound(calls.begin(), calls.end(), where.offset,
                             [](const CallSite& c, uint64_t off) { return c.return_offset < off; });
  if (it == calls.end() || it->return_offset != where.offset) return std::nullopt;
  return *it;
}

const FunctionEntry* FrameTable::function_at(SectionOffset where) const {
  auto it =
      std::upper_bound(functions.begin(), functions.end(), where, [](const SectionOffset& w, const FunctionEntry& f) {
        return w.section < f.section || (w.section == f.section && w.offset < f.offset);
      });
  // Functions may nest (aliases); scan back over candidates that start at or before `where`.
  while (it != functions.begin()) {
    --it;
    if (it->section != where.section) break;
    if (where.offset - it->offset < std::max<uint64_t>(it->size, 1)) return &*it;
    if (it->offset + 0x100000 < where.offset) break;  // far enough: no enclosing function
  }
  return nullptr;
}

std::optional<uint64_t> FrameTable::target_address(const CallTarget& target) const {
  switch (target.kind) {
    case CallTargetKind::Address:
      return target.value;
    case CallTargetKind::Section: {
      if (!linked || target.ref >= sections.size()) return std::nullopt;
      const FrameSection& s = sections[target.ref];
      if (target.value >= s.size) return std::nullopt;  // not placed (size 0) or outside it
      return s.address + target.value;
    }
    case CallTargetKind::Symbol:
    case CallTargetKind::Unknown:
      break;
  }
  return std::nullopt;
}

std::optional<SyscallSite> FrameTable::syscall_before(SectionOffset where) const {
  if (where.section >= sections.size()) return std::nullopt;
  const auto& sys = sections[where.section].syscalls;
  auto it = std::lower_bound(sys.begin(), sys.end(), where.offset,
                             [](const SyscallSite& s, uint64_t off) { return s.return_offset < off; });
  if (it == sys.end() || it->return_offset != where.offset) return std::nullopt;
  return *it;
}

void FrameTable::resolve_symbol_targets(const std::function<std::optional<uint64_t>(const std::string&)>& address_of) {
  std::vector<std::optional<uint64_t>> resolved;
  for (const std::string& name : target_symbols) resolved.push_back(address_of(name));
  auto resolve = [&](CallTarget& t) {
    if (t.kind != CallTargetKind::Symbol) return;
    auto a = t.ref < resolved.size() ? resolved[t.ref] : std::nullopt;
    t = a ? CallTarget{CallTargetKind::Address, 0, *a} : CallTarget{};
  };
  for (FrameSection& s : sections) {
    for (CallSite& c : s.calls) resolve(c.target);
    for (TailCall& c : s.tail_calls) resolve(c.target);
  }
}

namespace {

// The records of `list` (sorted by offset) that lie inside function `f`: its tail calls, its self slots.
template <typename Record>
std::span<const Record> in_function(const std::vector<Record>& list, const FunctionEntry& f) {
  auto before = [](const Record& r, uint64_t offset) { return r.offset < offset; };
  auto first = std::lower_bound(list.begin(), list.end(), f.offset, before);
  auto last = std::lower_bound(first, list.end(), f.offset + f.size, before);
  return {first, last};
}

}  // namespace

std::vector<uint64_t> FrameTable::tail_call_targets(SectionOffset where) const {
  std::vector<uint64_t> out;
  const FunctionEntry* f = function_at(where);
  if (!f || f->section >= sections.size()) return out;
  for (const TailCall& c : in_function(sections[f->section].tail_calls, *f))
    if (auto a = target_address(c.target)) out.push_back(*a);
  return out;
}

std::vector<SelfSlot> FrameTable::self_slots(SectionOffset where) const {
  const FunctionEntry* f = function_at(where);
  if (!f || f->section >= sections.size()) return {};
  const std::span<const SelfSlot> slots = in_function(sections[f->section].self_slots, *f);
  return {slots.begin(), slots.end()};
}

std::optional<SyscallSite> FrameTable::syscall_before_address(uint64_t return_address) const {
  auto where = locate(return_address);
  return where ? syscall_before(*where) : std::nullopt;
}

std::optional<FrameState> FrameTable::state_at_address(uint64_t address) const {
  auto where = locate(address);
  return where ? state_at(*where) : std::nullopt;
}

std::optional<CallSite> FrameTable::call_site_at_address(uint64_t return_address) const {
  auto where = locate(return_address);
  return where ? call_site(*where) : std::nullopt;
}

const FunctionEntry* FrameTable::function_at_address(uint64_t address) const {
  auto where = locate(address);
  return where ? function_at(*where) : nullptr;
}

size_t FrameTable::row_count() const {
  size_t n = 0;
  for (const auto& s : sections) n += s.rows.size();
  return n;
}

size_t FrameTable::call_count() const {
  size_t n = 0;
  for (const auto& s : sections) n += s.calls.size();
  return n;
}

static std::string base_name(CfaBase b) {
  switch (b) {
    case CfaBase::Undefined:
      return "undef";
    case CfaBase::Sp:
      return "rsp";
    case CfaBase::Bp:
      return "rbp";
    case CfaBase::SpIndirect:
      return "[rsp]";
    case CfaBase::Other:
      return "other";
  }
  return "?";
}

std::string describe_state(const FrameState& s) {
  using namespace metadata;
  if (s.cfa_base == CfaBase::Undefined) return s.has(kEndOfStack) ? "cfa=undef end-of-stack" : "cfa=undef";
  std::string out = fmt::format("cfa={}{:+d}", base_name(s.cfa_base), s.cfa_offset);
  if (s.has(kBpIsFrame)) {
    out += " rbp=frame";
  } else if (s.has(kBpZero)) {
    out += " rbp=zero";
  } else if (s.has(kBpUnchanged)) {
    out += " rbp=caller";
  } else if (!s.has(kBpSaved)) {
    out += " rbp=lost";
  }
  if (s.has(kBpSaved)) out += fmt::format(" saved-rbp=cfa{:+d}", s.bp_offset);
  if (s.has(kEndOfStack)) out += " end-of-stack";
  if (s.has(kRegsFrame)) out += " regs";
  return out;
}

}  // namespace framecert

#include "validator/frame_table_builder.h"

#include <elf.h>

#include <algorithm>
#include <limits>
#include <map>
#include <set>
#include <unordered_map>

#include "validator/call_depth.h"
#include "validator/rbp_flow.h"
#include "validator/self_slots.h"

namespace framecert {

namespace md = metadata;

namespace {

CfaBase base_of(int base) {
  switch (base) {
    case cfi::kSp:
      return CfaBase::Sp;
    case cfi::kBp:
      return CfaBase::Bp;
    case cfi::kSpIndirect:
      return CfaBase::SpIndirect;
    case cfi::kUndefined:
      return CfaBase::Undefined;
    default:
      return CfaBase::Other;
  }
}

FrameState frame_state(const CfiState& s, uint8_t bp_raw) {
  FrameState out;
  out.cfa_base = base_of(s.cfa.base);
  out.cfa_offset = s.cfa.offset;
  // An end-of-stack hint (UNWIND_HINT_EMPTY at ret_from_fork, the entry points) leaves the CFA undefined:
  // nothing to unwind to, and that is the point.
  if (s.end) out.flags |= md::kEndOfStack;
  if (out.cfa_base == CfaBase::Undefined) return out;
  const BpValue bp = bp_raw == kBpUnset ? BpValue::Unknown : static_cast<BpValue>(bp_raw);
  const CfiReg& saved = s.regs[cfi::kBp];
  if (saved.base == cfi::kCfa && saved.offset >= std::numeric_limits<int16_t>::min() &&
      saved.offset <= std::numeric_limits<int16_t>::max()) {
    out.flags |= md::kBpSaved;
    out.bp_offset = static_cast<int16_t>(saved.offset);
  }
  if (bp == BpValue::Frame && s.has_valid_frame()) out.flags |= md::kBpIsFrame;
  if (bp == BpValue::Caller) out.flags |= md::kBpUnchanged;
  if (bp == BpValue::Zero) out.flags |= md::kBpZero;
  if (s.type == cfi::kHintRegs) out.flags |= md::kRegsFrame;
  return out;
}

// Call sites the kernel rewrites at run time, whose call instruction in the object is not what runs: the
// ftrace hook (__fentry__ becomes a nop or a call to a trampoline) and static calls (a call to the
// __SCT__ trampoline becomes a call to the current target).
bool patched_at_run_time(std::string_view callee) { return callee == "__fentry__" || callee.starts_with("__SCT__"); }

class TargetResolver {
 public:
  TargetResolver(const DecodedObject& obj, const std::vector<int32_t>& table_index, FrameTable& table)
      : obj_(obj), table_index_(table_index), table_(table) {}

  // Where a direct call, or the direct jump of a sibling call, goes.
  CallTarget operator()(const Instruction& in) {
    const bool direct =
        in.insn.kind == InsnKind::Call || in.insn.kind == InsnKind::Jump || in.insn.kind == InsnKind::JumpConditional;
    if (!direct || !in.insn.has_target) return {};
    if (!obj_.alts(in).empty()) return {};  // an alternative may replace the call at boot
    if (in.call_symbol() != kNone && patched_at_run_time(obj_.symbol(static_cast<uint32_t>(in.call_symbol())).name))
      return {};
    const ElfSection& sec = obj_.elf->sections()[obj_.section_of(in)];
    if (!obj_.elf->relocatable()) return {CallTargetKind::Address, 0, sec.address + in.insn.target()};
    const ElfReloc* r = obj_.reloc_of(in);
    if (!r) return section_target(obj_.section_of(in), in.insn.target());  // a local label the assembler resolved
    // Only the rel32 at the instruction's end, pc-relative: target = S + A + 4 (the end is 4 bytes past P).
    if (r->offset + 4 != in.insn.end() || (r->type() != R_X86_64_PC32 && r->type() != R_X86_64_PLT32)) return {};
    const ElfSymbol& s = obj_.symbol(r->symbol());
    if (s.defined()) return section_target(s.section, s.offset + static_cast<uint64_t>(r->addend + 4));
    if (r->addend != -4 || s.name.empty()) return {};
    auto [it, fresh] = symbols_.try_emplace(s.name, static_cast<uint32_t>(table_.target_symbols.size()));
    if (fresh) table_.target_symbols.emplace_back(s.name);
    return {CallTargetKind::Symbol, it->second, 0};
  }

 private:
  CallTarget section_target(uint32_t elf_section, uint64_t offset) const {
    if (elf_section >= table_index_.size() || table_index_[elf_section] < 0) return {};  // not code
    return {CallTargetKind::Section, static_cast<uint32_t>(table_index_[elf_section]), offset};
  }

  const DecodedObject& obj_;
  const std::vector<int32_t>& table_index_;
  FrameTable& table_;
  std::unordered_map<std::string_view, uint32_t> symbols_;
};

// A direct sibling call the checker reached with the frame torn down (objtool's rule for sibling calls):
// the function jumped to returns straight to this function's caller.
bool is_proven_tail_call(const DecodedObject& obj, const CheckResult& r, int32_t i) {
  const Instruction& in = obj.insns[i];
  const bool jump = in.insn.kind == InsnKind::Jump || in.insn.kind == InsnKind::JumpConditional;
  if (!jump || !in.sibling_target || in.func == kNone || in.ignore || r.state_of_insn[i] < 0) return false;
  return !r.states[r.state_of_insn[i]].has_modified_frame();
}

// The frame state the table records for instruction `i` (none: not checked).
std::optional<FrameState> state_of(const CheckResult& r, const std::vector<uint8_t>& bp, int32_t i) {
  if (i == kNone || r.state_of_insn[i] < 0) return std::nullopt;
  return frame_state(r.states[r.state_of_insn[i]], bp[i]);
}

// The original instruction whose bytes hold `offset` (an original group starts at `orig`), or kNone.
int32_t original_covering(const DecodedObject& obj, int32_t orig, uint64_t offset) {
  for (int32_t k = orig; k != kNone && obj.insns[k].insn.offset <= offset; k = obj.next_in_section(k))
    if (offset < obj.insns[k].insn.end()) return k;
  return kNone;
}

// One site for the calls of several replacements that return to the same place: proven only what all prove.
void merge_into(CallSite& into, const CallSite& c) {
  const uint8_t shared = md::kCallFrameValid | md::kCallBpZero | md::kCallNoReturn;
  into.flags = static_cast<uint8_t>((into.flags & c.flags & shared) | ((into.flags | c.flags) & md::kCallIndirect) |
                                    (into.flags & c.flags & (md::kCallSpDepth | md::kCallBpDepth)));
  if (into.sp_depth != c.sp_depth) into.flags &= static_cast<uint8_t>(~md::kCallSpDepth);
  if (into.bp_depth != c.bp_depth) into.flags &= static_cast<uint8_t>(~md::kCallBpDepth);
  if (!(into.target == c.target)) into.target = {};
}

// A call inside an alternative's replacement runs at the original's place once the kernel patches it in at
// boot (clear_user's `rep stosb` becomes `call clear_user_rep_good`): a task stopped in the callee has a
// return address inside the original's bytes, where the object itself has no call. Each such call gets a
// call site at the original's offset — only where the original's own state at that byte is the state of the
// replacement's call (the same frame either way), and never over a call the original itself makes there.
template <typename CallSiteOf>
void add_replacement_calls(const DecodedObject& obj, const CheckResult& r, const std::vector<uint8_t>& bp,
                           const std::vector<int32_t>& table_index, CallSiteOf& call_site, FrameTable& t) {
  std::map<std::pair<int32_t, uint64_t>, CallSite> added;  // (table section, return offset)
  std::set<std::pair<int32_t, uint64_t>> refused;
  for (const DecodedObject::Replacement& rep : obj.replacements) {
    const uint64_t orig_at = obj.insns[rep.orig].insn.offset, repl_at = obj.insns[rep.first].insn.offset;
    const int32_t section = table_index[obj.section_of(obj.insns[rep.orig])];
    if (section < 0) continue;
    for (int32_t j = rep.first; j != kNone; j = j == rep.last ? kNone : obj.next_in_section(j)) {
      const Instruction& in = obj.insns[j];
      if (!in.is_call() || r.state_of_insn[j] < 0) continue;
      const uint64_t ret = orig_at + (in.insn.end() - repl_at);
      const auto key = std::make_pair(section, ret);
      // A replacement longer than its original (the kernel refuses one) would return past the patched bytes.
      const auto there =
          ret <= orig_at + rep.orig_len ? state_of(r, bp, original_covering(obj, rep.orig, ret - 1)) : std::nullopt;
      if (!there || *there != *state_of(r, bp, j)) {
        refused.insert(key);
        continue;
      }
      CallSite c = call_site(j);
      c.return_offset = ret;
      if (auto [it, fresh] = added.try_emplace(key, c); !fresh) merge_into(it->second, c);
    }
  }
  for (auto& [key, c] : added) {
    if (refused.count(key)) continue;  // one replacement's call there runs with another frame: none proven
    std::vector<CallSite>& calls = t.sections[key.first].calls;
    auto at = std::lower_bound(calls.begin(), calls.end(), c.return_offset,
                               [](const CallSite& s, uint64_t off) { return s.return_offset < off; });
    if (at != calls.end() && at->return_offset == c.return_offset) continue;  // the original's own call
    calls.insert(at, c);
  }
}

}  // namespace

namespace {

// A metadata file names external call targets by name, and its reader numbers them as it meets them: every
// section's calls, then every section's tail calls. The builder met them in instruction order (a tail call
// before a later call); renumbered here the reader's way, so a table equals what its own file reads back.
void number_symbols_as_read(FrameTable& t) {
  std::vector<uint32_t> renumbered(t.target_symbols.size(), UINT32_MAX);
  std::vector<std::string> names;
  auto visit = [&](CallTarget& c) {
    if (c.kind != CallTargetKind::Symbol || c.ref >= renumbered.size()) return;
    if (renumbered[c.ref] == UINT32_MAX) {
      renumbered[c.ref] = static_cast<uint32_t>(names.size());
      names.push_back(t.target_symbols[c.ref]);
    }
    c.ref = renumbered[c.ref];
  };
  for (FrameSection& s : t.sections)
    for (CallSite& c : s.calls) visit(c.target);
  for (FrameSection& s : t.sections)
    for (TailCall& c : s.tail_calls) visit(c.target);
  t.target_symbols = std::move(names);
}

}  // namespace

FrameTable build_frame_table(const DecodedObject& obj, const CheckResult& r, const std::vector<uint8_t>& bp) {
  FrameTable t;
  t.object_name = obj.elf->path();
  t.build_id = obj.elf->build_id();
  t.linked = !obj.elf->relocatable();

  std::vector<int32_t> table_index(obj.elf->sections().size(), -1);
  for (const SectionCode& code : obj.code_sections)
    table_index[code.section] = static_cast<int32_t>(&code - obj.code_sections.data());
  const std::unordered_map<int32_t, CallDepth> depths = call_depths(obj, r);
  TargetResolver target_of(obj, table_index, t);
  const std::vector<SelfSlotStore> slots = find_self_slots(obj, r, bp);
  auto next_slot = slots.begin();
  // The record of the call instruction `i` (checked: it has a state), its return address at its end.
  auto call_site = [&](int32_t i) {
    const Instruction& in = obj.insns[i];
    const CfiState& cs = r.states[r.state_of_insn[i]];
    CallSite c;
    c.return_offset = in.insn.end();
    if (cs.has_valid_frame() && bp[i] == static_cast<uint8_t>(BpValue::Frame)) c.flags |= md::kCallFrameValid;
    if (bp[i] == static_cast<uint8_t>(BpValue::Zero)) c.flags |= md::kCallBpZero;
    if (in.insn.kind == InsnKind::CallIndirect) c.flags |= md::kCallIndirect;
    if (in.dead_end) c.flags |= md::kCallNoReturn;
    if (auto d = depths.find(i); d != depths.end()) {
      if (d->second.sp_known) {
        c.flags |= md::kCallSpDepth;
        c.sp_depth = d->second.sp;
      }
      if (d->second.bp_known) {
        c.flags |= md::kCallBpDepth;
        c.bp_depth = d->second.bp;
      }
    }
    c.target = target_of(in);
    return c;
  };
  for (const SectionCode& code : obj.code_sections) {
    const ElfSection& sec = obj.elf->sections()[code.section];
    FrameSection fs;
    fs.name = sec.name;
    fs.address = sec.address;
    fs.size = sec.size;
    std::optional<FrameState> prev;
    int32_t prev_id = -1;  // the state id and rbp value `st` was made from: runs of instructions share them,
    uint8_t prev_bp = 0;   // and decoding a state costs more than the rest of this loop
    FrameState st;
    for (uint32_t i = code.first_insn; i < code.end_insn; ++i) {
      const Instruction& in = obj.insns[i];
      const int32_t id = r.state_of_insn[i];
      if (id < 0) {
        st = FrameState{};
      } else if (id != prev_id || bp[i] != prev_bp) {
        st = frame_state(r.states.at(id), bp[i]);
      }
      prev_id = id;
      prev_bp = bp[i];
      if (!prev || *prev != st) fs.rows.push_back({in.insn.offset, st});
      prev = st;
      for (; next_slot != slots.end() && next_slot->insn == static_cast<int32_t>(i); ++next_slot)
        fs.self_slots.push_back({in.insn.offset, next_slot->slot_offset, next_slot->kind, next_slot->base});
      if (in.insn.is_syscall && r.state_of_insn[i] >= 0) fs.syscalls.push_back({in.insn.offset, in.insn.end()});
      if (is_proven_tail_call(obj, r, static_cast<int32_t>(i)))
        if (CallTarget target = target_of(in); target.kind != CallTargetKind::Unknown)
          fs.tail_calls.push_back({in.insn.offset, target});
      if (!in.is_call() || r.state_of_insn[i] < 0) continue;
      fs.calls.push_back(call_site(static_cast<int32_t>(i)));
    }
    // Bytes the decoder could not follow: nothing is known there.
    uint64_t end = code.end_insn > code.first_insn ? obj.insns[code.end_insn - 1].insn.end() : 0;
    if (end < sec.size && (!prev || *prev != FrameState{})) fs.rows.push_back({end, FrameState{}});
    t.sections.push_back(std::move(fs));
  }

  add_replacement_calls(obj, r, bp, table_index, call_site, t);
  number_symbols_as_read(t);

  // Which functions are certified: validated from their entry with no finding against them.
  std::vector<std::string> finding_of(obj.functions.size());
  auto note = [&](const std::string& name, const std::string& text) {
    for (size_t f = 0; f < obj.functions.size(); ++f)
      if (obj.functions[f].name == name && finding_of[f].empty()) finding_of[f] = text;
  };
  // A finding at an instruction counts against every function symbol covering it (aliases included);
  // one without a position (falls through, missing size) against the function it names.
  auto note_findings = [&](const std::vector<Finding>& findings) {
    for (const Finding& f : findings) {
      if (f.positional && f.section_index) {
        for (size_t k = 0; k < obj.functions.size(); ++k) {
          const Function& fn = obj.functions[k];
          if (fn.section == f.section_index && f.offset >= fn.offset && f.offset < fn.offset + fn.size &&
              finding_of[k].empty())
            finding_of[k] = f.text();
        }
      } else if (!f.function.empty()) {
        note(f.function, f.text());
      }
    }
  };
  note_findings(r.findings);
  note_findings(obj.fatal);

  for (int32_t f = 0; f < static_cast<int32_t>(obj.functions.size()); ++f) {
    const Function& fn = obj.functions[f];
    if (table_index[fn.section] < 0) continue;
    FunctionEntry e;
    e.name = fn.name;
    e.section = static_cast<uint32_t>(table_index[fn.section]);
    e.offset = fn.offset;
    e.size = fn.size;
    const Function& root = obj.functions[fn.parent];
    std::string finding = !finding_of[f].empty() ? finding_of[f] : finding_of[fn.parent];
    if (finding.empty())  // a whole-object structural error leaves every function unchecked
      for (const Finding& fatal : obj.fatal)
        if (fatal.function.empty()) finding = fatal.text();
    const bool validated = fn.first_insn < fn.end_insn && r.visited(fn.first_insn);
    // Certified means checked whole: an instruction of it that no path reached (a switch case behind a
    // table that could not be read, code after a call wrongly taken for noreturn) was never checked.
    const int32_t unchecked = r.first_unchecked.empty() ? kNone : r.first_unchecked[fn.parent];
    if (finding.empty() && validated && unchecked != kNone)
      finding = obj.finding_at(obj.insns[unchecked], "unreachable instruction (never checked)").text();
    if (fn.non_standard || root.non_standard) e.flags |= md::kFuncNonStandard;
    if (fn.parent != f) {
      e.flags |= md::kFuncCold;
      e.parent = root.name;
    }
    if (fn.size && fn.first_insn < fn.end_insn && is_noreturn_function(obj, f)) e.flags |= md::kFuncNoReturn;
    if (validated && finding.empty() && !(e.flags & md::kFuncNonStandard) && !r.function_failed[fn.parent])
      e.flags |= md::kFuncCertified;
    e.finding = finding;
    t.functions.push_back(std::move(e));
  }
  std::stable_sort(t.functions.begin(), t.functions.end(), [](const FunctionEntry& a, const FunctionEntry& b) {
    return a.section != b.section ? a.section < b.section : a.offset < b.offset;
  });
  return t;
}

}  // namespace framecert

// Depth-first path following with an explicit stack, visiting paths in the same order as objtool's
// recursive validate_branch(): at a conditional branch the taken side first, then the fall-through; switch
// targets before the jump itself. The order matters because the first path to reach an instruction fixes
// its recorded state, and a later path is compared against it. An explicit stack keeps hostile inputs
// (functions with huge branch counts) from overflowing the thread's stack.
#include "validator/checker.h"

#include <elf.h>

#include <algorithm>
#include <deque>
#include <optional>
#include <span>
#include <unordered_map>

#include <fmt/format.h>

#include "validator/covered_ranges.h"
#include "validator/run_beside.h"

namespace framecert {

namespace {

struct PathNode {
  int32_t parent;
  int32_t insn;
  const char* what;
};

// The path being followed: its state in full.
struct WorkItem {
  int32_t insn;
  CfiState state;
  bool df;          // direction flag set (std without cld)
  bool after_alts;  // resume an instruction whose switch targets were already queued
  int32_t path;     // --explain: index into the path nodes
};

// A path waiting on the stack (the other side of a branch): its state by id in the state table, so a
// function with a million pending branches costs 12 bytes each, not a CfiState (docs/design.md, "Memory").
struct Pending {
  int32_t insn;
  uint32_t state : 30;
  uint32_t df : 1;
  uint32_t after_alts : 1;
  int32_t path;
};
static_assert(sizeof(Pending) == 12);

// objtool 6.12 decodes every 64-bit register-to-register mov as a stack operation (6.1 only those that read
// rsp): one that overwrites the CFA's base register, other than the cases 6.1 already models (which come
// with their own stack operations), leaves the CFA undefined — restoring rbp from a register copy in a framed
// function is then "undefined stack state" at the next stack operation.
void overwrite_cfa_base_6_10(const Insn& in, CfiState& s) {
  if (s.force_undefined || in.copy_dst == Reg::None || in.copy_src == Reg::Sp) return;
  if (s.cfa.base != static_cast<int>(in.copy_dst)) return;
  s.cfa = CfiReg{cfi::kUndefined, 0};
}

class FunctionChecker {
 public:
  // `touched` (optional): set for every instruction whose checking state this checker looked at (check_halves).
  FunctionChecker(const DecodedObject& obj, CheckResult& out, bool explain, std::vector<uint8_t>* touched = nullptr)
      : obj_(obj), out_(out), explain_(explain), touched_(touched) {}

  // Whether a path reached instruction `i` (noting that this checker asked).
  bool visited(int32_t i) {
    if (touched_) (*touched_)[i] = 1;
    return out_.visited(i);
  }
  // Whether a silent pass (see run) went through instruction `i`.
  bool silent_seen(int32_t i) const { return !silent_seen_.empty() && silent_seen_[i]; }

  // Follows every path from `start` with `state`, for function `func` (kNone for code outside any
  // function, reached through an unwind hint); returns false at the first finding (objtool stops there).
  //
  // `silent`: the metadata pass over a function that already has its finding. Rules are not checked
  // and nothing is reported; every path is followed as far as the stack state stays known, so the
  // unwinder gets proven CFA rules for the whole function (which stays uncertified).
  bool run(int32_t start, int32_t func, const CfiState& state, bool silent = false, bool from_hint = false) {
    func_ = func;
    from_hint_ = from_hint;
    silent_ = silent;
    if (silent && silent_seen_.size() != obj_.insns.size()) silent_seen_.assign(obj_.insns.size(), false);
    stack_.clear();
    nodes_.clear();
    push({start, state, false, false, explain_ ? add_node(-1, start, "entry") : -1});
    while (!stack_.empty()) {
      const Pending p = stack_.back();
      stack_.pop_back();
      if (!follow({p.insn, out_.states[static_cast<int32_t>(p.state)], p.df != 0, p.after_alts != 0, p.path}))
        return false;
    }
    return true;
  }

 private:
  // A deque, not a vector: it grows without the doubling copy (a peak of 1.5x its size).
  void push(const WorkItem& w) {
    const int32_t id = out_.states.intern(w.state);
    stack_.push_back({w.insn, static_cast<uint32_t>(id), w.df, w.after_alts, w.path});
  }

  int32_t add_node(int32_t parent, int32_t insn, const char* what) {
    nodes_.push_back({parent, insn, what});
    return static_cast<int32_t>(nodes_.size() - 1);
  }

  std::string where(int32_t i) const {
    const Instruction& in = obj_.insns[i];
    if (in.func == kNone) return fmt::format("{}+0x{:x}", obj_.section_name(obj_.section_of(in)), in.insn.offset);
    const Function& f = obj_.functions[in.func];
    return fmt::format("{}+0x{:x}", f.name, in.insn.offset - f.offset);
  }

  // A rule broken where the state is still known: reported (and the function's check stops), or in the
  // silent pass ignored so the path goes on.
  bool violation(int32_t i, std::string message, const WorkItem& item) {
    if (silent_) return true;
    report(i, std::move(message), item);
    return false;
  }

  // A problem after which the path cannot go on: reported (stopping the check), or in the silent pass
  // the path just ends.
  bool stop(int32_t i, std::string message, const WorkItem& item) {
    if (silent_) return true;
    report(i, std::move(message), item);
    return false;
  }

  Finding& report(int32_t i, std::string message, const WorkItem& item) {
    Finding f = obj_.finding_at(obj_.insns[i], std::move(message));
    if (explain_) {
      for (int32_t n = item.path; n != -1; n = nodes_[n].parent)
        f.path.push_back(fmt::format("{}: {}", where(nodes_[n].insn), nodes_[n].what));
      std::reverse(f.path.begin(), f.path.end());
      f.state_seen = describe(item.state);
    }
    out_.findings.push_back(std::move(f));
    return out_.findings.back();
  }

  void report_text(std::string text) {
    Finding f;
    f.positional = false;
    f.function = func_ == kNone ? std::string() : obj_.functions[func_].name;
    f.message = std::move(text);
    out_.findings.push_back(std::move(f));
  }

  bool is_sibling_call(const Instruction& in) const {
    if (in.func == kNone) return false;
    if (in.insn.kind == InsnKind::JumpIndirect) return !in.jump_table;
    return (in.insn.kind == InsnKind::Jump || in.insn.kind == InsnKind::JumpConditional) && in.sibling_target;
  }

  bool is_special_call(const Instruction& in) const {
    if (in.insn.kind != InsnKind::Call || in.call_symbol() == kNone) return false;
    return obj_.symbol(static_cast<uint32_t>(in.call_symbol())).name == "__fentry__";
  }

  std::string callee_name(const Instruction& in) const {
    return std::string(in.call_symbol() == kNone ? "{dynamic}"
                                                 : obj_.symbol(static_cast<uint32_t>(in.call_symbol())).name);
  }

  // Follows one path until it ends; pushes the other sides of branches. False at a finding.
  bool follow(WorkItem item) {
    const int32_t func = func_;
    if (item.insn < -1) {  // the fall-through of a conditional branch that ends its section
      if (item.state.cfa.base == cfi::kUndefined || silent_) return true;
      report_end_of_section(obj_.insns[-2 - item.insn]);
      return false;
    }
    int32_t i = item.insn;
    while (true) {
      const Instruction& in = obj_.insns[i];
      const int32_t next = obj_.next_to_validate(i);
      if (touched_) (*touched_)[i] = 1;
      if (!item.after_alts) {
        if (func != kNone && in.func != kNone && obj_.parent_of(in.func) != func) {
          if (obj_.functions[func].name.starts_with("__cfi_") || silent_) return true;
          report_text(fmt::format("{}() falls through to next function {}()", obj_.functions[func].name,
                                  obj_.functions[in.func].name));
          return false;
        }
        if (func != kNone && in.ignore) return stop(i, "BUG: why am I validating an ignored function?", item);
        // The outermost frame's path (glibc's _start: `call *__libc_start_main; hlt`) ends with its function:
        // its state (no CFA, rbp 0) says nothing about code in no function after it (crtstuff's sizeless
        // helpers), and must not become that code's metadata.
        if (func != kNone && in.func == kNone && item.state.cfa.base == cfi::kOutermost) return true;
        if (silent_) {
          // Paths of the silent pass end where another silent path was, or where the state conflicts
          // with what the checking pass recorded; elsewhere they continue through checked code.
          if (silent_seen_[i]) return true;
          silent_seen_[i] = true;
          if (visited(i) && !in.hint && !mismatch_message(out_.states[out_.state_of_insn[i]], item.state).empty())
            return true;
        } else if (visited(i)) {
          if (in.hint) return true;  // a hint asserts the state: paths may meet it with any other
          // objtool 6.12 does not compare a path that began at an unwind hint with the state recorded at a
          // function's entry it jumps to (error_entry's `jmp sync_regs`: the registers' view of the same
          // stack); 6.1 does, and so does a jump into the middle of the function in both (fixture
          // tests/fixtures/validator-6.12/jump_into_function.S).
          if (from_hint_ && obj_.format != KernelFormat::Linux6_1 && obj_.function_starting_at(i) != kNone) return true;
          std::string m = mismatch_message(out_.states[out_.state_of_insn[i]], item.state);
          if (!m.empty()) {
            Finding& f = report(i, std::move(m), item);
            if (explain_) f.state_expected = describe(out_.states[out_.state_of_insn[i]]);
            return false;
          }
          return true;
        }
        if (in.hint && !apply_hint(i, item)) return silent_;  // the silent pass just ends this path
        if (!visited(i)) out_.state_of_insn[i] = out_.states.intern(item.state);
        if (from_hint_ && !silent_) out_.hint_reached[i] = true;
        const std::span<const int32_t> alts = obj_.alts(in), table_targets = obj_.table_targets(in);
        const bool has_alts = !in.ignore_alts && (!alts.empty() || !table_targets.empty());
        if (has_alts) {
          // Alternatives and switch targets are explored first, each with the state before this
          // instruction; then (unless only the alternative can run) the instruction itself.
          if (!in.skip_orig || alts.empty()) {
            WorkItem resume = item;
            resume.insn = i;
            resume.after_alts = true;
            push(resume);
          }
          for (auto t = table_targets.rbegin(); t != table_targets.rend(); ++t)
            push({*t, item.state, item.df, false, explain_ ? add_node(item.path, i, "switch table") : -1});
          for (auto t = alts.rbegin(); t != alts.rend(); ++t)
            push({*t, item.state, item.df, false, explain_ ? add_node(item.path, i, "alternative") : -1});
          return true;
        }
      }
      item.after_alts = false;

      if (in.insn.is_iret && in.func != kNone) {
        // sync_core()'s iret to self pops the 5-word frame it built: a stack adjustment, not a switch.
        StackOp pop_frame{StackOp::Src::Add, Reg::Sp, StackOp::Dst::Reg, Reg::Sp, 40, 0};
        if (auto m = apply_stack_op(item.state, pop_frame, true, false); !m.empty()) return stop(i, m, item);
      } else {
        const bool next_is_hint = next != kNone && obj_.insns[next].hint;
        for (const StackOp& op : obj_.ops(in))
          if (auto m = apply_stack_op(item.state, op, in.func != kNone, next_is_hint); !m.empty())
            return stop(i, m, item);
        if (obj_.format != KernelFormat::Linux6_1 && obj_.ops(in).empty()) overwrite_cfa_base_6_10(in.insn, item.state);
      }
      const bool outermost_call = is_outermost_call(item.state);
      if (in.insn.writes(Reg::Bp)) item.state.bp_zero = in.insn.zeroes_bp;

      switch (in.insn.is_iret && in.func != kNone ? InsnKind::Other : in.insn.kind) {
        case InsnKind::Return:
          if (item.df) return stop(i, "return with DF set", item);
          if (func != kNone && item.state.has_modified_frame())
            return stop(i, "return with modified stack frame", item);
          if (item.state.bp_scratch) return stop(i, "BP used as a scratch register", item);
          return true;
        case InsnKind::Call:
        case InsnKind::CallIndirect:
          if (item.df && !violation(i, fmt::format("call to {}() with DF set", callee_name(in)), item)) return false;
          // From the outermost frame (rbp 0 after realignment) no caller can be skipped: nothing is above.
          if (func != kNone && !is_special_call(in) && !item.state.has_valid_frame() && !outermost_call &&
              !violation(i, "call without frame pointer save/setup", item))
            return false;
          if (in.dead_end) return true;
          break;
        case InsnKind::Jump:
        case InsnKind::JumpConditional:
          if (is_sibling_call(in)) {
            if (!sibling_ok(in, i, item)) return false;
          } else if (in.jump_dest() != kNone) {
            if (in.insn.kind == InsnKind::Jump) {
              // The only way on: continue along the jump without growing the stack.
              if (explain_) item.path = add_node(item.path, i, "jump");
              i = in.jump_dest();
              continue;
            }
            // objtool follows the taken side first; the fall-through waits on the stack.
            WorkItem fall = item;
            fall.insn = next;
            if (explain_) fall.path = add_node(item.path, i, "branch not taken");
            if (next != kNone && !in.dead_end)
              push(fall);
            else if (next == kNone && !in.dead_end)
              push(end_marker(item, i));
            item.insn = in.jump_dest();
            if (explain_) item.path = add_node(item.path, i, "branch taken");
            i = in.jump_dest();
            continue;
          }
          if (in.insn.kind == InsnKind::Jump) return true;
          break;
        case InsnKind::JumpIndirect:
          if (is_sibling_call(in) && !sibling_ok(in, i, item)) return false;
          return true;
        case InsnKind::ContextSwitch:
          if (func == kNone) return true;  // entry code: the path ends at the switch
          if (next == kNone || !obj_.insns[next].hint)
            return stop(i, "unsupported instruction in callable function", item);
          break;
        case InsnKind::Std:
          if (item.df && !violation(i, "recursive STD", item)) return false;
          item.df = true;
          break;
        case InsnKind::Cld:
          if (!item.df && func != kNone && !violation(i, "redundant CLD", item)) return false;
          item.df = false;
          break;
        default:
          break;
      }
      if (in.dead_end) return true;
      if (next == kNone) {
        if (item.state.cfa.base == cfi::kUndefined || silent_) return true;
        report_end_of_section(in);
        return false;
      }
      i = next;
    }
  }

  // A conditional branch as the section's last instruction: its fall-through runs off the end.
  WorkItem end_marker(const WorkItem& item, int32_t i) {
    WorkItem w = item;
    w.insn = -2 - i;  // never a valid index: follow() reports the end of the section
    return w;
  }

  void report_end_of_section(const Instruction& in) {
    Finding f;
    f.positional = false;
    f.function = func_ == kNone ? std::string() : obj_.functions[func_].name;
    f.message = fmt::format("{}: unexpected end of section", obj_.section_name(obj_.section_of(in)));
    out_.findings.push_back(std::move(f));
  }

  // An unwind hint replaces the state (a restore hint brings back the state saved earlier).
  bool apply_hint(int32_t i, WorkItem& item) {
    const Instruction& in = obj_.insns[i];
    if (!in.hint_restore) {
      if (const int32_t h = obj_.hint_state(in); h != kNone) item.state = obj_.hint_states[h];
      return true;
    }
    int32_t save = kNone;
    const int32_t owner = in.func;
    for (int32_t k = obj_.prev_in_section(i);
         k != kNone && owner != kNone && obj_.insns[k].insn.offset >= obj_.functions[owner].offset;
         k = obj_.prev_in_section(k))
      if (obj_.insns[k].hint_save) {
        save = k;
        break;
      }
    if (save == kNone) {
      stop(i, "no corresponding CFI save for CFI restore", item);
      return false;
    }
    if (!visited(save)) {
      stop(i, "objtool isn't smart enough to handle this CFI save/restore combo", item);
      return false;
    }
    item.state = out_.states[out_.state_of_insn[save]];
    return true;
  }

  bool sibling_ok(const Instruction& in, int32_t i, const WorkItem& item) {
    if (item.state.has_modified_frame() &&
        !violation(i, "sibling call from callable instruction with modified stack frame", item))
      return false;
    if (item.df && !violation(i, fmt::format("call to {}() with DF set", callee_name(in)), item)) return false;
    return true;
  }

  const DecodedObject& obj_;
  CheckResult& out_;
  bool explain_;
  int32_t func_ = kNone;
  bool silent_ = false;
  bool from_hint_ = false;
  std::vector<uint8_t>* touched_;
  std::vector<bool> silent_seen_;
  std::vector<PathNode> nodes_;
  std::deque<Pending> stack_;
};

bool is_call_to(const DecodedObject& obj, const Instruction& in, std::string_view name) {
  return in.insn.kind == InsnKind::Call && in.call_symbol() != kNone &&
         obj.symbol(static_cast<uint32_t>(in.call_symbol())).name == name;
}

bool prev_is_dead_end(const DecodedObject& obj, int32_t i) {
  if (i <= 0) return false;
  const Instruction& p = obj.insns[i - 1];
  if (p.dead_end) return true;
  if (obj.call_func(p) != kNone && p.insn.kind == InsnKind::Call && is_noreturn_function(obj, obj.call_func(p)))
    return true;
  return p.insn.kind == InsnKind::Call && p.call_symbol() != kNone &&
         is_known_noreturn_name(obj.symbol(static_cast<uint32_t>(p.call_symbol())).name, obj.format);
}

bool ignore_unreachable(const DecodedObject& obj, int32_t i) {
  const Instruction& in = obj.insns[i];
  if (in.ignore || in.insn.kind == InsnKind::Nop || in.insn.kind == InsnKind::Trap) return true;
  const std::string_view sec = obj.section_name(obj.section_of(in));
  if (sec == ".altinstr_replacement" || sec == ".altinstr_aux") return true;
  if (in.func == kNone) return false;
  if (obj.functions[in.func].static_call_trampoline) return true;
  // A ud2 (or a jump to one) after a call that never returns is the compiler's "unreachable" trap.
  if (prev_is_dead_end(obj, i) &&
      (in.insn.kind == InsnKind::Bug || (in.insn.kind == InsnKind::Jump && in.jump_dest() != kNone &&
                                         obj.insns[in.jump_dest()].insn.kind == InsnKind::Bug)))
    return true;
  // Sanitizer calls that the compiler places on paths it knows are unreachable.
  int32_t k = i;
  for (int n = 0; n < 5 && k != kNone; ++n) {
    const Instruction& c = obj.insns[k];
    if (is_call_to(obj, c, "__asan_handle_no_return") || is_call_to(obj, c, "__ubsan_handle_builtin_unreachable"))
      return true;
    if (c.insn.kind == InsnKind::Jump) {
      if (c.jump_dest() != kNone && obj.insns[c.jump_dest()].func == c.func) {
        k = c.jump_dest();
        continue;
      }
      break;
    }
    const Function& f = obj.functions[c.func == kNone ? in.func : c.func];
    if (c.insn.end() >= f.offset + f.size) break;
    k = obj.next_in_section(k);
  }
  return false;
}

}  // namespace

namespace {

CheckResult empty_result(const DecodedObject& obj) {
  CheckResult out;
  out.state_of_insn.assign(obj.insns.size(), -1);
  out.function_failed.assign(obj.functions.size(), false);
  out.hint_reached.assign(obj.insns.size(), false);
  return out;
}

// objtool's order: sections in header order, functions by address within each.
std::vector<int32_t> objtool_order(const DecodedObject& obj) {
  std::vector<int32_t> order;
  for (int32_t f = 0; f < static_cast<int32_t>(obj.functions.size()); ++f) order.push_back(f);
  std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) {
    const Function &fa = obj.functions[a], &fb = obj.functions[b];
    return fa.section != fb.section ? fa.section < fb.section : fa.offset < fb.offset;
  });
  return order;
}

// Checks the functions of `order`, in turn, into `out` (the result `checker` writes).
void check_in_order(const DecodedObject& obj, std::span<const int32_t> order, FunctionChecker& checker,
                    CheckResult& out) {
  for (int32_t f : order) {
    const Function& fn = obj.functions[f];
    if (fn.size == 0) {
      Finding w;
      w.positional = false;
      w.function = fn.name;
      w.message = fmt::format("{}() is missing an ELF size annotation", fn.name);
      out.findings.push_back(std::move(w));
      out.function_failed[f] = true;
      continue;
    }
    if (fn.parent != f || !fn.canonical || fn.first_insn == fn.end_insn) continue;
    if (fn.broken) {
      out.function_failed[f] = true;
      continue;
    }
    const Instruction& first = obj.insns[fn.first_insn];
    if (first.insn.offset != fn.offset || first.ignore || checker.visited(static_cast<int32_t>(fn.first_insn)))
      continue;
    if (!checker.run(static_cast<int32_t>(fn.first_insn), f, CfiState::function_entry())) {
      out.function_failed[f] = true;
      checker.run(static_cast<int32_t>(fn.first_insn), f, CfiState::function_entry(), /*silent=*/true);
    }
  }
}

// The functions of `order` checked as two halves at once, with the result of checking them one after the
// other. Functions are independent but for the instructions two of them reach (code outside every symbol,
// a path that crosses into another function): the second half notes every instruction it looks at, and
// where that is one the first half reached (or a silent pass of it went through), the second half is
// checked again after the first, on the first half's result, as one thread would have. The merged state
// table numbers states as one thread would: the first half's, then the second half's new ones, each in
// order of first appearance. Two halves, not one per core: each costs a result's tables (docs/design.md,
// "Memory").
CheckResult check_halves(const DecodedObject& obj, bool explain, std::span<const int32_t> order) {
  uint64_t total = 0, first_size = 0;
  for (int32_t f : order) total += obj.functions[f].end_insn - obj.functions[f].first_insn;
  size_t split = 0;
  while (split + 1 < order.size() && first_size * 2 < total) {
    first_size += obj.functions[order[split]].end_insn - obj.functions[order[split]].first_insn;
    ++split;
  }
  CheckResult out = empty_result(obj), second = empty_result(obj);
  std::vector<uint8_t> touched(obj.insns.size(), 0);
  FunctionChecker first_checker(obj, out, explain), second_checker(obj, second, explain, &touched);
  run_beside([&] { check_in_order(obj, order.first(split), first_checker, out); },
             [&] { check_in_order(obj, order.subspan(split), second_checker, second); });
  for (size_t i = 0; i < touched.size(); ++i)
    if (touched[i] && (out.visited(static_cast<int32_t>(i)) || first_checker.silent_seen(static_cast<int32_t>(i)))) {
      check_in_order(obj, order.subspan(split), first_checker, out);
      return out;
    }
  std::vector<int32_t> id_of(second.states.size());
  for (size_t id = 0; id < id_of.size(); ++id)
    id_of[id] = out.states.intern(second.states.at(static_cast<int32_t>(id)));
  for (size_t i = 0; i < second.state_of_insn.size(); ++i)
    if (second.state_of_insn[i] >= 0) out.state_of_insn[i] = id_of[second.state_of_insn[i]];
  for (size_t f = 0; f < out.function_failed.size(); ++f)
    if (second.function_failed[f]) out.function_failed[f] = true;
  for (Finding& f : second.findings) out.findings.push_back(std::move(f));
  return out;
}

}  // namespace

CheckResult check_functions(const DecodedObject& obj, bool explain, unsigned threads) {
  const std::vector<int32_t> order = objtool_order(obj);
  CheckResult out;
  if (threads >= 2 && order.size() >= 2) {
    out = check_halves(obj, explain, order);
  } else {
    out = empty_result(obj);
    FunctionChecker checker(obj, out, explain);
    check_in_order(obj, order, checker, out);
  }
  // Code reached only through unwind hints (entry code, or what follows a context switch).
  FunctionChecker checker(obj, out, explain);
  if (obj.has_hints)
    for (int32_t i = 0; i < static_cast<int32_t>(obj.insns.size()); ++i) {
      const Instruction& in = obj.insns[i];
      if (!in.hint || out.visited(i) || in.ignore) continue;
      if (!checker.run(i, in.func, CfiState{}, /*silent=*/false, /*from_hint=*/true) && in.func != kNone)
        out.function_failed[obj.parent_of(in.func)] = true;
    }
  return out;
}

namespace {

// A linked object (vmlinux.o) keeps the code of weak functions that lost to a strong definition, with no
// symbol left over it. Such "holes" between symbols are not reported as unreachable (objtool's --link).
class SymbolHoles {
 public:
  explicit SymbolHoles(const DecodedObject& obj) : obj_(obj) {}

  // 0: `offset` is inside a symbol (or before every symbol); -1: a hole up to the section's end;
  // otherwise the distance to the next symbol.
  int64_t hole_size(uint32_t section, uint64_t offset) {
    const auto& syms = sorted(section);
    auto it = std::upper_bound(syms.begin(), syms.end(), offset,
                               [](uint64_t o, const std::pair<uint64_t, uint64_t>& s) { return o < s.first; });
    for (auto back = it; back != syms.begin();) {
      --back;
      if (offset < back->second) return 0;  // inside
      if (back->first + 0x100000 < offset) break;
    }
    if (it == syms.begin()) return 0;
    if (it == syms.end()) return -1;
    return static_cast<int64_t>(it->first - offset);
  }

 private:
  const std::vector<std::pair<uint64_t, uint64_t>>& sorted(uint32_t section) {
    auto [it, fresh] = cache_.try_emplace(section);
    if (fresh) {
      for (const ElfSymbol& s : obj_.elf->symbols())
        if (s.section == section && s.type != STT_FILE && s.type != STT_SECTION)
          it->second.push_back({s.offset, s.offset + s.size});
      std::sort(it->second.begin(), it->second.end());
    }
    return it->second;
  }

  const DecodedObject& obj_;
  std::unordered_map<uint32_t, std::vector<std::pair<uint64_t, uint64_t>>> cache_;
};

bool in_ignored_hole(const DecodedObject& obj, const CheckResult& result, SymbolHoles& holes, int32_t i,
                     std::vector<uint8_t>& extra_ignore) {
  const Instruction& in = obj.insns[i];
  const int64_t size = holes.hole_size(obj.section_of(in), in.insn.offset);
  if (size == 0) return false;
  if (size < 0) return true;
  const uint64_t end = in.insn.offset + static_cast<uint64_t>(size);
  for (int32_t k = obj.next_in_section(i); k != kNone; k = obj.next_in_section(k)) {
    if (result.visited(k)) return true;
    const Instruction& c = obj.insns[k];
    if (c.insn.offset >= end) break;
    // A hole that jumps into a .cold part: that part is dead code of the dropped function too.
    if (c.jump_dest() != kNone && obj.insns[c.jump_dest()].func != kNone &&
        obj.functions[obj.insns[c.jump_dest()].func].name.find(".cold") != std::string::npos) {
      const Function& cold = obj.functions[obj.insns[c.jump_dest()].func];
      for (uint32_t x = cold.first_insn; x < cold.end_insn; ++x) extra_ignore[x] = 1;
    }
  }
  return false;
}

}  // namespace

void check_reachability(const DecodedObject& obj, CheckResult& result) {
  size_t files = 0;
  for (const ElfSymbol& s : obj.elf->symbols()) files += s.type == STT_FILE;
  const bool linked_object = files > 1;  // several objects linked with -r, like vmlinux.o
  SymbolHoles holes(obj);
  std::vector<uint8_t> extra_ignore(obj.insns.size(), 0);
  for (int32_t i = 0; i < static_cast<int32_t>(obj.insns.size()); ++i) {
    if (result.visited(i) || extra_ignore[i]) continue;
    const Instruction& in = obj.insns[i];
    if (in.ignore || in.insn.kind == InsnKind::Nop || in.insn.kind == InsnKind::Trap) continue;
    if (linked_object && in.func == kNone) {
      if (in_ignored_hole(obj, result, holes, i, extra_ignore)) continue;
    } else if (ignore_unreachable(obj, i)) {
      continue;
    }
    result.findings.push_back(obj.finding_at(obj.insns[i], "unreachable instruction"));
    return;
  }
}

void find_unchecked_instructions(const DecodedObject& obj, CheckResult& result) {
  result.first_unchecked.assign(obj.functions.size(), kNone);
  for (int32_t i = 0; i < static_cast<int32_t>(obj.insns.size()); ++i) {
    const Instruction& in = obj.insns[i];
    if (in.func == kNone || result.visited(i) || ignore_unreachable(obj, i)) continue;
    int32_t& first = result.first_unchecked[obj.parent_of(in.func)];
    if (first == kNone) first = i;
  }
}

namespace {

// Per code section, the ranges its function symbols cover ([offset, offset + max(size, 1)): a function without
// a size still owns its first instruction).
std::vector<CoveredRanges> function_ranges(const DecodedObject& obj) {
  std::vector<CoveredRanges> ranges(obj.elf->sections().size());
  for (const Function& f : obj.functions) ranges[f.section].add(f.offset, f.offset + std::max<uint64_t>(f.size, 1));
  for (CoveredRanges& r : ranges) r.done();
  return ranges;
}

}  // namespace

std::vector<Finding> returns_outside_functions(const DecodedObject& obj, const CheckResult& result) {
  std::vector<Finding> out;
  size_t files = 0;
  for (const ElfSymbol& s : obj.elf->symbols()) files += s.type == STT_FILE;
  const bool linked_object = files > 1;
  SymbolHoles holes(obj);
  std::vector<uint8_t> extra_ignore(obj.insns.size(), 0);
  const bool hints_known = result.hint_reached.size() == obj.insns.size();
  std::optional<std::vector<CoveredRanges>> functions;  // built at the first return outside a function
  for (int32_t i = 0; i < static_cast<int32_t>(obj.insns.size()); ++i) {
    const Instruction& in = obj.insns[i];
    if (in.insn.kind != InsnKind::Return || in.ignore || in.func != kNone) continue;
    // Annotated entry code: an unwind hint states the stack of the code this path runs through. (Code
    // reached through an exception-table fixup runs at its own address, outside every function: reported.)
    if (hints_known && result.hint_reached[i]) continue;
    const uint32_t section = obj.section_of(in);
    const std::string_view sec = obj.section_name(section);
    if (sec == ".altinstr_replacement" || sec == ".altinstr_aux") continue;  // copied into a function at boot
    if (!functions) functions = function_ranges(obj);
    if ((*functions)[section].covers(in.insn.offset)) continue;  // inside a function symbol's range
    if (linked_object && !result.visited(i) &&
        (extra_ignore[i] || in_ignored_hole(obj, result, holes, i, extra_ignore)))
      continue;
    out.push_back(obj.finding_at(in, "return instruction outside of a callable function"));
  }
  return out;
}

}  // namespace framecert

#include "harness/cfi/cfi_unwind.h"

// The DW_OP_* numbers of the DWARF standard only: libdw itself is used in cfi_image.cpp alone.
#include <dwarf.h>

#include <fmt/format.h>

namespace framecert::cfi {

namespace {

const char* reg_name(uint64_t r) {
  static const char* const names[kNumRegs] = {"rax", "rdx", "rcx", "rbx", "rsi", "rdi", "rbp", "rsp", "r8",
                                              "r9",  "r10", "r11", "r12", "r13", "r14", "r15", "rip"};
  return r < kNumRegs ? names[r] : "a register beyond rip";
}

// A DWARF expression's result: an address where the value is saved, or the value itself.
struct ExprValue {
  uint64_t value = 0;
  bool is_value = false;  // ended in DW_OP_stack_value
};

// Evaluates the operations libdw hands out for CFA and register rules. Anything else is refused (an error
// string), never approximated.
Result<ExprValue> evaluate(const std::vector<CfiOp>& ops, const RegSet& regs, std::optional<uint64_t> cfa,
                           Memory& mem) {
  const size_t nops = ops.size();
  std::vector<uint64_t> st;
  ExprValue out;
  auto need = [&](size_t n) { return st.size() >= n; };
  for (size_t i = 0; i < nops; ++i) {
    const CfiOp& op = ops[i];
    uint8_t a = op.atom;
    if (a >= DW_OP_breg0 && a <= DW_OP_breg31) {
      uint64_t r = a - DW_OP_breg0;
      if (r >= kNumRegs || !regs[r]) return fail("it needs {}, which is not known here", reg_name(r));
      st.push_back(*regs[r] + op.number);
    } else if (a == DW_OP_bregx) {
      if (op.number >= kNumRegs || !regs[op.number])
        return fail("it needs {}, which is not known here", reg_name(op.number));
      st.push_back(*regs[op.number] + op.number2);
    } else if (a >= DW_OP_lit0 && a <= DW_OP_lit31) {
      st.push_back(a - DW_OP_lit0);
    } else {
      switch (a) {
        case DW_OP_call_frame_cfa:
          if (!cfa) return fail("DW_OP_call_frame_cfa without a CFA");
          st.push_back(*cfa);
          break;
        case DW_OP_const1u:
        case DW_OP_const2u:
        case DW_OP_const4u:
        case DW_OP_const8u:
        case DW_OP_constu:
        case DW_OP_const1s:
        case DW_OP_const2s:
        case DW_OP_const4s:
        case DW_OP_const8s:
        case DW_OP_consts:
          st.push_back(op.number);
          break;
        case DW_OP_plus_uconst:
          if (!need(1)) return fail("malformed CFI expression");
          st.back() += op.number;
          break;
        case DW_OP_plus:
        case DW_OP_minus:
        case DW_OP_and: {
          if (!need(2)) return fail("malformed CFI expression");
          uint64_t b = st.back();
          st.pop_back();
          st.back() = a == DW_OP_plus ? st.back() + b : a == DW_OP_minus ? st.back() - b : st.back() & b;
          break;
        }
        case DW_OP_dup:
          if (!need(1)) return fail("malformed CFI expression");
          st.push_back(st.back());
          break;
        case DW_OP_deref: {
          if (!need(1)) return fail("malformed CFI expression");
          auto v = mem.read_u64(RemoteAddr(st.back()));
          if (!v) return fail("memory unreadable at {:#x}", v.error().address.value);
          st.back() = *v;
          break;
        }
        case DW_OP_nop:
          break;
        case DW_OP_stack_value:
          if (i + 1 != nops) return fail("DW_OP_stack_value before the end of a CFI expression");
          out.is_value = true;
          break;
        default:
          return fail("unsupported DWARF operation {:#x} in CFI", a);
      }
    }
  }
  if (st.size() != 1) return fail("malformed CFI expression ({} values left)", st.size());
  out.value = st.back();
  return out;
}

}  // namespace

CfiTrace cfi_unwind(Memory& mem, const CfiCode& code, const CfiStart& start, const CfiStack& stack, size_t max_frames) {
  CfiTrace tr;
  RegSet regs = start.regs;
  uint64_t pc = start.pc;
  bool is_ra = start.pc_is_return_address;
  auto stop = [&](std::string why) {
    tr.complete = false;
    tr.stopped_at = static_cast<int>(tr.frames.size()) - 1;
    tr.why = fmt::format("no truth at frame {}: {}", tr.stopped_at, why);
    return tr;
  };
  if (!regs[kRsp]) {
    tr.why = "no stack pointer";
    return tr;
  }
  tr.frames.push_back(CfiFrame{pc, *regs[kRsp], std::nullopt, code.symbolize(pc, is_ra)});
  // A sleeping task that never ran: its first return address already sits just below the end.
  if (is_ra && stack.end_cfa && *regs[kRsp] == stack.end_cfa) {
    tr.complete = true;
    tr.why = "reached the frame record below the pt_regs at the top of the stack";
    return tr;
  }
  while (true) {
    CfiFrame& cur = tr.frames.back();
    uint64_t lookup = is_ra ? pc - 1 : pc;
    std::string sym = code.symbolize(pc, is_ra);
    std::string where = sym.empty() ? fmt::format("{:#x}", pc) : fmt::format("{:#x} ({})", pc, sym);
    std::string ambiguity;
    const CfiImage* img = code.image_for(lookup, &ambiguity);
    if (!img && !ambiguity.empty()) return stop(fmt::format("pc {}: ambiguous code ({})", where, ambiguity));
    if (!img) return stop(fmt::format("pc {} is in no known code", where));
    std::string err;
    auto row = img->row_at(lookup, err);
    if (!row) return stop(fmt::format("no CFI for pc {} in {} ({})", where, img->name(), err));
    const bool signal = row->signal_frame;
    if (row->return_address_register != kRip)
      return stop(
          fmt::format("CFI at {} names register {} as the return address", where, row->return_address_register));
    // The CFA.
    if (!row->cfa_error.empty()) return stop(fmt::format("CFI at {}: {}", where, row->cfa_error));
    if (row->cfa.empty()) return stop(fmt::format("CFI at {} does not define the CFA", where));
    auto cfa_r = evaluate(row->cfa, regs, std::nullopt, mem);
    if (!cfa_r) return stop(fmt::format("CFA at {}: {}", where, cfa_r.error()));
    uint64_t cfa = cfa_r->value;
    cur.cfa = cfa;
    uint64_t sp = *regs[kRsp];
    if (cfa % 8 != 0 || cfa < sp + 8 || cfa < stack.low + 8 || cfa > stack.high)
      return stop(fmt::format("CFA {:#x} at {} outside the stack [{:#x}, {:#x}] above rsp {:#x}", cfa, where, stack.low,
                              stack.high, sp));
    if (stack.end_cfa && cfa > stack.end_cfa)
      return stop(fmt::format("CFA {:#x} at {} is above the end of the stack {:#x}", cfa, where, stack.end_cfa));
    // Every register of the caller by its rule; the return address must be known, others may be lost.
    RegSet next{};
    std::string ra_error;
    for (int r = 0; r < kNumRegs; ++r) {
      if (r == kRsp) continue;
      const CfiRule& rule = row->regs[r];
      if (rule.kind == CfiRule::Kind::Unreadable) {
        if (r == kRip) ra_error = fmt::format("CFI at {}: {}", where, rule.error);
        continue;
      }
      if (rule.kind == CfiRule::Kind::SameValue) {
        next[r] = regs[r];
        if (r == kRip) ra_error = fmt::format("CFI says the return address is the same value at {}", where);
        continue;
      }
      if (rule.kind == CfiRule::Kind::Undefined) {
        if (r == kRip) ra_error = fmt::format("CFI says the return address is undefined at {}", where);
        continue;
      }
      auto v = evaluate(rule.ops, regs, cfa, mem);
      if (!v) {
        if (r == kRip) ra_error = fmt::format("return address at {}: {}", where, v.error());
        continue;
      }
      if (v->is_value) {
        next[r] = v->value;
        continue;
      }
      // A saved slot: the return address's must lie in the stack (and in this frame); others are read where
      // the CFI says, and simply unknown if unreadable.
      if (r == kRip && (v->value < sp || v->value + 8 > cfa || v->value + 8 > stack.high)) {
        ra_error = fmt::format("the return address slot {:#x} at {} is outside the frame [{:#x}, {:#x})", v->value,
                               where, sp, cfa);
        continue;
      }
      auto word = mem.read_u64(RemoteAddr(v->value));
      if (!word) {
        if (r == kRip)
          ra_error =
              fmt::format("memory unreadable at {:#x} (the return address of {})", word.error().address.value, where);
        continue;
      }
      next[r] = *word;
    }
    if (!next[kRip]) return stop(ra_error.empty() ? fmt::format("no return address at {}", where) : ra_error);
    next[kRsp] = cfa;
    uint64_t ra = *next[kRip];
    regs = next;
    pc = ra;
    is_ra = !signal;
    tr.frames.push_back(CfiFrame{pc, cfa, std::nullopt, code.symbolize(pc, is_ra)});
    if (stack.end_cfa && cfa == stack.end_cfa) {
      tr.complete = true;
      tr.why = "reached the frame record below the pt_regs at the top of the stack";
      return tr;
    }
    if (tr.frames.size() >= max_frames) return stop(fmt::format("more than {} frames", max_frames));
  }
}

}  // namespace framecert::cfi

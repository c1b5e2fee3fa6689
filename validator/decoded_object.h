// An ELF object decoded for checking: every instruction of every executable section, the functions that
// own them (with .cold parts linked to their parents), and each branch's resolved destination.
// Built once per object by build_decoded_object(); the checker then only reads it (plus visit marks).
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "validator/cfi_state.h"
#include "validator/elf_file.h"
#include "validator/finding.h"
#include "validator/insn.h"
#include "validator/kernel_format.h"

namespace framecert {

class Decoder;

inline constexpr int32_t kNone = -1;

struct Function {
  uint32_t symbol = 0;    // index into ElfFile::symbols()
  std::string_view name;  // the symbol's, in the ELF string table
  uint32_t section = 0;
  uint64_t offset = 0;
  uint64_t size = 0;
  int32_t parent = kNone;  // the function this is a .cold part of; itself otherwise
  int32_t cold_child = kNone;
  bool canonical = true;  // false for an alias (same start, size and type as a later symbol)
  bool weak = false;
  bool global = false;
  bool non_standard = false;            // STACK_FRAME_NON_STANDARD: not validated, not certified
  bool broken = false;                  // a structural error (e.g. an unannotated intra-function call) stops its check
  bool static_call_trampoline = false;  // __SCT__*: patched at run time, its tail is never "unreachable"
  uint32_t first_insn = 0;              // global instruction index range [first_insn, end_insn)
  uint32_t end_insn = 0;
};

// One instruction of the object as the checker sees it. Kept small (docs/design.md, "Memory"): what only a
// few instructions carry (switch-table cases, alternatives, unwind hints) lives in DecodedObject::extras,
// stack operations in DecodedObject::stack_ops (found with DecodedObject::ops).
struct Instruction {
  Insn insn;
  int32_t func = kNone;  // owning function (its canonical alias)
  // A branch goes to an instruction or to a symbol, never both: one field holds either.
  int32_t dest_ = kNone;
  bool sibling_target : 1 = false;  // a static jump that leaves the function: a sibling call
  bool retpoline_jump : 1 = false;  // a jump to a retpoline thunk: an indirect tail call out of the function
  bool dead_end : 1 = false;        // execution never continues past this instruction
  bool ignore : 1 = false;          // inside a non-standard function
  bool jump_table : 1 = false;      // an indirect jump through a switch table (extras: table_targets)
  bool skip_orig : 1 = false;       // only the alternatives run (e.g. a feature every CPU is assumed to have)
  bool ignore_alts : 1 = false;     // the alternatives are not followed
  bool hint : 1 = false;            // an unwind hint sets the state here (extras: hint_state)
  bool hint_save : 1 = false;
  bool hint_restore : 1 = false;
  bool has_extra : 1 = false;        // DecodedObject::extras holds an entry for it
  bool last_in_section : 1 = false;  // its section (DecodedObject::section_of) ends with it
  bool dest_is_symbol_ : 1 = false;
  // Its stack operations no longer apply (a call whose callee is known: the callee's return undoes the push).
  bool ops_dropped : 1 = false;

  // The instruction a direct jump goes to (kNone for sibling calls and everything else).
  int32_t jump_dest() const { return dest_is_symbol_ ? kNone : dest_; }
  // The callee (or sibling-call target) symbol index when known (may be undefined), else kNone.
  int32_t call_symbol() const { return dest_is_symbol_ ? dest_ : kNone; }
  void set_jump_dest(int32_t i) {
    dest_ = i;
    dest_is_symbol_ = false;
  }
  void set_call_symbol(int32_t symbol) {
    dest_ = symbol;
    dest_is_symbol_ = symbol != kNone;
  }

  bool is_call() const { return insn.kind == InsnKind::Call || insn.kind == InsnKind::CallIndirect; }
};
static_assert(sizeof(Instruction) <= 28, "millions of Instructions are kept: see docs/design.md, Memory");

// What only some instructions carry.
struct InstructionExtra {
  std::vector<int32_t> table_targets;  // switch-table cases of an indirect jump (jump_table)
  // Code that may run instead of this instruction: an alternative replacement, the other side of a
  // jump label, an exception fixup. Each is followed with the state before this instruction.
  std::vector<int32_t> alts;
  int32_t alt_next = kNone;    // last instruction of a replacement: execution continues here
  int32_t hint_state = kNone;  // index into DecodedObject::hint_states
};

struct SectionCode {
  uint32_t section = 0;
  uint32_t first_insn = 0;  // [first_insn, end_insn) in DecodedObject::insns
  uint32_t end_insn = 0;
};

struct DecodedObject {
  const ElfFile* elf = nullptr;
  KernelFormat format = KernelFormat::Linux6_1;
  std::vector<SectionCode> code_sections;
  std::vector<int32_t> code_index;  // section index -> index into code_sections, or kNone
  std::vector<Instruction> insns;   // grouped by section, sorted by offset
  std::vector<StackOp> stack_ops;   // every instruction's stack operations, in instruction order
  // Per block of kOpsBlock instructions: where the first one's operations start in stack_ops. An
  // instruction's own start is that plus the op_count of the instructions before it in the block: 4 bytes
  // per 8 instructions instead of 4 per instruction (docs/design.md, "Memory").
  static constexpr uint32_t kOpsBlock = 8;
  std::vector<uint32_t> ops_block_start;
  std::unordered_map<int32_t, InstructionExtra> extras;  // by instruction index (Instruction::has_extra)
  std::vector<Function> functions;
  // Structural errors (objtool's hard errors). One without a function (undecodable bytes, a .cold part
  // without parent) stops the check of the whole object; one inside a function marks it `broken`.
  std::vector<Finding> fatal;
  // Diagnostics of the decoding that say nothing about frames and certify or uncertify nothing, printed
  // before the findings as objtool prints them: "notrack prefix found at SECTION:0xOFF".
  std::vector<Finding> notes;

  const SectionCode* code_of(uint32_t section) const;
  int32_t find_insn(uint32_t section, uint64_t offset) const;  // exact start, or kNone
  int32_t next_in_section(int32_t i) const;
  int32_t prev_in_section(int32_t i) const;
  const ElfReloc* reloc_of(const Instruction& in) const;
  const ElfSymbol& symbol(uint32_t index) const { return elf->symbols()[index]; }
  std::string_view section_name(uint32_t section) const { return elf->sections()[section].name; }
  // The function for a symbol index, or kNone.
  int32_t function_of_symbol(uint32_t symbol) const;
  // The function whose first instruction is `i`, or kNone.
  int32_t function_starting_at(int32_t i) const;
  int32_t parent_of(int32_t func) const { return func == kNone ? kNone : functions[func].parent; }
  int32_t index_of(const Instruction& in) const { return static_cast<int32_t>(&in - insns.data()); }
  uint32_t section_of(const Instruction& in) const;           // its ELF section index
  std::span<const StackOp> ops(const Instruction& in) const;  // its stack operations (none once dropped)
  // The callee (or sibling-call target) when it is a function of this object, or kNone.
  int32_t call_func(const Instruction& in) const {
    return in.call_symbol() == kNone ? kNone : function_of_symbol(static_cast<uint32_t>(in.call_symbol()));
  }
  const InstructionExtra* extra(const Instruction& in) const;
  InstructionExtra& extra_for(int32_t i);  // creates the entry
  std::span<const int32_t> alts(const Instruction& in) const;
  std::span<const int32_t> table_targets(const Instruction& in) const;
  int32_t hint_state(const Instruction& in) const;

  // The replacements of the kernel's alternatives (.altinstructions groups), which the kernel copies over
  // the original at boot: instructions [first, last] (by next_in_section) may run at the original's place,
  // over the original's orig_len bytes.
  struct Replacement {
    int32_t orig = kNone, first = kNone, last = kNone;
    uint32_t orig_len = 0;
  };
  std::vector<Replacement> replacements;

  std::vector<int32_t> function_by_symbol;  // symbol index -> function index
  std::vector<CfiState> hint_states;
  bool has_hints = false;

  // The instruction execution continues with after `i` (the end of a replacement jumps back).
  int32_t next_to_validate(int32_t i) const {
    if (const InstructionExtra* x = extra(insns[i]); x && x->alt_next != kNone) return x->alt_next;
    return next_in_section(i);
  }
  // A finding at an instruction, named like objtool names it: after the first function symbol (in
  // symbol-table order) whose range holds the instruction, which for aliases is not the one validated.
  Finding finding_at(const Instruction& in, std::string message) const;
  // The relocation at exactly `offset` of `section`, or null.
  const ElfReloc* reloc_at(uint32_t section, uint64_t offset) const;
};

// What a cheap pass over `elf`'s code (lengths only) tells the decoder: how many instructions each executable
// section has, so the instruction table is allocated once, exactly; and pieces of at most kChunk instructions,
// each starting where the linear decode finds an instruction, so the sections can be decoded on several threads
// into the one table a linear decode gives.
struct DecodePlan {
  static constexpr size_t kChunk = 16384;
  struct Piece {
    uint64_t offset = 0;
    size_t count = 0;
  };
  struct Section {
    uint32_t index = 0;
    size_t count = 0;
    std::vector<Piece> pieces;  // in order, covering the section's `count` instructions
  };
  std::vector<Section> sections;  // executable sections with code, in section order
  size_t total = 0;
};
// `threads`: how many may count at once. A big section is counted in parts that start at function symbols;
// a part is kept only where the part before it ended exactly at its start (else the section is counted again
// linearly), so the plan never depends on `threads`.
DecodePlan plan_decode(const ElfFile& elf, const Decoder& decoder, unsigned threads = 1);
// The bytes of executable code in `elf` (what decides whether more threads are worth starting).
uint64_t code_bytes(const ElfFile& elf);

// Decodes every executable section of `elf` and resolves branches; never fails, but may record
// objtool-style fatal findings (undecodable bytes, unannotated intra-function call) in `fatal`.
// `plan`: plan_decode(elf, decoder), or an empty plan (one thread, table grown as it decodes). `threads`: how many
// may decode at once (the result does not depend on it).
// `kernel`: the format the caller says the object has (the object's own evidence wins).
DecodedObject build_decoded_object(const ElfFile& elf, const Decoder& decoder, const DecodePlan& plan,
                                   unsigned threads = 1, std::optional<KernelFormat> kernel = std::nullopt);

// Whether calling `func` never returns (objtool's rule: no return instruction and no sibling call,
// plus the known noreturn functions outside the object).
bool is_noreturn_function(const DecodedObject& obj, int32_t func, int depth = 0);
// `format`: whose list of kernel functions (objtool 6.1's or 6.12's); the C library's are known in both.
bool is_known_noreturn_name(std::string_view name, KernelFormat format = KernelFormat::Linux6_1);
// Whether a symbol of this binding named `name` is on the noreturn list, as the object's kernel's objtool
// looks it up (6.12 looks up weak symbols too, 6.1 global ones only).
bool listed_noreturn(const DecodedObject& obj, std::string_view name, bool global, bool weak);
// A function's instruction ranges: its own, then its .cold part's.
std::vector<std::pair<uint32_t, uint32_t>> instruction_ranges(const DecodedObject& obj, int32_t func);

// The kernel's annotations and special sections (annotations.cpp), applied in objtool's order by
// build_decoded_object().
void read_ignore_alternatives(DecodedObject& obj);
void read_special_sections(DecodedObject& obj);  // .altinstructions, __jump_table, __ex_table

// Where execution may go after instruction `i`, as the checker follows it (alternatives, switch-table cases,
// the branch target unless it is a sibling call, the fall-through unless a dead end): the edges the passes
// over the checked paths (rbp_flow, call_depth) walk.
void followed_successors(const DecodedObject& obj, int32_t i, std::vector<int32_t>& out);
// An indirect jump of a function whose destinations no pass can see (no resolved switch table, no
// retpoline tail call): it may come back into the function anywhere. One in code outside every function
// (a PLT stub, a kernel alternative's replacement) leaves for another function's entry: false.
bool jumps_anywhere(const DecodedObject& obj, const Instruction& in);
void read_intra_function_calls(DecodedObject& obj);
void read_dead_ends(DecodedObject& obj);  // .discard.unreachable / .discard.reachable
void read_unwind_hints(DecodedObject& obj);
Finding structural_error(DecodedObject& obj, const Instruction& in, std::string message);
Finding object_error(std::string text);

}  // namespace framecert

// Building the decoded object: decode, attach instructions to functions, resolve jumps, calls and switch
// tables, mark dead ends. The rules for what counts as a sibling call, a switch table or a dead end follow
// objtool 6.1, so that both tools see the same control flow.
#include "validator/decoded_object.h"

#include <elf.h>

#include <algorithm>
#include <atomic>
#include <optional>
#include <set>
#include <thread>
#include <unordered_map>

#include "validator/covered_ranges.h"
#include "validator/decoder.h"
#include "validator/non_standard.h"

namespace framecert {

namespace {

constexpr uint32_t kRelocPc32 = 2;  // R_X86_64_PC32

bool is_retpoline_thunk(std::string_view name) { return name.starts_with("__x86_indirect_"); }
bool is_return_thunk(std::string_view name) { return name == "__x86_return_thunk"; }

}  // namespace

// A structural error inside a function: that function cannot be checked (objtool stops the whole
// object here; framecert stops only the function and checks the others — docs/rules.md).
Finding structural_error(DecodedObject& obj, const Instruction& in, std::string message) {
  if (in.func != kNone) obj.functions[obj.parent_of(in.func)].broken = true;
  return obj.finding_at(in, std::move(message));
}

Finding DecodedObject::finding_at(const Instruction& in, std::string message) const {
  Finding f;
  const uint32_t sec = section_of(in);
  f.section = section_name(sec);
  f.section_index = sec;
  f.offset = in.insn.offset;
  f.message = std::move(message);
  const Function* named = nullptr;
  for (const Function& fn : functions)  // in symbol-table order
    if (fn.section == sec && in.insn.offset >= fn.offset && in.insn.offset < fn.offset + fn.size &&
        (!named || fn.offset < named->offset))
      named = &fn;
  if (named) {
    f.function = named->name;
    f.func_offset = in.insn.offset - named->offset;
  }
  return f;
}

Finding object_error(std::string text) {
  Finding f;
  f.positional = false;
  f.message = std::move(text);
  return f;
}

namespace {

Finding fatal_at(DecodedObject& obj, const Instruction& in, std::string message) {
  return structural_error(obj, in, std::move(message));
}
Finding fatal_text(std::string text) { return object_error(std::move(text)); }

// One decoded instruction as the table keeps it; its stack operations are appended to `ops`, a note about it
// to `notes`.
Instruction make_instruction(const DecodedObject& obj, const ElfSection& sec, const DecodedInsn& insn, uint64_t off,
                             std::vector<StackOp>& ops, std::vector<Finding>& notes) {
  Instruction in;
  in.insn = insn;  // the Insn part; its stack operations go to the shared table
  ops.insert(ops.end(), insn.ops.begin(), insn.ops.begin() + insn.op_count);
  in.dead_end = insn.kind == InsnKind::Bug;  // ud2 is BUG(): execution stops there
  // objtool counts `syscall` as a context switch because kernel code never contains one; in a linked
  // user-space image it is an ordinary instruction that returns to the next one (docs/rules.md).
  if (!obj.elf->relocatable() && insn.kind == InsnKind::ContextSwitch && insn.is_syscall)
    in.insn.kind = InsnKind::Other;
  if (insn.notrack) {
    Finding note;
    note.positional = false;
    note.section = sec.name;
    note.section_index = sec.index;
    note.offset = off;
    note.message = fmt::format("notrack prefix found at {}:0x{:x}", sec.name, off);
    notes.push_back(std::move(note));
  }
  return in;
}

// The linear decode, one section after the other; at undecodable bytes a section's decode stops there.
// `total`: the instruction count when counted (0: not counted; x86 code averages about 4 bytes an instruction).
void decode_linearly(DecodedObject& obj, const Decoder& decoder, size_t total) {
  obj.insns.reserve(total ? total : code_bytes(*obj.elf) / 4);
  for (const ElfSection& sec : obj.elf->sections()) {
    if (!sec.executable() || sec.bytes.empty()) continue;
    SectionCode code{sec.index, static_cast<uint32_t>(obj.insns.size()), 0};
    for (uint64_t off = 0; off < sec.bytes.size();) {
      auto insn = decoder.decode(sec.bytes.subspan(off), static_cast<uint32_t>(off));  // < 4 GiB (check_object)
      if (!insn) {
        obj.fatal.push_back(fatal_text(fmt::format("can't decode instruction at {}:0x{:x}", sec.name, off)));
        break;
      }
      obj.insns.push_back(make_instruction(obj, sec, *insn, off, obj.stack_ops, obj.notes));
      off += insn->length;
    }
    code.end_insn = static_cast<uint32_t>(obj.insns.size());
    if (code.end_insn > code.first_insn) obj.insns.back().last_in_section = true;
    obj.code_sections.push_back(code);
  }
}

// The same table, decoded in the plan's pieces on `threads` threads: each piece starts where the counting
// pass found an instruction and decodes exactly as many as it counted there. Returns false (leaving `obj`
// for the linear decode) if some piece does not decode as counted.
bool decode_in_pieces(DecodedObject& obj, const Decoder& decoder, const DecodePlan& plan, unsigned threads) {
  struct Piece {
    const ElfSection* sec;
    uint64_t offset;
    size_t first, count;
    std::vector<StackOp> ops;
    std::vector<Finding> notes;
    uint64_t end = 0;  // the offset after its last instruction
    bool ok = false;
  };
  std::vector<Piece> pieces;
  size_t first = 0;
  for (const DecodePlan::Section& ps : plan.sections) {
    const ElfSection& sec = obj.elf->sections()[ps.index];
    for (const DecodePlan::Piece& p : ps.pieces) {
      pieces.push_back(Piece{&sec, p.offset, first, p.count, {}, {}});
      first += p.count;
    }
  }
  if (first != plan.total) return false;
  obj.insns.resize(plan.total);
  std::atomic<size_t> next{0};
  auto work = [&] {
    for (size_t p; (p = next.fetch_add(1)) < pieces.size();) {
      Piece& piece = pieces[p];
      uint64_t off = piece.offset;
      size_t n = 0;
      for (; n < piece.count && off < piece.sec->bytes.size(); ++n) {
        auto insn = decoder.decode(piece.sec->bytes.subspan(off), static_cast<uint32_t>(off));
        if (!insn) break;
        obj.insns[piece.first + n] = make_instruction(obj, *piece.sec, *insn, off, piece.ops, piece.notes);
        off += insn->length;
      }
      piece.ok = n == piece.count;
      piece.end = off;
    }
  };
  std::vector<std::thread> pool;
  for (unsigned t = 1; t < threads; ++t) pool.emplace_back(work);
  work();
  for (std::thread& t : pool) t.join();
  // A section whose code does not decode to its end gets the linear decode's finding (and is rare).
  bool whole = std::all_of(pieces.begin(), pieces.end(), [](const Piece& p) { return p.ok; });
  for (size_t p = 0; whole && p < pieces.size(); ++p)
    if ((p + 1 == pieces.size() || pieces[p + 1].sec != pieces[p].sec) && pieces[p].end != pieces[p].sec->bytes.size())
      whole = false;
  for (const DecodePlan::Section& ps : plan.sections) whole = whole && ps.count > 0;
  if (!whole) {
    obj.insns.clear();
    return false;
  }
  size_t ops = 0;
  for (const Piece& p : pieces) ops += p.ops.size();
  obj.stack_ops.reserve(ops);
  for (Piece& p : pieces) {
    obj.stack_ops.insert(obj.stack_ops.end(), p.ops.begin(), p.ops.end());
    for (Finding& f : p.notes) obj.notes.push_back(std::move(f));
  }
  first = 0;
  for (const DecodePlan::Section& ps : plan.sections) {
    SectionCode code{ps.index, static_cast<uint32_t>(first), static_cast<uint32_t>(first + ps.count)};
    first += ps.count;
    if (ps.count) obj.insns[first - 1].last_in_section = true;
    obj.code_sections.push_back(code);
  }
  return true;
}

void decode_sections(DecodedObject& obj, const Decoder& decoder, const DecodePlan& plan, unsigned threads) {
  // The instruction table is the validator's largest allocation: sized exactly up front, instead of
  // growing by doubling (which peaks at 1.5x its final size, copying).
  if (threads <= 1 || !decode_in_pieces(obj, decoder, plan, threads)) decode_linearly(obj, decoder, plan.total);
  // Where each block of kOpsBlock instructions' operations start in stack_ops.
  obj.ops_block_start.clear();
  uint32_t ops = 0;
  for (size_t i = 0; i < obj.insns.size(); ++i) {
    if (i % DecodedObject::kOpsBlock == 0) obj.ops_block_start.push_back(ops);
    ops += obj.insns[i].insn.op_count;
  }
  obj.stack_ops.shrink_to_fit();  // grown by doubling: give back the slack before checking begins
  obj.ops_block_start.shrink_to_fit();
  obj.code_index.assign(obj.elf->sections().size(), kNone);
  for (size_t c = 0; c < obj.code_sections.size(); ++c)
    obj.code_index[obj.code_sections[c].section] = static_cast<int32_t>(c);
}

void collect_functions(DecodedObject& obj) {
  const auto& syms = obj.elf->symbols();
  obj.function_by_symbol.assign(syms.size(), kNone);
  obj.functions.reserve(static_cast<size_t>(std::count_if(syms.begin(), syms.end(), [&](const ElfSymbol& s) {
    return s.type == STT_FUNC && s.defined() && obj.code_of(s.section);
  })));
  for (const ElfSymbol& s : syms) {
    if (s.type != STT_FUNC || !s.defined() || !obj.code_of(s.section)) continue;
    Function f;
    f.symbol = s.index;
    f.name = s.name;
    f.section = s.section;
    f.offset = s.offset;
    f.size = s.size;
    f.weak = s.bind == STB_WEAK;
    f.global = s.bind == STB_GLOBAL;
    f.static_call_trampoline = s.name.starts_with("__SCT__");
    obj.function_by_symbol[s.index] = static_cast<int32_t>(obj.functions.size());
    obj.functions.push_back(f);
  }
  // Aliases: of several function symbols with the same start and size, the last in the symbol table is
  // the one validated and named in findings (objtool's choice, kept so findings name the same symbol).
  std::unordered_map<std::string, int32_t> last_at;
  for (int32_t i = 0; i < static_cast<int32_t>(obj.functions.size()); ++i) {
    const Function& f = obj.functions[i];
    auto key = fmt::format("{}:{}:{}", f.section, f.offset, f.size);
    auto [it, fresh] = last_at.try_emplace(key, i);
    if (!fresh) {
      obj.functions[it->second].canonical = false;
      it->second = i;
    }
  }
  // .cold parts: "foo.cold" / "foo.cold.12" belong to "foo" — by name, the last function so named (as
  // objtool's lookup); a jump from the parent into its cold part corrects this later (resolve_jumps),
  // which matters in vmlinux.o where many local functions share a name.
  std::unordered_map<std::string_view, int32_t> by_name;
  for (int32_t i = 0; i < static_cast<int32_t>(obj.functions.size()); ++i)
    by_name.insert_or_assign(obj.functions[i].name, i);
  for (int32_t i = 0; i < static_cast<int32_t>(obj.functions.size()); ++i) {
    Function& f = obj.functions[i];
    f.parent = i;
    auto cold = f.name.find(".cold");
    if (cold == std::string::npos) continue;
    auto it = by_name.find(f.name.substr(0, cold));
    if (it == by_name.end()) {
      obj.fatal.push_back(fatal_text(fmt::format("{}(): can't find parent function", f.name)));
      continue;
    }
    Function& p = obj.functions[it->second];
    f.parent = it->second;
    p.cold_child = i;
    // -fno-reorder-functions may place the cold part at the end of the parent's own range.
    if (f.section == p.section && f.offset >= p.offset && f.offset + f.size == p.offset + p.size) p.size -= f.size;
  }
  for (int32_t i = 0; i < static_cast<int32_t>(obj.functions.size()); ++i) {
    Function& f = obj.functions[i];
    const SectionCode* code = obj.code_of(f.section);
    auto begin = obj.insns.begin() + code->first_insn, end = obj.insns.begin() + code->end_insn;
    auto lo =
        std::lower_bound(begin, end, f.offset, [](const Instruction& in, uint64_t o) { return in.insn.offset < o; });
    auto hi = std::lower_bound(lo, end, f.offset + f.size,
                               [](const Instruction& in, uint64_t o) { return in.insn.offset < o; });
    f.first_insn = static_cast<uint32_t>(lo - obj.insns.begin());
    f.end_insn = static_cast<uint32_t>(hi - obj.insns.begin());
    if (!f.canonical) continue;
    for (auto it = lo; it != hi; ++it) it->func = i;
  }
}

// Every function symbol (STT_FUNC, as in objtool 6.1) in code must start on an instruction: a function that
// starts inside an instruction, beyond its section or in an empty section cannot be followed from its entry,
// and is reported instead of being silently left out. An untyped label is no function: nothing is followed
// from it, and a `ret` under it is reported by framecert's own rule instead. In a relocatable object this
// stops the check of the object, as in objtool; in a linked image it stops only that function.
void check_symbol_starts(DecodedObject& obj) {
  const bool linked = !obj.elf->relocatable();
  std::vector<const ElfSymbol*> misplaced;
  for (const ElfSymbol& s : obj.elf->symbols()) {
    if (!s.defined() || s.type != STT_FUNC) continue;
    const ElfSection& sec = obj.elf->sections()[s.section];
    if (!sec.executable()) continue;
    if (obj.find_insn(s.section, s.offset) != kNone) continue;
    misplaced.push_back(&s);
  }
  std::stable_sort(misplaced.begin(), misplaced.end(), [](const ElfSymbol* a, const ElfSymbol* b) {
    return a->section != b->section ? a->section < b->section : a->offset < b->offset;
  });
  for (const ElfSymbol* s : misplaced) {
    Finding f = fatal_text(fmt::format("{}(): can't find starting instruction", s->name));
    if (linked) {
      f.function = s->name;
      if (int32_t fi = obj.function_of_symbol(s->index); fi != kNone) obj.functions[obj.parent_of(fi)].broken = true;
    }
    obj.fatal.push_back(std::move(f));
  }
}

// STACK_FRAME_NON_STANDARD(func) (validator/non_standard.h): func and its aliases are not followed.
void mark_non_standard(DecodedObject& obj) {
  for (const NonStandardEntry& e : read_non_standard(*obj.elf)) {
    int32_t f = kNone;
    if (e.function_symbol) {
      f = obj.function_by_symbol[e.symbol];
    } else {
      for (int32_t i = 0; i < static_cast<int32_t>(obj.functions.size()); ++i)
        if (obj.functions[i].section == e.section && obj.functions[i].offset == e.offset) f = i;
    }
    if (f == kNone) continue;
    Function& fn = obj.functions[f];
    fn.non_standard = true;
    for (uint32_t i = fn.first_insn; i < fn.end_insn; ++i) obj.insns[i].ignore = true;
    for (auto& other : obj.functions)  // its aliases too
      if (other.section == fn.section && other.offset == fn.offset) other.non_standard = true;
  }
}

// In a linked image a direct branch's target is a virtual address that may lie in another section (the
// PLT, say). Returns the (section, offset) it lands in, or false when no executable section holds it.
bool locate_linked_target(const DecodedObject& obj, const Instruction& in, uint32_t* section, uint64_t* offset) {
  const uint64_t va = obj.elf->sections()[obj.section_of(in)].address + in.insn.target();
  for (const SectionCode& code : obj.code_sections) {
    const ElfSection& s = obj.elf->sections()[code.section];
    if (va >= s.address && va - s.address < s.size) {
      *section = s.index;
      *offset = va - s.address;
      return true;
    }
  }
  return false;
}

bool is_static_jump(const Instruction& in) {
  return in.insn.kind == InsnKind::Jump || in.insn.kind == InsnKind::JumpConditional;
}

void resolve_jumps(DecodedObject& obj) {
  for (int32_t i = 0; i < static_cast<int32_t>(obj.insns.size()); ++i) {
    Instruction& in = obj.insns[i];
    if (!is_static_jump(in) || in.jump_dest() != kNone) continue;  // alternatives may have set it
    uint32_t dest_sec = obj.section_of(in);
    uint64_t dest_off = in.insn.target();
    const bool linked = !obj.elf->relocatable();
    if (linked && !locate_linked_target(obj, in, &dest_sec, &dest_off)) {
      if (in.func != kNone) in.sibling_target = true;  // leaves the image's code: an external tail call
      continue;
    }
    if (const ElfReloc* r = obj.reloc_of(in)) {
      const ElfSymbol& s = obj.symbol(r->symbol());
      if (s.type == STT_SECTION) {
        dest_sec = s.section;
        dest_off = static_cast<uint64_t>(r->addend) + 4;
      } else if (is_retpoline_thunk(s.name)) {
        in.insn.kind = InsnKind::JumpIndirect;  // a retpoline is an indirect jump in disguise
        in.ops_dropped = true;
        in.retpoline_jump = true;
        continue;
      } else if (is_return_thunk(s.name)) {
        in.insn.kind = InsnKind::Return;
        continue;
      } else if (in.func != kNone) {
        in.sibling_target = true;  // to a named symbol: external or internal sibling call
        in.set_call_symbol(static_cast<int32_t>(s.index));
        continue;
      } else if (s.defined()) {
        dest_sec = s.section;
        dest_off = s.offset + static_cast<uint64_t>(r->addend) + 4;
      } else {
        continue;  // non-function code jumping to another object: nothing to follow
      }
    }
    int32_t dest = obj.find_insn(dest_sec, dest_off);
    if (dest == kNone && linked && dest_sec != obj.section_of(in)) {
      // Into another section's padding or data (PLT stubs are often not decoded on instruction
      // boundaries we know): treat as a jump out of the function.
      if (in.func != kNone) in.sibling_target = true;
      continue;
    }
    if (dest == kNone) {
      obj.fatal.push_back(fatal_at(
          obj, in, fmt::format("can't find jump dest instruction at {}+0x{:x}", obj.section_name(dest_sec), dest_off)));
      continue;
    }
    const Instruction& d = obj.insns[dest];
    if (in.func != kNone && d.func != kNone && in.func != d.func) {
      const bool into_cold = obj.functions[d.func].name.find(".cold") != std::string::npos &&
                             obj.functions[in.func].name.find(".cold") == std::string::npos;
      if (into_cold) {
        // The jump shows whose cold part this is.
        obj.functions[in.func].cold_child = d.func;
        obj.functions[d.func].parent = in.func;
      } else if (obj.parent_of(in.func) != obj.parent_of(d.func) && obj.function_starting_at(dest) != kNone) {
        in.sibling_target = true;  // a jump to another function's first instruction
        in.set_call_symbol(static_cast<int32_t>(obj.functions[d.func].symbol));
        continue;
      }
    }
    in.set_jump_dest(dest);
  }
}

// Which offsets of a data section some symbol covers ([offset, offset + max(size, 1)) of every symbol but
// section and file symbols), indexed once per section asked: a switch table is looked for at every
// instruction before an indirect jump.
class SymbolCover {
 public:
  explicit SymbolCover(const DecodedObject& obj) : obj_(obj), ranges_(obj.elf->sections().size()) {}

  bool covers(uint32_t section, uint64_t offset) {
    std::optional<CoveredRanges>& ranges = ranges_[section];
    if (!ranges) {
      ranges.emplace();
      for (const ElfSymbol& s : obj_.elf->symbols())
        if (s.section == section && s.type != STT_SECTION && s.type != STT_FILE)
          ranges->add(s.offset, s.offset + std::max<uint64_t>(s.size, 1));
      ranges->done();
    }
    return ranges->covers(offset);
  }

 private:
  const DecodedObject& obj_;
  std::vector<std::optional<CoveredRanges>> ranges_;
};

// A switch table: the instruction references an anonymous .rodata location whose relocations point back
// into the function. Returns the table's first entry relocation (in the rodata section), or null.
const ElfReloc* switch_table_at(const DecodedObject& obj, SymbolCover& cover, const Instruction& in,
                                uint32_t* table_sec) {
  const ElfReloc* text_reloc = obj.reloc_of(in);
  if (!text_reloc) return nullptr;
  const ElfSymbol& s = obj.symbol(text_reloc->symbol());
  if (s.type != STT_SECTION || !obj.elf->sections()[s.section].is_rodata()) return nullptr;
  uint64_t table_offset = static_cast<uint64_t>(text_reloc->addend) + (text_reloc->type() == kRelocPc32 ? 4 : 0);
  if (obj.section_name(s.section) != ".rodata..c_jump_table" && cover.covers(s.section, table_offset)) return nullptr;
  *table_sec = s.section;
  return obj.reloc_at(s.section, table_offset);
}

// Two table forms. Absolute (`.quad .Lcase`, the kernel code model): an R_X86_64_64 per 8-byte entry whose
// addend is the case label. PC-relative (`.long .Lcase - .Ltable`, what gcc and clang emit for -fPIC/PIE):
// an R_X86_64_PC32 per 4-byte entry, whose value S + A - P must equal .Lcase - .Ltable, so its addend is the
// case label plus the entry's distance from the table's start.
bool relative_table(const ElfReloc& first) { return first.type() == kRelocPc32; }

uint64_t table_stride(const ElfReloc& first) { return relative_table(first) ? 4 : 8; }

// The section offset an entry of the table starting at `first` sends the jump to.
int64_t table_entry_offset(const ElfReloc& first, const ElfReloc& entry) {
  const int64_t from_start = static_cast<int64_t>(entry.offset - first.offset);
  return relative_table(first) ? entry.addend - from_start : entry.addend;
}

int32_t table_entry_target(const DecodedObject& obj, const ElfReloc& first, const ElfReloc& entry) {
  const int64_t off = table_entry_offset(first, entry);
  if (off < 0) return kNone;
  return obj.find_insn(obj.symbol(entry.symbol()).section, static_cast<uint64_t>(off));
}

void resolve_jump_tables(DecodedObject& obj) {
  std::set<std::pair<uint32_t, uint64_t>> table_starts;  // (section, offset) of tables already claimed
  // Per instruction: the first forward jump landing on it, for the walk back to a table's load.
  std::vector<int32_t> first_jump_src(obj.insns.size(), kNone);
  SymbolCover cover(obj);
  for (int32_t fi = 0; fi < static_cast<int32_t>(obj.functions.size()); ++fi) {
    const Function& fn = obj.functions[fi];
    if (fn.first_insn == fn.end_insn) continue;
    std::vector<std::pair<int32_t, std::pair<uint32_t, const ElfReloc*>>> found;
    for (auto [range_begin, range_end] : instruction_ranges(obj, fi))
      for (uint32_t i = range_begin; i < range_end; ++i) {
        Instruction& in = obj.insns[i];
        if (in.jump_dest() != kNone && obj.insns[in.jump_dest()].insn.offset > in.insn.offset &&
            first_jump_src[in.jump_dest()] == kNone)
          first_jump_src[in.jump_dest()] = static_cast<int32_t>(i);
        if (in.insn.kind != InsnKind::JumpIndirect) continue;
        // Walk back from the indirect jump to the instruction that loads the table address.
        for (int32_t k = static_cast<int32_t>(i); k != kNone;) {
          const Instruction& c = obj.insns[k];
          if (c.func == kNone || obj.parent_of(c.func) != fi) break;
          if (k != static_cast<int32_t>(i) && c.insn.kind == InsnKind::JumpIndirect) break;
          if (c.insn.kind == InsnKind::Jump && c.jump_dest() != kNone &&
              (obj.insns[c.jump_dest()].insn.offset <= c.insn.offset ||
               obj.insns[c.jump_dest()].insn.offset > in.insn.offset))
            break;
          uint32_t tsec = 0;
          // objtool 6.1 turns "unreachable instruction" off for the whole object at the first RIP-relative
          // table (a gcc quirk could leave dead code behind); framecert follows such tables case by case and
          // keeps the rule (docs/rules.md, differences).
          if (const ElfReloc* entry = switch_table_at(obj, cover, c, &tsec)) {
            int32_t d = table_entry_target(obj, *entry, *entry);
            if (d != kNone && obj.insns[d].func != kNone && obj.parent_of(obj.insns[d].func) == fi) {
              found.push_back({static_cast<int32_t>(i), {tsec, entry}});
              table_starts.insert({tsec, entry->offset});
              break;
            }
          }
          if (first_jump_src[k] != kNone) {
            k = first_jump_src[k];
          } else {
            // The previous instruction of the same symbol (the .cold part has its own start).
            int32_t p = obj.prev_in_section(k);
            const Function& owner = obj.functions[c.func];
            k = (p != kNone && obj.insns[p].insn.offset >= owner.offset) ? p : kNone;
          }
        }
      }
    for (auto& [jmp, table] : found) {
      auto [tsec, first] = table;
      Instruction& in = obj.insns[jmp];
      const auto& relocs = obj.elf->relocs_for(tsec);
      const Function& pf = obj.functions[fi];
      uint64_t prev_offset = 0;
      bool any = false;
      for (auto it = relocs.begin() + (first - relocs.data()); it != relocs.end(); ++it) {
        if (&*it != first && table_starts.count(std::pair{tsec, it->offset})) break;
        if (any && (it->offset != prev_offset + table_stride(*first) || it->type() != first->type())) break;
        if (obj.symbol(it->symbol()).section == pf.section &&
            table_entry_offset(*first, *it) == static_cast<int64_t>(pf.offset))
          break;
        int32_t d = table_entry_target(obj, *first, *it);
        if (d == kNone || obj.insns[d].func == kNone || obj.parent_of(obj.insns[d].func) != fi) break;
        obj.extra_for(jmp).table_targets.push_back(d);
        prev_offset = it->offset;
        any = true;
      }
      if (!any) {
        obj.fatal.push_back(fatal_at(obj, in, "can't find switch jump table"));
        continue;
      }
      in.jump_table = true;
    }
  }
}

// Who starts at a (section, offset): built once per object, where a search per call was quadratic. Sorted
// arrays of 16-byte entries, not hash maps: this runs while every instruction is held (docs/design.md, Memory).
class StartIndex {
 public:
  explicit StartIndex(const DecodedObject& obj) : obj_(obj) {
    functions_.reserve(obj.functions.size());
    for (uint32_t i = 0; i < obj.functions.size(); ++i)
      functions_.push_back({obj.functions[i].section, i, obj.functions[i].offset});
    for (const ElfSymbol& s : obj.elf->symbols())  // sections and file names are not code labels
      if (s.type != STT_SECTION && s.type != STT_FILE) symbols_.push_back({s.section, s.index, s.offset});
    std::sort(functions_.begin(), functions_.end());
    std::sort(symbols_.begin(), symbols_.end());
  }
  // The first canonical function there, else the last alias (objtool's pick of a name).
  int32_t function_at(uint32_t section, uint64_t offset) const {
    int32_t any = kNone;
    for (auto [it, end] = range(functions_, section, offset); it != end; ++it) {
      if (obj_.functions[it->index].canonical) return static_cast<int32_t>(it->index);
      any = static_cast<int32_t>(it->index);
    }
    return any;
  }
  // The first symbol there in symbol-table order.
  int32_t symbol_at(uint32_t section, uint64_t offset) const {
    auto [it, end] = range(symbols_, section, offset);
    return it == end ? kNone : static_cast<int32_t>(it->index);
  }

 private:
  struct Entry {
    uint32_t section;
    uint32_t index;  // ties in index order
    uint64_t offset;
    bool operator<(const Entry& o) const {
      return section != o.section ? section < o.section : offset != o.offset ? offset < o.offset : index < o.index;
    }
  };
  using Range = std::pair<std::vector<Entry>::const_iterator, std::vector<Entry>::const_iterator>;
  static Range range(const std::vector<Entry>& v, uint32_t section, uint64_t offset) {
    auto key = [](const Entry& e) { return std::pair{e.section, e.offset}; };
    auto lo = std::lower_bound(v.begin(), v.end(), std::pair{section, offset},
                               [&](const Entry& e, const std::pair<uint32_t, uint64_t>& k) { return key(e) < k; });
    auto hi = std::upper_bound(lo, v.end(), std::pair{section, offset},
                               [&](const std::pair<uint32_t, uint64_t>& k, const Entry& e) { return k < key(e); });
    return {lo, hi};
  }
  const DecodedObject& obj_;
  std::vector<Entry> functions_;
  std::vector<Entry> symbols_;
};

void resolve_calls(DecodedObject& obj) {
  const StartIndex starts(obj);
  for (Instruction& in : obj.insns) {
    if (in.insn.kind != InsnKind::Call) continue;
    int32_t sym = kNone;
    if (const ElfReloc* r = obj.reloc_of(in)) {
      const ElfSymbol& s = obj.symbol(r->symbol());
      if (s.type == STT_SECTION) {
        uint64_t off = static_cast<uint64_t>(r->addend) + 4;
        int32_t f = starts.function_at(s.section, off);
        sym = f != kNone ? static_cast<int32_t>(obj.functions[f].symbol) : starts.symbol_at(s.section, off);
        if (sym == kNone) {
          obj.fatal.push_back(fatal_at(obj, in, fmt::format("can't find call dest symbol at {}+0x{:x}", s.name, off)));
          continue;
        }
      } else if (is_retpoline_thunk(s.name)) {
        in.insn.kind = InsnKind::CallIndirect;
        in.ops_dropped = true;
        continue;
      } else {
        sym = static_cast<int32_t>(s.index);
      }
    } else {
      uint32_t dest_sec = obj.section_of(in);
      uint64_t dest_off = in.insn.target();
      const bool linked = !obj.elf->relocatable();
      if (linked && !locate_linked_target(obj, in, &dest_sec, &dest_off)) dest_sec = 0;
      int32_t f = dest_sec ? starts.function_at(dest_sec, dest_off) : kNone;
      sym = f != kNone ? static_cast<int32_t>(obj.functions[f].symbol)
                       : (dest_sec ? starts.symbol_at(dest_sec, dest_off) : kNone);
      if (in.ignore) continue;
      if (sym == kNone && linked) {
        // A linked image calls PLT stubs and stripped local functions that have no symbol. Only a call
        // into the calling function itself is an intra-function call.
        const bool inside_caller = in.func != kNone && dest_sec == obj.section_of(in) &&
                                   dest_off >= obj.functions[in.func].offset &&
                                   dest_off < obj.functions[in.func].offset + obj.functions[in.func].size;
        if (!inside_caller) {
          in.ops_dropped = true;
          continue;
        }
      }
      if (sym == kNone) {
        obj.fatal.push_back(fatal_at(obj, in, "unannotated intra-function call"));
        continue;
      }
      if (in.func != kNone && obj.symbol(sym).type != STT_FUNC) {
        obj.fatal.push_back(fatal_at(obj, in, "unsupported call to non-function"));
        continue;
      }
    }
    // The callee's return undoes the push of the return address: a call with a known callee has no net
    // stack effect.
    in.ops_dropped = true;
    in.set_call_symbol(sym);
  }
  // Whether a call to a symbol never returns depends on the symbol alone: asked once per callee, not once per
  // call (a kernel image has ~10^5 calls, many to the same few functions, each answer a scan of the callee).
  std::vector<int8_t> never_returns(obj.elf->symbols().size(), -1);
  for (Instruction& in : obj.insns) {
    if (in.insn.kind != InsnKind::Call || in.call_symbol() == kNone || in.dead_end) continue;
    int8_t& known = never_returns[static_cast<uint32_t>(in.call_symbol())];
    if (known < 0) {
      const ElfSymbol& s = obj.symbol(static_cast<uint32_t>(in.call_symbol()));
      if (listed_noreturn(obj, s.name, s.bind == STB_GLOBAL, s.bind == STB_WEAK))
        known = 1;
      else if (s.bind == STB_WEAK)
        known = 0;
      else
        known = obj.call_func(in) != kNone && is_noreturn_function(obj, obj.call_func(in));
    }
    if (known) in.dead_end = true;
  }
}

}  // namespace

std::vector<std::pair<uint32_t, uint32_t>> instruction_ranges(const DecodedObject& obj, int32_t func) {
  const Function& f = obj.functions[func];
  std::vector<std::pair<uint32_t, uint32_t>> out{{f.first_insn, f.end_insn}};
  if (f.cold_child != kNone && f.cold_child != func) {
    const Function& c = obj.functions[f.cold_child];
    out.push_back({c.first_insn, c.end_insn});
  }
  return out;
}

bool is_known_noreturn_name(std::string_view name, KernelFormat format) {
  // Functions outside the object that never return. ELF carries no noreturn attribute, so calls to
  // these cannot be inferred; local functions are inferred from their code instead (is_noreturn_function).
  // objtool's list of its version: 6.1's global_noreturns[] in check.c, and 6.12's noreturns.h.
  static constexpr std::string_view kKernel6_1[] = {"__invalid_creds",
                                                    "__module_put_and_kthread_exit",
                                                    "__reiserfs_panic",
                                                    "__stack_chk_fail",
                                                    "__ubsan_handle_builtin_unreachable",
                                                    "cpu_bringup_and_idle",
                                                    "cpu_startup_entry",
                                                    "do_exit",
                                                    "do_group_exit",
                                                    "do_task_dead",
                                                    "ex_handler_msr_mce",
                                                    "fortify_panic",
                                                    "kthread_complete_and_exit",
                                                    "kthread_exit",
                                                    "kunit_try_catch_throw",
                                                    "lbug_with_loc",
                                                    "machine_real_restart",
                                                    "make_task_dead",
                                                    "panic",
                                                    "rewind_stack_and_make_dead",
                                                    "sev_es_terminate",
                                                    "snp_abort",
                                                    "stop_this_cpu",
                                                    "usercopy_abort",
                                                    "xen_start_kernel"};
  static constexpr std::string_view kKernel6_12[] = {"__fortify_panic",
                                                     "__ia32_sys_exit",
                                                     "__ia32_sys_exit_group",
                                                     "__kunit_abort",
                                                     "__module_put_and_kthread_exit",
                                                     "__reiserfs_panic",
                                                     "__stack_chk_fail",
                                                     "__tdx_hypercall_failed",
                                                     "__ubsan_handle_builtin_unreachable",
                                                     "__x64_sys_exit",
                                                     "__x64_sys_exit_group",
                                                     "arch_cpu_idle_dead",
                                                     "bch2_trans_in_restart_error",
                                                     "bch2_trans_restart_error",
                                                     "bch2_trans_unlocked_error",
                                                     "cpu_bringup_and_idle",
                                                     "cpu_startup_entry",
                                                     "do_exit",
                                                     "do_group_exit",
                                                     "do_task_dead",
                                                     "ex_handler_msr_mce",
                                                     "hlt_play_dead",
                                                     "hv_ghcb_terminate",
                                                     "kthread_complete_and_exit",
                                                     "kthread_exit",
                                                     "kunit_try_catch_throw",
                                                     "machine_real_restart",
                                                     "make_task_dead",
                                                     "mpt_halt_firmware",
                                                     "nmi_panic_self_stop",
                                                     "panic",
                                                     "panic_smp_self_stop",
                                                     "rest_init",
                                                     "rewind_stack_and_make_dead",
                                                     "rust_begin_unwind",
                                                     "rust_helper_BUG",
                                                     "sev_es_terminate",
                                                     "snp_abort",
                                                     "start_kernel",
                                                     "stop_this_cpu",
                                                     "usercopy_abort",
                                                     "x86_64_start_kernel",
                                                     "x86_64_start_reservations",
                                                     "xen_cpu_bringup_again",
                                                     "xen_start_kernel"};
  // User space (C library): a deliberate difference from objtool, which reports calls to these as
  // "falls through to next function" (docs/rules.md).
  static constexpr std::string_view kLibc[] = {"abort",
                                               "exit",
                                               "_exit",
                                               "_Exit",
                                               "quick_exit",
                                               "__assert_fail",
                                               "__assert_perror_fail",
                                               "__fortify_fail",
                                               "__chk_fail",
                                               "longjmp",
                                               "siglongjmp",
                                               "_longjmp",
                                               "__longjmp_chk",
                                               "pthread_exit",
                                               "__cxa_throw",
                                               "__cxa_rethrow",
                                               "_Unwind_Resume",
                                               "err",
                                               "errx",
                                               "verr",
                                               "verrx",
                                               "__libc_fatal",
                                               "__libc_start_main"};
  const std::span<const std::string_view> kernel =
      format == KernelFormat::Linux6_1 ? std::span<const std::string_view>(kKernel6_1) : kKernel6_12;
  for (auto n : kernel)
    if (n == name) return true;
  for (auto n : kLibc)
    if (n == name) return true;
  return false;
}

bool listed_noreturn(const DecodedObject& obj, std::string_view name, bool global, bool weak) {
  // objtool 6.12 looks a weak function up in its list too (__weak __noreturn nmi_panic_self_stop); 6.1 takes
  // no weak function for noreturn.
  return (global || (weak && obj.format != KernelFormat::Linux6_1)) && is_known_noreturn_name(name, obj.format);
}

bool is_noreturn_function(const DecodedObject& obj, int32_t func, int depth) {
  const Function& f = obj.functions[func];
  if (listed_noreturn(obj, f.name, f.global, f.weak)) return true;
  if (f.weak) return false;
  if (f.size == 0 || f.first_insn == f.end_insn) return false;
  if (obj.insns[f.first_insn].func == kNone) return false;
  // A function's instructions include its .cold part (objtool walks into the child too).
  const std::vector<std::pair<uint32_t, uint32_t>> ranges = instruction_ranges(obj, func);
  for (auto [b, e] : ranges)
    for (uint32_t i = b; i < e; ++i)
      if (obj.insns[i].insn.kind == InsnKind::Return) return false;
  // A sibling call makes the function return whenever its target does. Unlike objtool 6.1 (which keeps
  // no destination for sibling calls and so calls every such function returning), follow local targets:
  // the function is noreturn only if every sibling call goes to a function that is itself noreturn.
  bool any_sibling = false;
  for (auto [b, e] : ranges)
    for (uint32_t i = b; i < e; ++i) {
      const Instruction& in = obj.insns[i];
      if (in.func == kNone) continue;
      if (in.insn.kind == InsnKind::JumpIndirect && !in.jump_table) return false;
      if (!in.sibling_target) continue;
      any_sibling = true;
      if (depth >= 5) return false;  // mutually recursive tail calls: assume they return
      if (const int32_t callee = obj.call_func(in); callee != kNone) {
        if (!is_noreturn_function(obj, callee, depth + 1)) return false;
      } else if (in.call_symbol() == kNone ||
                 !is_known_noreturn_name(obj.symbol(static_cast<uint32_t>(in.call_symbol())).name, obj.format)) {
        return false;  // to another object: assume it returns
      }
    }
  (void)any_sibling;
  return true;
}

const SectionCode* DecodedObject::code_of(uint32_t section) const {
  if (section >= code_index.size() || code_index[section] == kNone) return nullptr;
  return &code_sections[code_index[section]];
}

int32_t DecodedObject::find_insn(uint32_t section, uint64_t offset) const {
  const SectionCode* code = code_of(section);
  if (!code) return kNone;
  auto begin = insns.begin() + code->first_insn, end = insns.begin() + code->end_insn;
  auto it = std::lower_bound(begin, end, offset, [](const Instruction& in, uint64_t o) { return in.insn.offset < o; });
  if (it == end || it->insn.offset != offset) return kNone;
  return static_cast<int32_t>(it - insns.begin());
}

int32_t DecodedObject::next_in_section(int32_t i) const {
  if (i == kNone || i + 1 >= static_cast<int32_t>(insns.size())) return kNone;
  return insns[i].last_in_section ? kNone : i + 1;
}

int32_t DecodedObject::prev_in_section(int32_t i) const {
  if (i <= 0) return kNone;
  return insns[i - 1].last_in_section ? kNone : i - 1;
}

const ElfReloc* DecodedObject::reloc_at(uint32_t section, uint64_t offset) const {
  const auto& relocs = elf->relocs_for(section);
  auto it = std::lower_bound(relocs.begin(), relocs.end(), offset,
                             [](const ElfReloc& r, uint64_t o) { return r.offset < o; });
  return it != relocs.end() && it->offset == offset ? &*it : nullptr;
}

const ElfReloc* DecodedObject::reloc_of(const Instruction& in) const {
  const auto& relocs = elf->relocs_for(section_of(in));
  auto it = std::lower_bound(relocs.begin(), relocs.end(), in.insn.offset,
                             [](const ElfReloc& r, uint64_t o) { return r.offset < o; });
  return it != relocs.end() && it->offset < in.insn.end() ? &*it : nullptr;
}

std::span<const StackOp> DecodedObject::ops(const Instruction& in) const {
  if (in.insn.op_count == 0 || in.ops_dropped) return {};
  const auto i = static_cast<uint32_t>(index_of(in));
  uint32_t start = ops_block_start[i / kOpsBlock];
  for (uint32_t k = i - i % kOpsBlock; k < i; ++k) start += insns[k].insn.op_count;
  return {stack_ops.data() + start, in.insn.op_count};
}

const InstructionExtra* DecodedObject::extra(const Instruction& in) const {
  if (!in.has_extra) return nullptr;
  return &extras.at(index_of(in));
}

InstructionExtra& DecodedObject::extra_for(int32_t i) {
  insns[i].has_extra = true;
  return extras[i];
}

std::span<const int32_t> DecodedObject::alts(const Instruction& in) const {
  const InstructionExtra* x = extra(in);
  return x ? std::span<const int32_t>(x->alts) : std::span<const int32_t>();
}

std::span<const int32_t> DecodedObject::table_targets(const Instruction& in) const {
  const InstructionExtra* x = extra(in);
  return x ? std::span<const int32_t>(x->table_targets) : std::span<const int32_t>();
}

int32_t DecodedObject::hint_state(const Instruction& in) const {
  const InstructionExtra* x = extra(in);
  return x ? x->hint_state : kNone;
}

uint32_t DecodedObject::section_of(const Instruction& in) const {
  // code_sections are in instruction order: the last one starting at or before the instruction holds it.
  const auto i = static_cast<uint32_t>(index_of(in));
  auto it = std::upper_bound(code_sections.begin(), code_sections.end(), i,
                             [](uint32_t x, const SectionCode& c) { return x < c.first_insn; });
  return std::prev(it)->section;
}

int32_t DecodedObject::function_of_symbol(uint32_t sym) const {
  return sym < function_by_symbol.size() ? function_by_symbol[sym] : kNone;
}

int32_t DecodedObject::function_starting_at(int32_t i) const {
  const Instruction& in = insns[i];
  if (in.func == kNone) return kNone;
  return functions[in.func].offset == in.insn.offset ? in.func : kNone;
}

namespace {

// Below this a section is counted in one run: starting a thread costs more than the part it would count.
constexpr uint64_t kSplitBytes = 256 * 1024;

// Pieces of at most kChunk instructions from a count run's marks.
void add_pieces(DecodePlan::Section& ps, const Decoder::CountRun& run) {
  for (size_t k = 0; k < run.starts.size(); ++k)
    ps.pieces.push_back(
        DecodePlan::Piece{run.starts[k], std::min(DecodePlan::kChunk, run.count - k * DecodePlan::kChunk)});
  ps.count += run.count;
}

// Where a section may be split for counting: `parts - 1` function symbol starts near equal shares of it.
std::vector<uint64_t> split_points(const ElfFile& elf, const ElfSection& sec, unsigned parts) {
  std::vector<uint64_t> starts;
  for (const ElfSymbol& s : elf.symbols())
    if (s.type == STT_FUNC && s.section == sec.index && s.offset > 0 && s.offset < sec.bytes.size())
      starts.push_back(s.offset);
  std::sort(starts.begin(), starts.end());
  std::vector<uint64_t> out;
  for (unsigned k = 1; k < parts && !starts.empty(); ++k) {
    auto it = std::lower_bound(starts.begin(), starts.end(), sec.bytes.size() * k / parts);
    if (it != starts.end() && (out.empty() || *it > out.back())) out.push_back(*it);
  }
  return out;
}

DecodePlan::Section plan_section(const ElfFile& elf, const ElfSection& sec, const Decoder& decoder, unsigned threads) {
  DecodePlan::Section ps;
  ps.index = sec.index;
  std::vector<uint64_t> bounds{0};
  if (threads > 1 && sec.bytes.size() >= kSplitBytes)
    for (uint64_t b : split_points(elf, sec, threads)) bounds.push_back(b);
  bounds.push_back(sec.bytes.size());
  std::vector<Decoder::CountRun> runs(bounds.size() - 1);
  std::vector<std::thread> pool;
  for (size_t k = 1; k < runs.size(); ++k)
    pool.emplace_back([&, k] { runs[k] = decoder.count_run(sec.bytes, bounds[k], bounds[k + 1], DecodePlan::kChunk); });
  runs[0] = decoder.count_run(sec.bytes, bounds[0], bounds[1], DecodePlan::kChunk);
  for (std::thread& t : pool) t.join();
  for (size_t k = 0; k < runs.size(); ++k) {
    if (k > 0 && runs[k - 1].end != bounds[k]) {
      // The part before ran past this split point (the symbol starts inside an instruction): count the rest
      // linearly, from where it really ended.
      add_pieces(ps, decoder.count_run(sec.bytes, runs[k - 1].end, sec.bytes.size(), DecodePlan::kChunk));
      break;
    }
    add_pieces(ps, runs[k]);
    if (runs[k].undecodable) break;  // the linear decode stops there too
  }
  return ps;
}

}  // namespace

uint64_t code_bytes(const ElfFile& elf) {
  uint64_t n = 0;
  for (const ElfSection& sec : elf.sections())
    if (sec.executable()) n += sec.bytes.size();
  return n;
}

DecodePlan plan_decode(const ElfFile& elf, const Decoder& decoder, unsigned threads) {
  DecodePlan plan;
  for (const ElfSection& sec : elf.sections()) {
    if (!sec.executable() || sec.bytes.empty()) continue;
    plan.sections.push_back(plan_section(elf, sec, decoder, threads));
    plan.total += plan.sections.back().count;
  }
  return plan;
}

DecodedObject build_decoded_object(const ElfFile& elf, const Decoder& decoder, const DecodePlan& plan, unsigned threads,
                                   std::optional<KernelFormat> kernel) {
  DecodedObject obj;
  obj.elf = &elf;
  if (kernel) obj.format = *kernel;
  decode_sections(obj, decoder, plan, threads);
  collect_functions(obj);
  check_symbol_starts(obj);
  mark_non_standard(obj);
  read_ignore_alternatives(obj);
  read_special_sections(obj);  // the object's own evidence of its kernel's format is read by now
  if (obj.format == KernelFormat::Linux6_1)
    for (Instruction& in : obj.insns)
      if (in.insn.is_eret) in.insn.kind = InsnKind::Clac;  // objtool 6.1's decoder reads erets/eretu as clac
  resolve_jumps(obj);
  read_intra_function_calls(obj);
  resolve_calls(obj);
  read_dead_ends(obj);
  resolve_jump_tables(obj);
  read_unwind_hints(obj);
  if (!elf.relocatable()) {
    // Hand-written code outside any function symbol in a linked image (glibc jumps over `lock` prefixes,
    // for instance) is not checked anyway; its oddities must not stop the check of every function.
    std::erase_if(obj.fatal, [](const Finding& f) { return f.function.empty() && f.positional; });
  }
  return obj;
}

void followed_successors(const DecodedObject& obj, int32_t i, std::vector<int32_t>& out) {
  out.clear();
  const Instruction& in = obj.insns[i];
  if (!in.ignore_alts) {
    for (int32_t t : obj.alts(in)) out.push_back(t);
    for (int32_t t : obj.table_targets(in)) out.push_back(t);
    if (in.skip_orig && !obj.alts(in).empty()) return;
  }
  const int32_t next = obj.next_to_validate(i);
  const bool sibling = in.func != kNone && in.sibling_target;
  switch (in.insn.kind) {
    case InsnKind::Return:
    case InsnKind::JumpIndirect:
      return;
    case InsnKind::ContextSwitch:
      if (in.insn.is_iret && in.func != kNone) break;
      if (in.func != kNone && next != kNone && obj.insns[next].hint) break;
      return;
    case InsnKind::Jump:
      if (!sibling && in.jump_dest() != kNone) out.push_back(in.jump_dest());
      return;
    case InsnKind::JumpConditional:
      if (!sibling && in.jump_dest() != kNone) out.push_back(in.jump_dest());
      break;
    default:
      break;
  }
  if (!in.dead_end && next != kNone) out.push_back(next);
}

bool jumps_anywhere(const DecodedObject& obj, const Instruction& in) {
  if (in.insn.kind != InsnKind::JumpIndirect || in.retpoline_jump || in.func == kNone) return false;
  return in.ignore_alts || obj.table_targets(in).empty();
}

}  // namespace framecert

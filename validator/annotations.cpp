// The kernel's special sections and annotations, read with objtool 6.1's meaning:
//   .altinstructions / __jump_table / __ex_table  code that may run in place of an instruction
//   .discard.ignore_alts                          alternatives not to follow
//   .discard.intra_function_calls                 a call that is really a jump within the function
//   .discard.unreachable / .discard.reachable     dead ends the compiler cannot see (BUG/WARN)
//   .discard.unwind_hints                         the stack state asserted by hand-written assembly
#include <elf.h>

#include <algorithm>
#include <cstring>
#include <optional>
#include <vector>

#include "validator/decoded_object.h"

namespace framecert {

namespace {

// Layouts of the x86-64 special-section entries (arch/x86/include/asm/{alternative,jump_label,extable}.h).
struct SpecialEntry {
  const char* section;
  size_t size;
  bool group;  // an alternative: orig_len/new_len bytes and a feature word
  bool jump;   // a jump label: the original is a jmp or a nop
};
constexpr SpecialEntry kSpecial[] = {
    {".altinstructions", 0, true, false},  // the size is the object's struct alt_instr (AltLayout)
    {"__jump_table", 16, false, true},
    {"__ex_table", 12, false, false},
};
constexpr int kAltOrig = 0, kAltNew = 4, kAltFeature = 8;

// struct alt_instr: two s32 offsets, then up to 6.9 a u16 cpuid and the u8 lengths (12 bytes); since 6.10 a
// u32 ft_flags (cpuid in its low half) before them (14 bytes), and ALTERNATIVE_2/_3 nest, so the entries of
// one original carry different orig_len, which objtool 6.12 widens to the group's largest. An object says
// which it has: only one stride puts every relocation of the section on an entry's two offsets.
struct AltLayout {
  size_t size;
  int orig_len_at, new_len_at;
  bool nested;  // entries of one original share the largest orig_len
};
constexpr AltLayout kAltLayouts[] = {{12, 10, 11, false}, {14, 12, 13, true}};

// The layout `sec` (an .altinstructions section) fits, or an objtool-style reason it fits none.
Result<AltLayout> alt_layout(const DecodedObject& obj, const ElfSection& sec) {
  std::vector<const AltLayout*> fits;
  for (const AltLayout& l : kAltLayouts) {
    bool ok = sec.size % l.size == 0;
    for (const ElfReloc& r : obj.elf->relocs_for(sec.index))
      ok = ok && (r.offset % l.size == kAltOrig || r.offset % l.size == kAltNew);
    if (ok) fits.push_back(&l);
  }
  if (fits.size() == 1 || (sec.size == 0 && !fits.empty())) return *fits.front();
  if (fits.empty())
    return fail("{} size not a multiple of {} or {}", sec.name, kAltLayouts[0].size, kAltLayouts[1].size);
  return fail("{}: entries fit both the 12- and the 14-byte struct alt_instr", sec.name);
}

// objtool 6.12's arch_handle_alternative(): consecutive entries of one original (a nested ALTERNATIVE_2/_3)
// all get the largest orig_len among them.
void widen_nested_orig_lens(const DecodedObject& obj, const ElfSection& sec, const AltLayout& l,
                            std::vector<uint8_t>& orig_len) {
  constexpr uint64_t kNoOrig = ~0ull;  // an entry without an orig relocation joins no group
  uint64_t group_section = kNoOrig, group_offset = kNoOrig;
  size_t first = 0;
  for (size_t k = 0; k < orig_len.size(); ++k) {
    uint64_t section = kNoOrig, offset = kNoOrig;
    if (const ElfReloc* r = obj.reloc_at(sec.index, k * l.size + kAltOrig)) {
      const ElfSymbol& s = obj.symbol(r->symbol());
      section = s.section;
      offset = s.offset + static_cast<uint64_t>(r->addend);
    }
    if (section == kNoOrig || section != group_section || offset != group_offset) {
      group_section = section;
      group_offset = offset;
      first = k;
      continue;
    }
    const uint8_t widest = std::max(orig_len[k], *std::max_element(orig_len.begin() + first, orig_len.begin() + k));
    std::fill(orig_len.begin() + first, orig_len.begin() + k + 1, widest);
  }
}
constexpr uint16_t kFeaturePopcnt = 4 * 32 + 23;  // only the alternative runs (every CPU has it)
constexpr uint16_t kFeatureSmap = 9 * 32 + 20;    // without uaccess checking, the alternative is ignored

struct Target {
  uint32_t section;
  uint64_t offset;
};

// Where a relocation points: its symbol's section and offset plus the addend.
std::optional<Target> target_of(const DecodedObject& obj, const ElfReloc* r) {
  if (!r) return std::nullopt;
  const ElfSymbol& s = obj.symbol(r->symbol());
  if (!s.defined()) return std::nullopt;
  return Target{s.section, s.offset + static_cast<uint64_t>(r->addend)};
}

// The instruction a .discard.* entry names (a section symbol plus an offset), or kNone.
int32_t annotated_insn(const DecodedObject& obj, const ElfReloc& r, bool* section_symbol) {
  const ElfSymbol& s = obj.symbol(r.symbol());
  *section_symbol = s.type == STT_SECTION;
  return obj.find_insn(s.section, static_cast<uint64_t>(r.addend));
}

// The relocations of the annotation section `name` (empty when the object has none).
std::span<const ElfReloc> annotation_relocs(const DecodedObject& obj, const char* name) {
  const ElfSection* sec = obj.elf->section_by_name(name);
  return sec ? obj.elf->relocs_for(sec->index) : std::span<const ElfReloc>();
}

// Calls `f(instruction index)` for every instruction a .discard.* section names; a malformed entry is
// objtool's "bad ... entry" and stops the object's check.
template <typename F>
void for_each_annotated_insn(DecodedObject& obj, const char* section, const char* what, F f) {
  for (const ElfReloc& r : annotation_relocs(obj, section)) {
    bool section_symbol = false;
    const int32_t i = annotated_insn(obj, r, &section_symbol);
    if (!section_symbol || i == kNone) {
      obj.fatal.push_back(object_error(fmt::format("bad {} entry", what)));
      return;
    }
    f(i);
  }
}

int32_t last_insn_before(const DecodedObject& obj, int32_t first, uint64_t end) {
  int32_t last = first;
  for (int32_t i = obj.next_in_section(first); i != kNone && obj.insns[i].insn.offset < end; i = obj.next_in_section(i))
    last = i;
  return last;
}

void add_group_alternative(DecodedObject& obj, int32_t orig, int32_t repl, uint64_t orig_end, uint64_t new_end,
                           bool has_new) {
  Instruction& o = obj.insns[orig];
  const int32_t last_orig = last_insn_before(obj, orig, orig_end);
  const int32_t after = obj.next_in_section(last_orig);
  if (!has_new) {
    // An empty replacement: the original is patched to nops, execution continues after it.
    if (after != kNone) obj.extra_for(orig).alts.push_back(after);
    return;
  }
  int32_t last_new = repl;
  for (int32_t i = repl; i != kNone && obj.insns[i].insn.offset < new_end; i = obj.next_in_section(i)) {
    Instruction& r = obj.insns[i];
    last_new = i;
    r.ignore = o.ignore_alts;
    r.func = o.func;
    const bool static_jump = r.insn.kind == InsnKind::Jump || r.insn.kind == InsnKind::JumpConditional;
    // Only a jump encoded with a displacement (not one a relocation fills in) can aim at the end.
    if (static_jump && r.insn.has_target && r.insn.target() != r.insn.end() && r.insn.target() == new_end) {
      // A jump to the end of the replacement lands after the original once patched in.
      if (after == kNone) {
        obj.fatal.push_back(structural_error(obj, r, "can't find alternative jump destination"));
        continue;
      }
      r.set_jump_dest(after);
    }
  }
  obj.extra_for(last_new).alt_next = after;
  obj.extra_for(orig).alts.push_back(repl);
  obj.replacements.push_back({orig, repl, last_new, static_cast<uint32_t>(orig_end - o.insn.offset)});
}

}  // namespace

void read_ignore_alternatives(DecodedObject& obj) {
  for_each_annotated_insn(obj, ".discard.ignore_alts", ".discard.ignore_alts",
                          [&](int32_t i) { obj.insns[i].ignore_alts = true; });
}

void read_special_sections(DecodedObject& obj) {
  for (const SpecialEntry& e : kSpecial) {
    const ElfSection* sec = obj.elf->section_by_name(e.section);
    if (!sec) continue;
    AltLayout alt{};
    if (e.group) {
      auto layout = alt_layout(obj, *sec);
      if (!layout) {
        obj.fatal.push_back(object_error(layout.error()));
        return;
      }
      alt = *layout;
      // The object shows its kernel's format: it wins over what the caller said.
      if (sec->size) obj.format = alt.nested ? KernelFormat::Linux6_10 : KernelFormat::Linux6_1;
    }
    const size_t entry_size = e.group ? alt.size : e.size;
    if (sec->size % entry_size != 0) {
      obj.fatal.push_back(object_error(fmt::format("{} size not a multiple of {}", e.section, entry_size)));
      return;
    }
    const std::span<const uint8_t> bytes = obj.elf->section_bytes(sec->index);
    if (bytes.size() != sec->size) {
      obj.fatal.push_back(object_error(fmt::format("{}: section data unreadable", e.section)));
      return;
    }
    std::vector<uint8_t> orig_lens;
    if (e.group) {
      for (uint64_t off = 0; off < sec->size; off += entry_size) orig_lens.push_back(bytes[off + alt.orig_len_at]);
      if (alt.nested) widen_nested_orig_lens(obj, *sec, alt, orig_lens);
    }
    for (uint64_t off = 0; off < sec->size; off += entry_size) {
      uint8_t orig_len = 0, new_len = 0;
      uint16_t feature = 0;
      if (e.group) {
        orig_len = orig_lens[off / entry_size];
        new_len = bytes[off + alt.new_len_at];
        std::memcpy(&feature, bytes.data() + off + kAltFeature, sizeof feature);
      }
      auto orig_at = target_of(obj, obj.reloc_at(sec->index, off + kAltOrig));
      if (!orig_at) {
        obj.fatal.push_back(object_error(fmt::format("{}+0x{:x}: can't find orig reloc", e.section, off + kAltOrig)));
        return;
      }
      std::optional<Target> new_at;
      if (!e.group || new_len) {
        new_at = target_of(obj, obj.reloc_at(sec->index, off + kAltNew));
        if (!new_at) {
          obj.fatal.push_back(object_error(fmt::format("{}+0x{:x}: can't find new reloc", e.section, off + kAltNew)));
          return;
        }
        if (new_at->offset >= 0x7ffffff0) new_at->offset -= 0x7ffffff0;  // the old _ASM_EXTABLE_EX encoding
      }
      const int32_t orig = obj.find_insn(orig_at->section, orig_at->offset);
      if (orig == kNone) {
        obj.fatal.push_back(object_error(fmt::format("{}+0x{:x}: special: can't find orig instruction",
                                                     obj.section_name(orig_at->section), orig_at->offset)));
        return;
      }
      int32_t repl = kNone;
      if (new_at) {
        repl = obj.find_insn(new_at->section, new_at->offset);
        if (repl == kNone) {
          obj.fatal.push_back(object_error(fmt::format("{}+0x{:x}: special: can't find new instruction",
                                                       obj.section_name(new_at->section), new_at->offset)));
          return;
        }
      }
      Instruction& o = obj.insns[orig];
      if (e.group) {
        if (!orig_len) continue;  // an empty alternative entry patches nothing
        if (feature == kFeaturePopcnt) o.skip_orig = true;
        if (feature == kFeatureSmap) o.ignore_alts = true;
        add_group_alternative(obj, orig, repl, orig_at->offset + orig_len, new_at ? new_at->offset + new_len : 0,
                              new_len != 0);
      } else if (e.jump) {
        if (o.insn.kind != InsnKind::Jump && o.insn.kind != InsnKind::Nop) {
          obj.fatal.push_back(structural_error(obj, o, "unsupported instruction at jump label"));
          continue;
        }
        // A nop can become a jump to the label's target; a jump can become a nop.
        if (o.insn.kind == InsnKind::Nop) {
          obj.extra_for(orig).alts.push_back(repl);
        } else if (orig + 1 < static_cast<int32_t>(obj.insns.size())) {
          obj.extra_for(orig).alts.push_back(orig + 1);
        }
      } else {
        obj.extra_for(orig).alts.push_back(
            repl);  // the exception fixup runs with the state of the faulting instruction
      }
    }
  }
}

void read_intra_function_calls(DecodedObject& obj) {
  for_each_annotated_insn(obj, ".discard.intra_function_calls", ".discard.intra_function_call", [&](int32_t i) {
    Instruction& in = obj.insns[i];
    if (in.insn.kind != InsnKind::Call) {
      obj.fatal.push_back(structural_error(obj, in, "intra_function_call not a direct call"));
      return;
    }
    // A jump that also pushes: it keeps the call's stack operation.
    in.insn.kind = InsnKind::Jump;
    in.set_jump_dest(obj.find_insn(obj.section_of(in), in.insn.target()));
    if (in.jump_dest() == kNone)
      obj.fatal.push_back(structural_error(
          obj, in,
          fmt::format("can't find call dest at {}+0x{:x}", obj.section_name(obj.section_of(in)), in.insn.target())));
  });
}

void read_dead_ends(DecodedObject& obj) {
  for (auto [name, dead] : {std::pair{".discard.unreachable", true}, std::pair{".discard.reachable", false}}) {
    for (const ElfReloc& r : annotation_relocs(obj, name)) {
      const ElfSymbol& s = obj.symbol(r.symbol());
      if (s.type != STT_SECTION) {
        obj.fatal.push_back(object_error(fmt::format("unexpected relocation symbol type in {}", name)));
        return;
      }
      // The annotation follows the instruction it is about.
      int32_t i = obj.find_insn(s.section, static_cast<uint64_t>(r.addend));
      if (i != kNone) {
        i = i - 1;
      } else if (const SectionCode* code = obj.code_of(s.section);
                 code && code->end_insn > code->first_insn &&
                 static_cast<uint64_t>(r.addend) == obj.elf->sections()[s.section].size) {
        i = static_cast<int32_t>(code->end_insn) - 1;
      }
      if (i < 0) {
        obj.fatal.push_back(
            object_error(fmt::format("can't find {} insn at {}+0x{:x}", dead ? "unreachable" : "reachable",
                                     obj.section_name(s.section), r.addend)));
        return;
      }
      obj.insns[i].dead_end = dead;
    }
  }
}

namespace {

// What a hint's type byte and the byte after it mean in the object's kernel format, as framecert's hint
// types (cfi::kHint*, 6.1's numbering): 6.1 has CALL 0, REGS 1, REGS_PARTIAL 2, FUNC 3, ENTRY 4, SAVE 5,
// RESTORE 6 and an `end` byte; 6.10+ has UNDEFINED 0, END_OF_STACK 1, CALL 2, REGS 3, REGS_PARTIAL 4, FUNC 5,
// SAVE 6, RESTORE 7 and a `signal` byte (for the ORC unwinder; nothing to validate).
struct HintMeaning {
  uint8_t type = cfi::kHintCall;
  bool end = false;
  bool force_undefined = false;
};

HintMeaning hint_meaning(KernelFormat format, uint8_t type, uint8_t after) {
  if (format == KernelFormat::Linux6_1) return {type, after != 0, false};
  switch (type) {
    case 0:
      return {cfi::kHintCall, false, true};
    case 1:
      return {cfi::kHintCall, true, false};  // the end of the stack: an undefined CFA, as 6.1's EMPTY
    case 2:
      return {cfi::kHintCall, false, false};
    case 3:
      return {cfi::kHintRegs, false, false};
    case 4:
      return {cfi::kHintRegsPartial, false, false};
    case 5:
      return {cfi::kHintFunc, false, false};
    case 6:
      return {cfi::kHintSave, false, false};
    case 7:
      return {cfi::kHintRestore, false, false};
    default:
      return {type, false, false};  // an unknown type: taken as is, as objtool 6.12 does
  }
}

}  // namespace

void read_unwind_hints(DecodedObject& obj) {
  const ElfSection* sec = obj.elf->section_by_name(".discard.unwind_hints");
  if (!sec) return;
  constexpr size_t kHintSize = 12;  // struct unwind_hint: u32 ip, s16 sp_offset, u8 sp_reg, u8 type, u8 end
  if (sec->size % kHintSize) {
    obj.fatal.push_back(object_error("struct unwind_hint size mismatch"));
    return;
  }
  const std::span<const uint8_t> bytes = obj.elf->section_bytes(sec->index);
  if (bytes.size() != sec->size) {
    obj.fatal.push_back(object_error(".discard.unwind_hints: section data unreadable"));
    return;
  }
  obj.has_hints = true;
  CfiState carried;  // like objtool, fields a hint does not set carry over from the previous hint
  // The state a hint asserts at instruction i.
  auto assert_state = [&obj](int32_t i, const CfiState& state) {
    obj.hint_states.push_back(state);
    obj.extra_for(i).hint_state = static_cast<int32_t>(obj.hint_states.size() - 1);
  };
  for (uint64_t n = 0; n < sec->size / kHintSize; ++n) {
    const uint64_t off = n * kHintSize;
    const ElfReloc* r = obj.reloc_at(sec->index, off);
    if (!r) {
      obj.fatal.push_back(object_error(fmt::format("can't find reloc for unwind_hints[{}]", n)));
      return;
    }
    const int32_t i = obj.find_insn(obj.symbol(r->symbol()).section, static_cast<uint64_t>(r->addend));
    if (i == kNone) {
      obj.fatal.push_back(object_error(fmt::format("can't find insn for unwind_hints[{}]", n)));
      return;
    }
    int16_t sp_offset;
    std::memcpy(&sp_offset, bytes.data() + off + 4, sizeof sp_offset);
    const uint8_t sp_reg = bytes[off + 6];
    const HintMeaning meaning = hint_meaning(obj.format, bytes[off + 7], bytes[off + 8]);
    uint8_t type = meaning.type;
    const bool end = meaning.end;
    Instruction& in = obj.insns[i];
    in.hint = true;
    if (meaning.force_undefined) {
      // 6.10+'s UNWIND_HINT_UNDEFINED: nothing is known from here, and stack operations are not tracked
      // until the next hint (objtool's force_undefined_cfi).
      CfiState undefined;
      undefined.force_undefined = true;
      assert_state(i, undefined);
      continue;
    }
    if (type == cfi::kHintSave) {
      in.hint = false;
      in.hint_save = true;
      continue;
    }
    if (type == cfi::kHintRestore) {
      in.hint_restore = true;
      continue;
    }
    if (type == cfi::kHintEntry) type = cfi::kHintCall;
    if (type == cfi::kHintFunc) {
      assert_state(i, CfiState::function_entry());
      continue;
    }
    if (const int32_t h = obj.hint_state(in); h != kNone) carried = obj.hint_states[h];
    int base;
    switch (sp_reg) {  // ORC register numbers
      case 0:
        base = cfi::kUndefined;
        break;
      case 2:
        base = static_cast<int>(Reg::Dx);
        break;
      case 3:
        base = static_cast<int>(Reg::Di);
        break;
      case 4:
        base = cfi::kBp;
        break;
      case 5:
        base = cfi::kSp;
        break;
      case 6:
        base = static_cast<int>(Reg::R10);
        break;
      case 7:
        base = static_cast<int>(Reg::R13);
        break;
      case 9:
        base = cfi::kSpIndirect;
        break;
      default:
        obj.fatal.push_back(structural_error(obj, in, fmt::format("unsupported unwind_hint sp base reg {}", sp_reg)));
        return;
    }
    carried.cfa = {base, sp_offset};
    carried.type = type;
    carried.end = end;
    assert_state(i, carried);
  }
}

}  // namespace framecert

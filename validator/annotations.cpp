// The kernel's special sections and annotations, read with objtool 6.1's meaning:
//   .altinstructions / __jump_table / __ex_table  code that may run in place of an instruction
//   .discard.ignore_alts                          alternatives not to follow
//   .discard.intra_function_calls                 a call that is really a jump within the function
//   .discard.unreachable / .discard.reachable     dead ends the compiler cannot see (BUG/WARN)
//   .discard.unwind_hints                         the stack state asserted by hand-written assembly
#include <elf.h>

#include <cstring>
#include <optional>

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
    {".altinstructions", 12, true, false},
    {"__jump_table", 16, false, true},
    {"__ex_table", 12, false, false},
};
constexpr int kAltOrig = 0, kAltNew = 4, kAltFeature = 8, kAltOrigLen = 10, kAltNewLen = 11;
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
    if (sec->size % e.size != 0) {
      obj.fatal.push_back(object_error(fmt::format("{} size not a multiple of {}", e.section, e.size)));
      return;
    }
    const std::span<const uint8_t> bytes = obj.elf->section_bytes(sec->index);
    if (bytes.size() != sec->size) {
      obj.fatal.push_back(object_error(fmt::format("{}: section data unreadable", e.section)));
      return;
    }
    for (uint64_t off = 0; off < sec->size; off += e.size) {
      uint8_t orig_len = 0, new_len = 0;
      uint16_t feature = 0;
      if (e.group) {
        orig_len = bytes[off + kAltOrigLen];
        new_len = bytes[off + kAltNewLen];
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
    uint8_t type = bytes[off + 7];
    const bool end = bytes[off + 8] != 0;
    Instruction& in = obj.insns[i];
    in.hint = true;
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
      obj.hint_states.push_back(CfiState::function_entry());
      obj.extra_for(i).hint_state = static_cast<int32_t>(obj.hint_states.size() - 1);
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
    obj.hint_states.push_back(carried);
    obj.extra_for(i).hint_state = static_cast<int32_t>(obj.hint_states.size() - 1);
  }
}

}  // namespace framecert

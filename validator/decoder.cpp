// x86-64 decoder: Zydis finds instruction boundaries and operands; the instruction kind and the stack
// operations are then derived from the raw encoding bytes (opcode, ModRM, SIB, REX, displacement,
// immediate), exactly the way the kernel's objtool (6.1) x86 decoder derives them. Deciding on bytes
// rather than on Zydis's mnemonics matters: objtool's verdicts are byte-level (e.g. every 0x90 opcode is a
// nop, an ff /2 with a stray REX.R is not an indirect call), and the checker must reach objtool's verdicts.
#include "validator/decoder.h"

#include <Zydis/Zydis.h>

#include <algorithm>
#include <array>
#include <tuple>

namespace framecert {

struct Decoder::Impl {
  ZydisDecoder zydis{};
  // The counting pass needs lengths only: Zydis's minimal mode skips the semantic analysis (operand sizes,
  // accessed registers) and finds the same lengths.
  ZydisDecoder lengths{};
  bool ok = false;
};

namespace {

using Src = StackOp::Src;
using Dst = StackOp::Dst;

constexpr uint8_t kSp = static_cast<uint8_t>(Reg::Sp);
constexpr uint8_t kBp = static_cast<uint8_t>(Reg::Bp);

// The encoding fields objtool's decoder branches on. Register numbers already include their REX
// extension bit (so they are 0..15, in Reg order); fields of absent parts (no ModRM, no SIB) stay 0.
struct Encoding {
  uint8_t op1 = 0, op2 = 0, op3 = 0;  // opcode bytes; op2/op3 only for the 0f escape maps
  uint8_t first_prefix = 0;           // first distinct legacy prefix, as the kernel's decoder keeps it
  bool notrack = false;               // a 3e (notrack) among the prefixes the kernel's decoder keeps
  bool rex_w = false;
  uint8_t rex_b = 0;  // 0 or 8: extends the register in the low opcode bits (push/pop %reg)
  uint8_t modrm = 0, mod = 0, reg = 0, rm = 0;
  uint8_t sib_index = 0, sib_base = 0;
  int32_t disp = 0;  // sign-extended, 0 when absent
  int32_t imm = 0;   // first immediate, sign-extended from its encoded size (the kernel keeps an int)
  bool has_imm = false;
  uint16_t enter_size = 0;  // enter's imm16 frame size, unsigned
  uint8_t enter_level = 0;  // enter's imm8 nesting level
  bool operand_16 = false;  // a 66 prefix made the operand size 16 bits (push/pop of 2 bytes)

  bool mod_is_mem() const { return mod != 3; }
  bool mod_is_reg() const { return mod == 3; }
  // mod 00 with rm 101 (also with REX.B) addresses relative to RIP in 64-bit mode.
  bool is_rip() const { return (rm & 7) == kBp && mod == 0; }
  // rm 100 with a memory mod means a SIB byte follows.
  bool have_sib() const { return (rm & 7) == kSp && mod_is_mem(); }
  // Base register test that only accepts a SIB without an index (index field 100 and no REX.X). Like
  // objtool this takes the SIB base field at face value, so mod 00 with base 101 (absolute disp32) counts
  // as rbp.
  bool rm_is(uint8_t r) const { return have_sib() ? sib_base == r && sib_index == kSp : rm == r; }
  bool rm_is_mem(uint8_t r) const { return mod_is_mem() && !is_rip() && rm_is(r); }
  bool rm_is_reg(uint8_t r) const { return mod_is_reg() && rm == r; }
};

bool is_legacy_prefix(uint8_t b) {
  switch (b) {
    case 0x26:
    case 0x2e:
    case 0x36:
    case 0x3e:
    case 0x64:
    case 0x65:
    case 0x66:
    case 0x67:
    case 0xf0:
    case 0xf2:
    case 0xf3:
      return true;
    default:
      return false;
  }
}

// The kernel's decoder records up to four distinct legacy prefixes in order and then moves the last
// prefix byte seen into slot 3, swapping if that slot was taken. objtool's endbr test reads slot 0, so
// reproduce that bookkeeping instead of just taking the first byte.
uint8_t kernel_first_prefix(std::span<const uint8_t> bytes, bool* has_3e) {
  std::array<uint8_t, 4> slots{};
  size_t count = 0;
  uint8_t last = 0;
  for (size_t i = 0; i < bytes.size() && is_legacy_prefix(bytes[i]); ++i) {
    const uint8_t b = bytes[i];
    bool seen = false;
    for (size_t j = 0; j < count; ++j) seen = seen || slots[j] == b;
    if (!seen) {
      if (count == slots.size()) break;
      slots[count++] = b;
    }
    last = b;
  }
  *has_3e = std::find(slots.begin(), slots.begin() + static_cast<std::ptrdiff_t>(count), 0x3e) !=
            slots.begin() + static_cast<std::ptrdiff_t>(count);
  if (last != 0 && last != slots[3]) {
    if (slots[3] != 0) {
      for (size_t j = 0; j < count; ++j) {
        if (slots[j] == last) slots[j] = slots[3];
      }
    }
    slots[3] = last;
  }
  return slots[0];
}

int32_t read_signed(std::span<const uint8_t> bytes, size_t offset, size_t size_bits) {
  const size_t n = size_bits / 8;
  uint64_t v = 0;
  for (size_t i = 0; i < n; ++i) v |= static_cast<uint64_t>(bytes[offset + i]) << (8 * i);
  if (n > 0 && n < 8 && (v >> (8 * n - 1)) & 1) v |= ~uint64_t{0} << (8 * n);
  return static_cast<int32_t>(static_cast<uint32_t>(v));
}

void set_opcode_bytes(const ZydisDecodedInstruction& zi, Encoding& e) {
  switch (zi.opcode_map) {
    case ZYDIS_OPCODE_MAP_0F:
      e.op1 = 0x0f;
      e.op2 = zi.opcode;
      break;
    case ZYDIS_OPCODE_MAP_0F38:
      e.op1 = 0x0f;
      e.op2 = 0x38;
      e.op3 = zi.opcode;
      break;
    case ZYDIS_OPCODE_MAP_0F3A:
      e.op1 = 0x0f;
      e.op2 = 0x3a;
      e.op3 = zi.opcode;
      break;
    case ZYDIS_OPCODE_MAP_0F0F:
      e.op1 = 0x0f;
      e.op2 = 0x0f;
      break;
    default:
      e.op1 = zi.opcode;
      break;
  }
}

Encoding extract(std::span<const uint8_t> bytes, const ZydisDecodedInstruction& zi) {
  Encoding e;
  set_opcode_bytes(zi, e);
  e.first_prefix = kernel_first_prefix(bytes, &e.notrack);
  uint8_t rex_r = 0, rex_x = 0, rex_b = 0;
  if (zi.attributes & ZYDIS_ATTRIB_HAS_REX) {
    e.rex_w = zi.raw.rex.W != 0;
    rex_r = zi.raw.rex.R;
    rex_x = zi.raw.rex.X;
    rex_b = zi.raw.rex.B;
  }
  e.rex_b = static_cast<uint8_t>(8 * rex_b);
  if (zi.attributes & ZYDIS_ATTRIB_HAS_MODRM) {
    e.modrm = bytes[zi.raw.modrm.offset];
    e.mod = e.modrm >> 6;
    e.reg = static_cast<uint8_t>(((e.modrm >> 3) & 7) + 8 * rex_r);
    e.rm = static_cast<uint8_t>((e.modrm & 7) + 8 * rex_b);
  }
  if (zi.attributes & ZYDIS_ATTRIB_HAS_SIB) {
    const uint8_t sib = bytes[zi.raw.sib.offset];
    e.sib_index = static_cast<uint8_t>(((sib >> 3) & 7) + 8 * rex_x);
    e.sib_base = static_cast<uint8_t>((sib & 7) + 8 * rex_b);
  }
  if (zi.raw.disp.size != 0) e.disp = read_signed(bytes, zi.raw.disp.offset, zi.raw.disp.size);
  if (zi.raw.imm[0].size != 0) {
    e.has_imm = true;
    e.imm = read_signed(bytes, zi.raw.imm[0].offset, zi.raw.imm[0].size);
  }
  if (zi.raw.imm[0].size == 16 && zi.raw.imm[1].size == 8) {  // enter's two immediates
    e.enter_size = static_cast<uint16_t>(bytes[zi.raw.imm[0].offset] | bytes[zi.raw.imm[0].offset + 1] << 8);
    e.enter_level = bytes[zi.raw.imm[1].offset];
  }
  e.operand_16 = zi.operand_width == 16;
  return e;
}

Reg R(uint8_t n) { return static_cast<Reg>(n); }

void add_op(DecodedInsn& insn, Src src, Reg src_reg, int32_t src_offset, Dst dst, Reg dst_reg = Reg::None,
            int32_t dst_offset = 0) {
  if (insn.op_count >= kMaxStackOps) return;
  insn.ops[insn.op_count] = StackOp{src, src_reg, dst, dst_reg, src_offset, dst_offset};
  insn.op_count = insn.op_count + 1;
}

// The kernel keeps stack-op offsets in an int; mirror its wrap-around for the negated sub immediate.
int32_t wrap32(uint64_t v) { return static_cast<int32_t>(static_cast<uint32_t>(v)); }

// 80..83 group: only 64-bit add/sub/and with %rsp as the register operand are stack operations.
void decode_group1(const Encoding& e, DecodedInsn& insn) {
  if (!e.rex_w || !e.rm_is_reg(kSp)) return;
  const uint64_t imm = static_cast<uint64_t>(static_cast<int64_t>(e.imm));
  switch (e.reg & 7) {
    case 0:  // add
      add_op(insn, Src::Add, Reg::Sp, wrap32(imm), Dst::Reg, Reg::Sp);
      break;
    case 5:  // sub: an add of the negated amount
      add_op(insn, Src::Add, Reg::Sp, wrap32(0 - imm), Dst::Reg, Reg::Sp);
      break;
    case 4:  // and: the immediate as encoded (sign-extended), used as an alignment mask
      add_op(insn, Src::And, Reg::Sp, e.imm, Dst::Reg, Reg::Sp);
      break;
    default:
      break;
  }
}

// 88/89 stores. 89 with %rsp in the reg field is a copy of the stack pointer to a register or to memory
// based on any register; otherwise a register move into %rsp; otherwise (like 88) a store into a frame
// slot addressed off %rbp or %rsp.
void decode_store(const Encoding& e, DecodedInsn& insn) {
  if (!e.rex_w) return;
  if (e.op1 == 0x89) {
    if (e.reg == kSp) {
      if (e.mod_is_reg()) {
        add_op(insn, Src::Reg, Reg::Sp, 0, Dst::Reg, R(e.rm));
        return;
      }
      if (e.is_rip()) return;
      uint8_t base = e.rm;
      if (e.have_sib()) {
        base = e.sib_base;
        if (e.sib_index != kSp) return;
      }
      add_op(insn, Src::Reg, Reg::Sp, 0, Dst::RegIndirect, R(base), e.disp);
      return;
    }
    if (e.rm_is_reg(kSp)) {
      add_op(insn, Src::Reg, R(e.reg), 0, Dst::Reg, Reg::Sp);
      return;
    }
  }
  for (const uint8_t base : {kBp, kSp}) {
    if (e.rm_is_mem(base)) {
      add_op(insn, Src::Reg, R(e.reg), 0, Dst::RegIndirect, R(base), e.disp);
      return;
    }
  }
}

// 8b loads from a frame slot addressed off %rbp or %rsp.
void decode_load(const Encoding& e, DecodedInsn& insn) {
  if (!e.rex_w) return;
  for (const uint8_t base : {kBp, kSp}) {
    if (e.rm_is_mem(base)) {
      add_op(insn, Src::RegIndirect, R(base), e.disp, Dst::Reg, R(e.reg));
      return;
    }
  }
}

// 8d lea: 64-bit, not RIP-relative, no SIB index. A zero displacement is a plain register copy.
void decode_lea(const Encoding& e, DecodedInsn& insn) {
  if (e.mod_is_reg() || !e.rex_w || e.is_rip()) return;
  uint8_t base = e.rm;
  if (e.have_sib()) {
    base = e.sib_base;
    if (e.sib_index != kSp) return;
  }
  if (e.disp == 0) {
    add_op(insn, Src::Reg, R(base), 0, Dst::Reg, R(e.reg));
  } else {
    add_op(insn, Src::Add, R(base), e.disp, Dst::Reg, R(e.reg));
  }
}

void decode_0f(const Encoding& e, DecodedInsn& insn) {
  const uint8_t op2 = e.op2;
  if (op2 == 0x01) {
    if (e.modrm == 0xca) insn.kind = InsnKind::Clac;
    if (e.modrm == 0xcb) insn.kind = InsnKind::Stac;
  } else if (op2 >= 0x80 && op2 <= 0x8f) {
    insn.kind = InsnKind::JumpConditional;
  } else if (op2 == 0x05 || op2 == 0x07 || op2 == 0x34 || op2 == 0x35) {
    insn.kind = InsnKind::ContextSwitch;  // syscall, sysret, sysenter, sysexit
    insn.is_syscall = op2 == 0x05;
  } else if (op2 == 0x0b || op2 == 0xb9) {
    insn.kind = InsnKind::Bug;  // ud2, ud1
  } else if (op2 == 0x0d || op2 == 0x1f) {
    insn.kind = InsnKind::Nop;  // prefetch-space hint nops and the long nops
  } else if (op2 == 0x1e) {
    // Only f3 0f 1e fa/fb (endbr64/endbr32), with f3 as the first prefix.
    if (e.first_prefix == 0xf3 && (e.modrm == 0xfa || e.modrm == 0xfb)) insn.kind = InsnKind::Endbr;
  } else if (op2 == 0xa0 || op2 == 0xa8) {
    add_op(insn, Src::Const, Reg::None, 0, Dst::Push);  // push %fs / %gs
  } else if (op2 == 0xa1 || op2 == 0xa9) {
    add_op(insn, Src::Pop, Reg::None, 0, Dst::Mem);  // pop %fs / %gs
  }
}

// ff group: indirect call (including far call), indirect jump, far jump, push from r/m. The reg field is
// compared with its REX.R bit included, as objtool does.
void decode_group5(const Encoding& e, DecodedInsn& insn) {
  switch (e.reg) {
    case 2:
    case 3:
      insn.kind = InsnKind::CallIndirect;
      insn.notrack = e.notrack;
      break;
    case 4:
      insn.kind = InsnKind::JumpIndirect;
      insn.notrack = e.notrack;
      break;
    case 5:
      insn.kind = InsnKind::ContextSwitch;
      break;
    case 6:
      add_op(insn, Src::Const, Reg::None, 0, Dst::Push);
      break;
    default:
      break;
  }
}

void decode_legacy(const Encoding& e, DecodedInsn& insn) {
  const uint8_t op1 = e.op1;
  if (op1 >= 0x50 && op1 <= 0x57) {
    add_op(insn, Src::Reg, R(static_cast<uint8_t>((op1 & 7) + e.rex_b)), 0, Dst::Push);
    return;
  }
  if (op1 >= 0x58 && op1 <= 0x5f) {
    add_op(insn, Src::Pop, Reg::None, 0, Dst::Reg, R(static_cast<uint8_t>((op1 & 7) + e.rex_b)));
    return;
  }
  if (op1 >= 0x70 && op1 <= 0x7f) {
    insn.kind = InsnKind::JumpConditional;
    return;
  }
  if (op1 >= 0x80 && op1 <= 0x83) {
    decode_group1(e, insn);
    return;
  }
  switch (op1) {
    case 0x01:
    case 0x29:  // add/sub %reg, %rsp: amount unknown
      if (e.rex_w && e.rm_is_reg(kSp)) add_op(insn, Src::Add, R(e.reg), 0, Dst::Reg, Reg::Sp);
      break;
    case 0x68:
    case 0x6a:
      add_op(insn, Src::Const, Reg::None, 0, Dst::Push);
      break;
    case 0x88:
    case 0x89:
      decode_store(e, insn);
      break;
    case 0x8b:
      decode_load(e, insn);
      break;
    case 0x8d:
      decode_lea(e, insn);
      break;
    case 0x8f:
      add_op(insn, Src::Pop, Reg::None, 0, Dst::Mem);
      break;
    case 0x90:
      insn.kind = InsnKind::Nop;
      break;  // any 0x90 opcode: nop, pause, xchg forms
    case 0x9c:
      add_op(insn, Src::Const, Reg::None, 0, Dst::PushF);
      break;
    case 0x9d:
      add_op(insn, Src::PopF, Reg::None, 0, Dst::Mem);
      break;
    case 0x0f:
      decode_0f(e, insn);
      break;
    case 0xc8:  // enter $N,$0: push %rbp; mov %rsp,%rbp; sub $N,%rsp (framecert's own: objtool has no ops)
      // Other nesting levels also copy frame pointers from the enclosing frames; the CPU takes the level
      // modulo 32, so only an encoded 0 is exactly the three-instruction prologue.
      if (e.enter_level == 0 && !e.operand_16) {
        add_op(insn, Src::Reg, Reg::Bp, 0, Dst::Push);
        add_op(insn, Src::Reg, Reg::Sp, 0, Dst::Reg, Reg::Bp);
        if (e.enter_size != 0) add_op(insn, Src::Add, Reg::Sp, -static_cast<int32_t>(e.enter_size), Dst::Reg, Reg::Sp);
      }
      break;
    case 0xc9:  // leave: mov %rbp,%rsp; pop %rbp
      add_op(insn, Src::Reg, Reg::Bp, 0, Dst::Reg, Reg::Sp);
      add_op(insn, Src::Pop, Reg::None, 0, Dst::Reg, Reg::Bp);
      break;
    case 0xcc:
      insn.kind = InsnKind::Trap;
      break;
    case 0xe0:
    case 0xe1:
    case 0xe2:
    case 0xe3:
      insn.kind = InsnKind::JumpConditional;
      break;
    case 0xe9:
    case 0xeb:
      insn.kind = InsnKind::Jump;
      break;
    case 0xc2:
    case 0xc3:
      insn.kind = InsnKind::Return;
      break;
    case 0xcf:  // iret: the checker decides between sync_core()'s iret-to-self and a context switch
      insn.kind = InsnKind::ContextSwitch;
      insn.is_iret = true;
      break;
    case 0xca:
    case 0xcb:  // far ret
      insn.kind = InsnKind::ContextSwitch;
      insn.is_far_return = true;
      break;
    case 0xe8:  // a direct call pushes its return address
      insn.kind = InsnKind::Call;
      add_op(insn, Src::Const, Reg::None, 0, Dst::Push);
      break;
    case 0xfc:
      insn.kind = InsnKind::Cld;
      break;
    case 0xfd:
      insn.kind = InsnKind::Std;
      break;
    case 0xff:
      decode_group5(e, insn);
      break;
    default:
      break;
  }
}

bool is_legacy_encoding(const ZydisDecodedInstruction& zi) {
  return zi.encoding == ZYDIS_INSTRUCTION_ENCODING_LEGACY || zi.encoding == ZYDIS_INSTRUCTION_ENCODING_3DNOW;
}

// Maps any 8/16/32/64-bit general-purpose register to its Reg; Reg::None for everything else.
Reg gpr_of(ZydisRegister r) {
  const ZydisRegister full = ZydisRegisterGetLargestEnclosing(ZYDIS_MACHINE_MODE_LONG_64, r);
  if (full < ZYDIS_REGISTER_RAX || full > ZYDIS_REGISTER_R15) return Reg::None;
  return static_cast<Reg>(full - ZYDIS_REGISTER_RAX);
}

uint16_t written_gprs(const ZydisDecodedInstruction& zi, const ZydisDecodedOperand* ops) {
  uint16_t mask = 0;
  for (size_t i = 0; i < zi.operand_count; ++i) {
    const ZydisDecodedOperand& op = ops[i];
    if (op.type != ZYDIS_OPERAND_TYPE_REGISTER || !(op.actions & ZYDIS_OPERAND_ACTION_MASK_WRITE)) continue;
    const Reg r = gpr_of(op.reg.value);
    if (r != Reg::None) mask = static_cast<uint16_t>(mask | (1u << static_cast<unsigned>(r)));
  }
  return mask;
}

bool is_ebp_or_rbp(const ZydisDecodedOperand& op) {
  return op.type == ZYDIS_OPERAND_TYPE_REGISTER &&
         (op.reg.value == ZYDIS_REGISTER_EBP || op.reg.value == ZYDIS_REGISTER_RBP);
}

// A whole-register copy `mov %src64,%dst64`: the destination then holds exactly what the source held,
// which lets the frame-pointer flow see rbp saved in another register and put back (rbp_flow.cpp).
std::pair<Reg, Reg> register_copy(const ZydisDecodedInstruction& zi, const ZydisDecodedOperand* ops) {
  if (zi.mnemonic != ZYDIS_MNEMONIC_MOV || zi.operand_count_visible != 2 || zi.operand_width != 64)
    return {Reg::None, Reg::None};
  if (ops[0].type != ZYDIS_OPERAND_TYPE_REGISTER || ops[1].type != ZYDIS_OPERAND_TYPE_REGISTER)
    return {Reg::None, Reg::None};
  return {gpr_of(ops[1].reg.value), gpr_of(ops[0].reg.value)};
}

// Idioms that leave %rbp == 0 (the "no frame" marker of entry code): xor/sub of %ebp or %rbp with
// itself, and mov/and of an immediate 0 into %ebp or %rbp. 32-bit writes zero the upper half too.
bool sets_bp_zero(const ZydisDecodedInstruction& zi, const ZydisDecodedOperand* ops) {
  if (zi.operand_count_visible < 2 || !is_ebp_or_rbp(ops[0])) return false;
  const ZydisDecodedOperand& src = ops[1];
  switch (zi.mnemonic) {
    case ZYDIS_MNEMONIC_XOR:
    case ZYDIS_MNEMONIC_SUB:
      return src.type == ZYDIS_OPERAND_TYPE_REGISTER && src.reg.value == ops[0].reg.value;
    case ZYDIS_MNEMONIC_MOV:
    case ZYDIS_MNEMONIC_AND:
      return src.type == ZYDIS_OPERAND_TYPE_IMMEDIATE && src.imm.value.u == 0;
    default:
      return false;
  }
}

// The length of a ModRM operand (ModRM, SIB, displacement) starting at code[0] in 64-bit mode, or 0 when
// the bytes end first.
size_t modrm_operand_length(std::span<const uint8_t> code) {
  if (code.empty()) return 0;
  const uint8_t mod = code[0] >> 6, rm = code[0] & 7;
  size_t n = 1;
  if (mod != 3 && rm == 4) {
    if (code.size() < 2) return 0;
    if (mod == 0 && (code[1] & 7) == 5) n += 4;  // SIB without base: disp32
    ++n;
  }
  if (mod == 1) n += 1;
  if (mod == 2 || (mod == 0 && rm == 5)) n += 4;  // disp32, or RIP-relative
  return n <= code.size() ? n : 0;
}

// Instructions the kernel uses that this Zydis (Debian's 4.0) does not know, decoded by hand. `length` 0: not
// one of them.
//   LKGS r/m16  F2 [REX] 0F 00 /6  (load_gs_index() on CPUs with LKGS, Linux 6.6+): loads GS's base; its
//               length only (kind other, no stack operation, no general register written).
//   ERETS       F2 0F 01 CA        (FRED's return to the kernel, Linux 6.9+): a context switch.
//   ERETU       F3 0F 01 CA        (FRED's return to user space): a context switch.
struct NewerInsn {
  size_t length = 0;
  bool eret = false;
};

NewerInsn newer_insn(std::span<const uint8_t> code) {
  if (code.size() < 4) return {};
  if ((code[0] == 0xf2 || code[0] == 0xf3) && code[1] == 0x0f && code[2] == 0x01 && code[3] == 0xca) return {4, true};
  size_t n = 0;
  if (code[n++] != 0xf2) return {};
  if ((code[n] & 0xf0) == 0x40) ++n;  // REX
  if (code.size() < n + 3 || code[n] != 0x0f || code[n + 1] != 0x00 || ((code[n + 2] >> 3) & 7) != 6) return {};
  const size_t operand = modrm_operand_length(code.subspan(n + 2));
  return {operand ? n + 2 + operand : 0, false};
}

}  // namespace

Decoder::Decoder() : impl_(std::make_unique<Impl>()) {
  impl_->ok = ZYAN_SUCCESS(ZydisDecoderInit(&impl_->zydis, ZYDIS_MACHINE_MODE_LONG_64, ZYDIS_STACK_WIDTH_64)) &&
              ZYAN_SUCCESS(ZydisDecoderInit(&impl_->lengths, ZYDIS_MACHINE_MODE_LONG_64, ZYDIS_STACK_WIDTH_64)) &&
              ZYAN_SUCCESS(ZydisDecoderEnableMode(&impl_->lengths, ZYDIS_DECODER_MODE_MINIMAL, ZYAN_TRUE));
}

Decoder::~Decoder() = default;

Decoder::CountRun Decoder::count_run(std::span<const uint8_t> code, uint64_t begin, uint64_t limit,
                                     size_t every) const {
  CountRun run;
  if (!impl_->ok) return run;
  ZydisDecoderContext ctx;
  ZydisDecodedInstruction zi;
  uint64_t off = begin;
  limit = std::min<uint64_t>(limit, code.size());
  for (; off < limit; ++run.count) {
    if (every && run.count % every == 0) run.starts.push_back(off);
    if (ZYAN_SUCCESS(ZydisDecoderDecodeInstruction(&impl_->lengths, &ctx, code.data() + off, code.size() - off, &zi)) &&
        zi.length != 0) {
      off += zi.length;
    } else if (const size_t len = newer_insn(code.subspan(off)).length) {
      off += len;
    } else {
      if (every && run.count % every == 0) run.starts.pop_back();
      run.undecodable = true;
      break;
    }
  }
  run.end = off;
  return run;
}

std::optional<DecodedInsn> Decoder::decode(std::span<const uint8_t> code, uint32_t offset) const {
  if (!impl_->ok || code.empty()) return std::nullopt;
  ZydisDecodedInstruction zi;
  std::array<ZydisDecodedOperand, ZYDIS_MAX_OPERAND_COUNT> operands;
  if (!ZYAN_SUCCESS(ZydisDecoderDecodeFull(&impl_->zydis, code.data(), code.size(), &zi, operands.data()))) {
    const NewerInsn newer = newer_insn(code);
    if (!newer.length) return std::nullopt;
    DecodedInsn insn;
    insn.offset = offset;
    insn.length = static_cast<uint8_t>(newer.length);
    if (newer.eret) {
      insn.kind = InsnKind::ContextSwitch;
      insn.is_eret = true;
    }
    return insn;
  }
  if (zi.length == 0 || zi.length > code.size()) return std::nullopt;
  const std::span<const uint8_t> bytes = code.first(zi.length);

  DecodedInsn insn;
  insn.offset = offset;
  insn.length = zi.length;
  insn.written_regs = written_gprs(zi, operands.data());
  insn.zeroes_bp = sets_bp_zero(zi, operands.data());
  std::tie(insn.copy_src, insn.copy_dst) = register_copy(zi, operands.data());
  // objtool skips VEX/EVEX-encoded instructions entirely: kind other, no stack operations. XOP (AMD only,
  // unknown to the kernel's decoder, never in kernel code) is treated the same way.
  if (!is_legacy_encoding(zi)) return insn;

  const Encoding e = extract(bytes, zi);
  decode_legacy(e, insn);
  if (insn.kind == InsnKind::Jump || insn.kind == InsnKind::JumpConditional || insn.kind == InsnKind::Call) {
    // Direct branches: the target is the next instruction plus the sign-extended relative immediate.
    insn.has_target = e.has_imm;
    insn.displacement = e.imm;
  }
  return insn;
}

}  // namespace framecert

// The arch-neutral instruction model the checker works on. The decoder (decoder.cpp, the only file that
// knows Zydis) turns bytes into an Insn: a kind for control flow, plus the instruction's effects on the
// stack and frame registers as a short list of StackOps. The checker never looks at opcode bytes.
#pragma once

#include <array>
#include <cstdint>
#include <string_view>

namespace framecert {

// General-purpose registers in x86-64 encoding order (the order of ModRM reg fields and REX extensions).
enum class Reg : uint8_t {
  Ax,
  Cx,
  Dx,
  Bx,
  Sp,
  Bp,
  Si,
  Di,
  R8,
  R9,
  R10,
  R11,
  R12,
  R13,
  R14,
  R15,
  None = 0xff,
};
inline constexpr int kNumGprs = 16;
std::string_view reg_name(Reg r);

enum class InsnKind : uint8_t {
  Other,  // no control-flow effect
  Nop,
  Jump,             // jmp rel (direct)
  JumpConditional,  // jcc, jrcxz, loop*
  JumpIndirect,     // jmp *reg / jmp *mem
  Call,             // call rel (direct)
  CallIndirect,     // call *reg / call *mem
  Return,           // ret, ret imm16
  ContextSwitch,    // sysret, sysexit, sysenter, syscall, iret (see Insn::is_iret), far jmp/ret
  Bug,              // ud2, ud1: a dead end (BUG())
  Trap,             // int3
  Endbr,            // endbr64 / endbr32
  Stac,
  Clac,
  Std,
  Cld,
};
std::string_view kind_name(InsnKind k);

// One effect on the stack-tracking state: `dst = src`. Modelled on the forms a compiler emits for frames.
//   push %reg            -> {Src::Reg reg,            Dst::Push}
//   push $imm / mem / fs -> {Src::Const,              Dst::Push}
//   pushf                -> {Src::Const,              Dst::PushF}
//   pop %reg             -> {Src::Pop,                Dst::Reg reg}
//   pop mem / fs         -> {Src::Pop,                Dst::Mem}
//   popf                 -> {Src::PopF,               Dst::Mem}
//   mov %a, %b (64-bit)  -> {Src::Reg a,              Dst::Reg b}       only when a or b is rsp
//   add/sub $imm, %rsp   -> {Src::Add rsp imm,        Dst::Reg rsp}     sub gives a negative imm
//   add/sub %reg, %rsp   -> {Src::Add reg 0,          Dst::Reg rsp}     amount unknown (alloca)
//   and $imm, %rsp       -> {Src::And rsp imm,        Dst::Reg rsp}
//   lea d(%a), %b        -> {Src::Add a d,            Dst::Reg b}       d == 0: {Src::Reg a, Dst::Reg b}
//   mov %a, d(%b)        -> {Src::Reg a,              Dst::RegIndirect b d}   b in {rsp, rbp}, or a == rsp
//   mov d(%a), %b        -> {Src::RegIndirect a d,    Dst::Reg b}       a in {rsp, rbp}
//   leave                -> {Src::Reg rbp, Dst::Reg rsp}, {Src::Pop, Dst::Reg rbp}
//   enter $N, $0         -> {Src::Reg rbp, Dst::Push}, {Src::Reg rsp, Dst::Reg rbp},
//                           {Src::Add rsp -N, Dst::Reg rsp}: exactly push %rbp; mov %rsp,%rbp; sub $N,%rsp
//                           (another nesting level or a 16-bit operand size: no ops, rsp and rbp written)
//   call rel             -> {Src::Const, Dst::Push}  (the checker drops it once the call has a target)
// Only 64-bit forms count; RIP-relative and SIB forms with an index register are not stack operations.
struct StackOp {
  enum class Src : uint8_t { Reg, RegIndirect, Const, Pop, PopF, Add, And };
  enum class Dst : uint8_t { Reg, RegIndirect, Mem, Push, PushF };
  Src src = Src::Const;
  Reg src_reg = Reg::None;
  Dst dst = Dst::Mem;
  Reg dst_reg = Reg::None;
  // Displacements and immediates of x86-64 stack forms are at most 32 bits (sign-extended); objtool keeps
  // them in an int too.
  int32_t src_offset = 0;
  int32_t dst_offset = 0;
  bool operator==(const StackOp&) const = default;
};
inline constexpr int kMaxStackOps = 3;  // `enter`; every other instruction has at most two

// One decoded instruction, kept small: a large object holds millions of them (docs/design.md, "Memory").
// Its stack operations live beside it (DecodedInsn from the decoder, DecodedObject::stack_ops once decoded).
// Offsets are section offsets; check_object refuses code sections of 4 GiB or more.
struct Insn {
  uint32_t offset = 0;       // section offset of the first byte
  int32_t displacement = 0;  // direct branch (has_target): the target is end() + displacement
  uint8_t length = 0;
  InsnKind kind = InsnKind::Other;
  bool has_target : 1 = false;     // direct jump/call: target() is valid
  bool is_iret : 1 = false;        // iretq: inside an STT_FUNC it is sync_core()'s iret-to-self (pops 40 bytes)
  bool is_syscall : 1 = false;     // syscall: the metadata records it for tasks stopped inside a system call
  bool is_far_return : 1 = false;  // lret: head_64.S's idle-task marker is the address after one
  bool zeroes_bp : 1 = false;      // xor %ebp,%ebp / mov $0,%ebp / mov $0,%rbp / and $0,%ebp: rbp known 0
  bool notrack : 1 = false;        // an indirect call/jump with the notrack (3e) prefix: objtool warns about it
  uint8_t op_count : 2 = 0;        // how many StackOps (at most kMaxStackOps)
  // erets/eretu (FRED's returns, Linux 6.9+): a context switch to objtool 6.9+, a clac to 6.1's decoder, which
  // predates them (DecodedObject applies the kernel's reading once the object's format is known).
  bool is_eret : 1 = false;
  Reg copy_src = Reg::None;  // mov %copy_src,%copy_dst, both 64-bit registers: dst now holds src's value
  Reg copy_dst = Reg::None;
  // General-purpose registers the instruction writes, explicitly or implicitly (bit i = Reg(i)); used to
  // see rbp clobbered by instructions the StackOps do not describe.
  uint16_t written_regs = 0;

  bool writes(Reg r) const { return r != Reg::None && (written_regs >> static_cast<int>(r)) & 1; }
  uint64_t end() const { return uint64_t{offset} + length; }
  // Section offset of a direct branch's target (wraps like the CPU's arithmetic when it lies before 0).
  uint64_t target() const { return end() + static_cast<uint64_t>(int64_t{displacement}); }
};
static_assert(sizeof(Insn) == 16, "an Insn is 16 bytes: millions of them are kept");

// What the decoder returns: the instruction and its stack operations.
struct DecodedInsn : Insn {
  std::array<StackOp, kMaxStackOps> ops{};
};

}  // namespace framecert

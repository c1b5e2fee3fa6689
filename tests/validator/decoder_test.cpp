// Decoder tests: byte encodings (assembled with GNU as, copied from objdump -d) against the kind and stack
// operations objtool 6.1's x86 decoder assigns to them, plus the framecert extras (written registers,
// rbp-zeroing idioms, branch targets) and robustness against truncated/invalid input.
#include "validator/decoder.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <initializer_list>
#include <iterator>
#include <optional>
#include <ostream>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <elf.h>

#include "validator/idle_marker.h"

namespace framecert {

// Readable failure output.
void PrintTo(const StackOp& op, std::ostream* os) {
  *os << "{src " << static_cast<int>(op.src) << " " << reg_name(op.src_reg) << " " << op.src_offset << " -> dst "
      << static_cast<int>(op.dst) << " " << reg_name(op.dst_reg) << " " << op.dst_offset << "}";
}

namespace {

using Src = StackOp::Src;
using Dst = StackOp::Dst;
using K = InsnKind;

constexpr uint64_t kOffset = 0x100;

StackOp op(Src src, Reg src_reg, int32_t src_off, Dst dst, Reg dst_reg = Reg::None, int32_t dst_off = 0) {
  return StackOp{src, src_reg, dst, dst_reg, src_off, dst_off};
}
StackOp push_reg(Reg r) { return op(Src::Reg, r, 0, Dst::Push); }
StackOp push_const() { return op(Src::Const, Reg::None, 0, Dst::Push); }
StackOp pop_reg(Reg r) { return op(Src::Pop, Reg::None, 0, Dst::Reg, r); }
StackOp pop_mem() { return op(Src::Pop, Reg::None, 0, Dst::Mem); }
StackOp mov(Reg a, Reg b) { return op(Src::Reg, a, 0, Dst::Reg, b); }
StackOp add_sp(int64_t imm) { return op(Src::Add, Reg::Sp, imm, Dst::Reg, Reg::Sp); }
StackOp store(Reg a, Reg base, int64_t d) { return op(Src::Reg, a, 0, Dst::RegIndirect, base, d); }
StackOp load(Reg base, int64_t d, Reg b) { return op(Src::RegIndirect, base, d, Dst::Reg, b); }
StackOp lea(Reg a, int64_t d, Reg b) { return op(Src::Add, a, d, Dst::Reg, b); }

struct Case {
  const char* name;
  std::vector<uint8_t> bytes;
  InsnKind kind;
  std::vector<StackOp> ops;
};

std::ostream& operator<<(std::ostream& os, const Case& c) { return os << c.name; }

std::vector<Case> cases() {
  using enum Reg;
  return {
      // --- StackOp table: push / pop ---
      {"push %rbp", {0x55}, K::Other, {push_reg(Bp)}},
      {"push %r12", {0x41, 0x54}, K::Other, {push_reg(R12)}},
      {"push %ax (16-bit, objtool still a push)", {0x66, 0x50}, K::Other, {push_reg(Ax)}},
      {"push $1", {0x6a, 0x01}, K::Other, {push_const()}},
      {"push $0x12345", {0x68, 0x45, 0x23, 0x01, 0x00}, K::Other, {push_const()}},
      {"pushq 8(%rsp)", {0xff, 0x74, 0x24, 0x08}, K::Other, {push_const()}},
      {"push %fs", {0x0f, 0xa0}, K::Other, {push_const()}},
      {"push %gs", {0x0f, 0xa8}, K::Other, {push_const()}},
      {"pushfq", {0x9c}, K::Other, {op(Src::Const, None, 0, Dst::PushF)}},
      {"pop %rbx", {0x5b}, K::Other, {pop_reg(Bx)}},
      {"pop %r15", {0x41, 0x5f}, K::Other, {pop_reg(R15)}},
      {"popq 8(%rsp)", {0x8f, 0x44, 0x24, 0x08}, K::Other, {pop_mem()}},
      {"8f c0 (pop %rax via ModRM: objtool says mem)", {0x8f, 0xc0}, K::Other, {pop_mem()}},
      {"pop %fs", {0x0f, 0xa1}, K::Other, {pop_mem()}},
      {"pop %gs", {0x0f, 0xa9}, K::Other, {pop_mem()}},
      {"popfq", {0x9d}, K::Other, {op(Src::PopF, None, 0, Dst::Mem)}},
      // --- register moves ---
      {"mov %rsp,%rbp", {0x48, 0x89, 0xe5}, K::Other, {mov(Sp, Bp)}},
      {"mov %rbp,%rsp", {0x48, 0x89, 0xec}, K::Other, {mov(Bp, Sp)}},
      {"mov %rsp,%rsp", {0x48, 0x89, 0xe4}, K::Other, {mov(Sp, Sp)}},
      {"mov %esp,%ebp (not 64-bit)", {0x89, 0xe5}, K::Other, {}},
      {"mov %rax,%rbx (no rsp)", {0x48, 0x89, 0xc3}, K::Other, {}},
      {"mov %rsp,%rbp in the 8b form (objtool: loads only)", {0x48, 0x8b, 0xec}, K::Other, {}},
      {"mov %rbp,%rsp in the 8b form", {0x48, 0x8b, 0xe5}, K::Other, {}},
      // --- add/sub/and on rsp ---
      {"add $8,%rsp", {0x48, 0x83, 0xc4, 0x08}, K::Other, {add_sp(8)}},
      {"add $0x1000,%rsp", {0x48, 0x81, 0xc4, 0x00, 0x10, 0x00, 0x00}, K::Other, {add_sp(0x1000)}},
      {"sub $8,%rsp", {0x48, 0x83, 0xec, 0x08}, K::Other, {add_sp(-8)}},
      {"sub $0x1000,%rsp", {0x48, 0x81, 0xec, 0x00, 0x10, 0x00, 0x00}, K::Other, {add_sp(-0x1000)}},
      {"sub $-8,%rsp (imm8 sign-extended)", {0x48, 0x83, 0xec, 0xf8}, K::Other, {add_sp(8)}},
      {"sub $0x80,%rsp (imm32)", {0x48, 0x81, 0xec, 0x80, 0x00, 0x00, 0x00}, K::Other, {add_sp(-0x80)}},
      {"sub $-0x80000000,%rsp (int wrap)", {0x48, 0x81, 0xec, 0x00, 0x00, 0x00, 0x80}, K::Other, {add_sp(INT32_MIN)}},
      {"rex.W sub $8,%spl (objtool: opcode 80 counts)", {0x48, 0x80, 0xec, 0x08}, K::Other, {add_sp(-8)}},
      {"and $-16,%rsp", {0x48, 0x83, 0xe4, 0xf0}, K::Other, {op(Src::And, Sp, -16, Dst::Reg, Sp)}},
      {"and $-256,%rsp (imm32)",
       {0x48, 0x81, 0xe4, 0x00, 0xff, 0xff, 0xff},
       K::Other,
       {op(Src::And, Sp, -256, Dst::Reg, Sp)}},
      {"and $-16,%esp (not 64-bit)", {0x83, 0xe4, 0xf0}, K::Other, {}},
      {"or $8,%rsp (not add/sub/and)", {0x48, 0x83, 0xcc, 0x08}, K::Other, {}},
      {"add $8,%rax (not rsp)", {0x48, 0x83, 0xc0, 0x08}, K::Other, {}},
      {"add %rax,%rsp", {0x48, 0x01, 0xc4}, K::Other, {op(Src::Add, Ax, 0, Dst::Reg, Sp)}},
      {"sub %rcx,%rsp", {0x48, 0x29, 0xcc}, K::Other, {op(Src::Add, Cx, 0, Dst::Reg, Sp)}},
      {"add %eax,%esp (not 64-bit)", {0x01, 0xc4}, K::Other, {}},
      {"add %rsp,%rax (rsp is the source)", {0x48, 0x01, 0xe0}, K::Other, {}},
      // --- lea ---
      {"lea 8(%rsp),%rbp", {0x48, 0x8d, 0x6c, 0x24, 0x08}, K::Other, {lea(Sp, 8, Bp)}},
      {"lea -16(%rbp),%rsp", {0x48, 0x8d, 0x65, 0xf0}, K::Other, {lea(Bp, -16, Sp)}},
      {"lea (%rsp),%rbp (zero disp is a copy)", {0x48, 0x8d, 0x2c, 0x24}, K::Other, {mov(Sp, Bp)}},
      {"lea 0(%rbp),%rsp (disp8 of zero)", {0x48, 0x8d, 0x65, 0x00}, K::Other, {mov(Bp, Sp)}},
      {"lea 0x10(%r10),%rsp", {0x49, 0x8d, 0x62, 0x10}, K::Other, {lea(R10, 0x10, Sp)}},
      {"lea 8(%rsp,%rax,8),%rbp (SIB index)", {0x48, 0x8d, 0x6c, 0xc4, 0x08}, K::Other, {}},
      {"lea (%rsp,%r12,1),%rbp (REX.X index)", {0x4a, 0x8d, 0x2c, 0x24}, K::Other, {}},
      {"lea 8(%rsp),%r12", {0x4c, 0x8d, 0x64, 0x24, 0x08}, K::Other, {lea(Sp, 8, R12)}},
      {"lea 0x10(%rip),%rax (RIP-relative)", {0x48, 0x8d, 0x05, 0x10, 0x00, 0x00, 0x00}, K::Other, {}},
      {"addr32 lea 8(%esp),%rbp (67 is not looked at)",
       {0x67, 0x48, 0x8d, 0x6c, 0x24, 0x08},
       K::Other,
       {lea(Sp, 8, Bp)}},
      {"lea 8(%rsp),%ebp (not 64-bit)", {0x8d, 0x6c, 0x24, 0x08}, K::Other, {}},
      // --- stores ---
      {"mov %rax,8(%rsp)", {0x48, 0x89, 0x44, 0x24, 0x08}, K::Other, {store(Ax, Sp, 8)}},
      {"mov %rbx,-8(%rbp)", {0x48, 0x89, 0x5d, 0xf8}, K::Other, {store(Bx, Bp, -8)}},
      {"mov %r12,8(%rsp)", {0x4c, 0x89, 0x64, 0x24, 0x08}, K::Other, {store(R12, Sp, 8)}},
      {"mov %rbx,(%rsp)", {0x48, 0x89, 0x1c, 0x24}, K::Other, {store(Bx, Sp, 0)}},
      {"mov %rbx,0(%rbp)", {0x48, 0x89, 0x5d, 0x00}, K::Other, {store(Bx, Bp, 0)}},
      {"mov %rax,8(%rsp,%rcx,1) (SIB index)", {0x48, 0x89, 0x44, 0x0c, 0x08}, K::Other, {}},
      {"mov %eax,8(%rsp) (not 64-bit)", {0x89, 0x44, 0x24, 0x08}, K::Other, {}},
      {"mov %rax,8(%r13) (r13 is not rbp)", {0x49, 0x89, 0x45, 0x08}, K::Other, {}},
      {"mov %rax,8(%r12) (r12 is not rsp)", {0x49, 0x89, 0x44, 0x24, 0x08}, K::Other, {}},
      {"mov %rax,(%r12)", {0x49, 0x89, 0x04, 0x24}, K::Other, {}},
      {"mov %rax,8(%rax) (other base)", {0x48, 0x89, 0x40, 0x08}, K::Other, {}},
      {"mov %rsp,8(%rax) (any base)", {0x48, 0x89, 0x60, 0x08}, K::Other, {store(Sp, Ax, 8)}},
      {"mov %rsp,8(%rsp)", {0x48, 0x89, 0x64, 0x24, 0x08}, K::Other, {store(Sp, Sp, 8)}},
      {"mov %rsp,(%r12)", {0x49, 0x89, 0x24, 0x24}, K::Other, {store(Sp, R12, 0)}},
      {"mov %rsp,0x10(%rip) (RIP-relative)", {0x48, 0x89, 0x25, 0x10, 0x00, 0x00, 0x00}, K::Other, {}},
      {"mov %rsp,8(%rax,%rbx,1) (SIB index)", {0x48, 0x89, 0x64, 0x18, 0x08}, K::Other, {}},
      {"mov %rsp,0x8 (SIB no-base reads as rbp to objtool)",
       {0x48, 0x89, 0x24, 0x25, 0x08, 0x00, 0x00, 0x00},
       K::Other,
       {store(Sp, Bp, 8)}},
      {"rex.W mov %al,8(%rsp) (88 with REX.W)", {0x48, 0x88, 0x44, 0x24, 0x08}, K::Other, {store(Ax, Sp, 8)}},
      // --- loads ---
      {"mov 8(%rsp),%rax", {0x48, 0x8b, 0x44, 0x24, 0x08}, K::Other, {load(Sp, 8, Ax)}},
      {"mov -8(%rbp),%rbx", {0x48, 0x8b, 0x5d, 0xf8}, K::Other, {load(Bp, -8, Bx)}},
      {"mov (%rsp),%rax", {0x48, 0x8b, 0x04, 0x24}, K::Other, {load(Sp, 0, Ax)}},
      {"mov 8(%rbp,%riz,1),%rax (trivial SIB)", {0x48, 0x8b, 0x44, 0x25, 0x08}, K::Other, {load(Bp, 8, Ax)}},
      {"mov 8(%rsp,%r12,1),%rax (REX.X index)", {0x4a, 0x8b, 0x44, 0x24, 0x08}, K::Other, {}},
      {"mov 8(%rsp),%eax (not 64-bit)", {0x8b, 0x44, 0x24, 0x08}, K::Other, {}},
      {"mov 8(%rax),%rbx (other base)", {0x48, 0x8b, 0x58, 0x08}, K::Other, {}},
      {"mov 8(%rsp,%rax,1),%rbx (SIB index)", {0x48, 0x8b, 0x5c, 0x04, 0x08}, K::Other, {}},
      {"mov 0x8,%rax (SIB no-base reads as rbp to objtool)",
       {0x48, 0x8b, 0x04, 0x25, 0x08, 0x00, 0x00, 0x00},
       K::Other,
       {load(Bp, 8, Ax)}},
      // --- leave / call ---
      {"leave", {0xc9}, K::Other, {mov(Bp, Sp), pop_reg(Bp)}},
      // --- enter (framecert's own: objtool 6.1 gives it no stack ops) ---
      {"enter $0x20,$0", {0xc8, 0x20, 0x00, 0x00}, K::Other, {push_reg(Bp), mov(Sp, Bp), add_sp(-0x20)}},
      {"enter $0x8000,$0 (size unsigned)",
       {0xc8, 0x00, 0x80, 0x00},
       K::Other,
       {push_reg(Bp), mov(Sp, Bp), add_sp(-0x8000)}},
      {"enter $0,$0", {0xc8, 0x00, 0x00, 0x00}, K::Other, {push_reg(Bp), mov(Sp, Bp)}},
      {"enter $0x10,$1 (nesting: not modelled)", {0xc8, 0x10, 0x00, 0x01}, K::Other, {}},
      {"enter $0x10,$32 (level 0 modulo 32, but not encoded 0)", {0xc8, 0x10, 0x00, 0x20}, K::Other, {}},
      {"enterw $0x10,$0 (16-bit pushes)", {0x66, 0xc8, 0x10, 0x00, 0x00}, K::Other, {}},
      {"call rel32", {0xe8, 0xfb, 0x00, 0x00, 0x00}, K::Call, {push_const()}},
      {"data16 call rel32 (66 ignored in 64-bit mode)", {0x66, 0xe8, 0x00, 0x00, 0x00, 0x00}, K::Call, {push_const()}},
      // --- kinds ---
      {"call *%rax", {0xff, 0xd0}, K::CallIndirect, {}},
      {"call *8(%rax)", {0xff, 0x50, 0x08}, K::CallIndirect, {}},
      {"call *%r11", {0x41, 0xff, 0xd3}, K::CallIndirect, {}},
      {"lcall *(%rax)", {0xff, 0x18}, K::CallIndirect, {}},
      {"rex.WR call *%rax (REX.R spoils the group)", {0x4c, 0xff, 0xd0}, K::Other, {}},
      {"jmp *%rax", {0xff, 0xe0}, K::JumpIndirect, {}},
      {"jmp *8(%rax)", {0xff, 0x60, 0x08}, K::JumpIndirect, {}},
      {"notrack jmp *%rax", {0x3e, 0xff, 0xe0}, K::JumpIndirect, {}},
      {"ljmp *(%rax)", {0xff, 0x28}, K::ContextSwitch, {}},
      {"ret", {0xc3}, K::Return, {}},
      {"ret $8", {0xc2, 0x08, 0x00}, K::Return, {}},
      {"lretq", {0x48, 0xcb}, K::ContextSwitch, {}},
      {"lret $8", {0xca, 0x08, 0x00}, K::ContextSwitch, {}},
      {"syscall", {0x0f, 0x05}, K::ContextSwitch, {}},
      {"sysretq", {0x48, 0x0f, 0x07}, K::ContextSwitch, {}},
      {"sysenter", {0x0f, 0x34}, K::ContextSwitch, {}},
      {"sysexitq", {0x48, 0x0f, 0x35}, K::ContextSwitch, {}},
      {"ud2", {0x0f, 0x0b}, K::Bug, {}},
      {"ud1 %eax,%eax", {0x0f, 0xb9, 0xc0}, K::Bug, {}},
      {"int3", {0xcc}, K::Trap, {}},
      {"int $3 (not int3)", {0xcd, 0x03}, K::Other, {}},
      {"nop", {0x90}, K::Nop, {}},
      {"nopl (%rax)", {0x0f, 0x1f, 0x00}, K::Nop, {}},
      {"nopw 0(%rax,%rax,1)", {0x66, 0x0f, 0x1f, 0x04, 0x00}, K::Nop, {}},
      {"xchg %ax,%ax (66 90)", {0x66, 0x90}, K::Nop, {}},
      {"pause (f3 90)", {0xf3, 0x90}, K::Nop, {}},
      {"xchg %eax,%r8d (41 90)", {0x41, 0x90}, K::Nop, {}},
      {"prefetchw (%rax) (0f 0d)", {0x0f, 0x0d, 0x08}, K::Nop, {}},
      {"0f 0d c0 (register form)", {0x0f, 0x0d, 0xc0}, K::Nop, {}},
      {"0f 18 c0 (other hint nop space: not objtool's nop)", {0x0f, 0x18, 0xc0}, K::Other, {}},
      {"endbr64", {0xf3, 0x0f, 0x1e, 0xfa}, K::Endbr, {}},
      {"endbr32", {0xf3, 0x0f, 0x1e, 0xfb}, K::Endbr, {}},
      {"f3 rex.W 0f 1e fa (REX does not matter)", {0xf3, 0x48, 0x0f, 0x1e, 0xfa}, K::Endbr, {}},
      {"f3 66 0f 1e fa (f3 first)", {0xf3, 0x66, 0x0f, 0x1e, 0xfa}, K::Endbr, {}},
      {"66 f3 0f 1e fa (66 first)", {0x66, 0xf3, 0x0f, 0x1e, 0xfa}, K::Other, {}},
      {"66 0f 1e fa (no f3)", {0x66, 0x0f, 0x1e, 0xfa}, K::Other, {}},
      {"clac", {0x0f, 0x01, 0xca}, K::Clac, {}},
      {"stac", {0x0f, 0x01, 0xcb}, K::Stac, {}},
      {"std", {0xfd}, K::Std, {}},
      {"cld", {0xfc}, K::Cld, {}},
      {"cpuid", {0x0f, 0xa2}, K::Other, {}},
      {"jmp rel8", {0xeb, 0xf9}, K::Jump, {}},
      {"jmp rel32", {0xe9, 0x2c, 0xff, 0xff, 0xff}, K::Jump, {}},
      {"je rel8", {0x74, 0x13}, K::JumpConditional, {}},
      {"jne rel32", {0x0f, 0x85, 0x24, 0xff, 0xff, 0xff}, K::JumpConditional, {}},
      {"jrcxz", {0xe3, 0x0b}, K::JumpConditional, {}},
      {"loop", {0xe2, 0x09}, K::JumpConditional, {}},
      {"loope", {0xe1, 0x07}, K::JumpConditional, {}},
      {"loopne", {0xe0, 0x05}, K::JumpConditional, {}},
      // --- VEX: ignored by objtool even when it touches the stack ---
      {"vmovdqu %ymm0,(%rsp)", {0xc5, 0xfe, 0x7f, 0x04, 0x24}, K::Other, {}},
      {"vzeroupper", {0xc5, 0xf8, 0x77}, K::Other, {}},
      {"EVEX vmovdqu64 %zmm0,(%rsp)", {0x62, 0xf1, 0xfe, 0x48, 0x7f, 0x04, 0x24}, K::Other, {}},
  };
}

class DecoderTable : public ::testing::TestWithParam<Case> {
 protected:
  static const Decoder& decoder() {
    static const Decoder d;
    return d;
  }
};

TEST_P(DecoderTable, KindAndStackOps) {
  const Case& c = GetParam();
  const auto insn = decoder().decode(c.bytes, kOffset);
  ASSERT_TRUE(insn.has_value()) << c.name;
  EXPECT_EQ(insn->offset, kOffset);
  EXPECT_EQ(insn->length, c.bytes.size());
  EXPECT_EQ(insn->kind, c.kind) << kind_name(insn->kind) << " vs " << kind_name(c.kind);
  std::vector<StackOp> got(insn->ops.begin(), insn->ops.begin() + insn->op_count);
  EXPECT_EQ(got, c.ops);
  EXPECT_EQ(insn->is_iret, false);
}

std::string case_test_name(const ::testing::TestParamInfo<Case>& info) {
  std::string out = std::to_string(info.index) + "_";
  for (const char ch : std::string(info.param.name)) {
    if (std::isalnum(static_cast<unsigned char>(ch)))
      out += ch;
    else if (out.back() != '_')
      out += '_';
  }
  while (out.back() == '_') out.pop_back();
  return out;
}

INSTANTIATE_TEST_SUITE_P(Objtool, DecoderTable, ::testing::ValuesIn(cases()), case_test_name);

// --- targeted tests ---

const Decoder& shared_decoder() {
  static const Decoder d;
  return d;
}

std::optional<DecodedInsn> dec(std::initializer_list<uint8_t> bytes, uint32_t offset = kOffset) {
  const std::vector<uint8_t> v(bytes);
  return shared_decoder().decode(v, offset);
}

TEST(DecoderIret, IretqAndIretdAreContextSwitchesFlaggedIret) {
  for (const auto& bytes : {std::vector<uint8_t>{0x48, 0xcf}, std::vector<uint8_t>{0xcf}}) {
    const auto insn = shared_decoder().decode(bytes, 0);
    ASSERT_TRUE(insn);
    EXPECT_EQ(insn->kind, K::ContextSwitch);
    EXPECT_TRUE(insn->is_iret);
    EXPECT_EQ(insn->op_count, 0);
    EXPECT_EQ(insn->length, bytes.size());
  }
}

// LKGS (Linux 6.6+'s load_gs_index on CPUs that have it), unknown to Zydis 4.0: decoded by hand, length
// only. Encodings from GNU as 2.40 (`lkgs %di`, `lkgs (%rsp)`, `lkgs 0x12345678(%rax)`, `lkgs %r8w`).
TEST(DecoderNewer, LkgsIsAPlainInstructionOfItsLength) {
  const std::vector<std::vector<uint8_t>> encodings = {{0xf2, 0x0f, 0x00, 0xf7},
                                                       {0xf2, 0x0f, 0x00, 0x34, 0x24},
                                                       {0xf2, 0x0f, 0x00, 0xb0, 0x78, 0x56, 0x34, 0x12},
                                                       {0xf2, 0x41, 0x0f, 0x00, 0xf0}};
  for (const auto& bytes : encodings) {
    std::vector<uint8_t> code = bytes;
    code.push_back(0xc3);  // ret after it: the count must step over the whole instruction
    const auto insn = shared_decoder().decode(code, 0);
    ASSERT_TRUE(insn);
    EXPECT_EQ(insn->length, bytes.size());
    EXPECT_EQ(insn->kind, K::Other);
    EXPECT_EQ(insn->op_count, 0);
    EXPECT_EQ(shared_decoder().count_run(code, 0, code.size(), 0).count, 2u);
    // Cut short: not an instruction.
    EXPECT_FALSE(shared_decoder().decode(std::span<const uint8_t>(bytes).first(bytes.size() - 1), 0));
  }
}

// FRED's ERETS (f2 0f 01 ca) and ERETU (f3 0f 01 ca), unknown to Zydis 4.0: 4-byte context switches (the
// kernel's reading is applied later, per format); clac, the same bytes without the prefix, stays clac.
TEST(DecoderNewer, EretsAndEretuAreContextSwitches) {
  for (uint8_t prefix : {0xf2, 0xf3}) {
    const std::vector<uint8_t> code = {prefix, 0x0f, 0x01, 0xca, 0xc3};
    const auto insn = shared_decoder().decode(code, 0);
    ASSERT_TRUE(insn);
    EXPECT_EQ(insn->length, 4);
    EXPECT_EQ(insn->kind, K::ContextSwitch);
    EXPECT_TRUE(insn->is_eret);
    EXPECT_FALSE(insn->is_iret);
    EXPECT_EQ(shared_decoder().count_run(code, 0, code.size(), 0).count, 2u);
  }
  const std::vector<uint8_t> clac = {0x0f, 0x01, 0xca};
  const auto insn = shared_decoder().decode(clac, 0);
  ASSERT_TRUE(insn);
  EXPECT_EQ(insn->kind, K::Clac);
  EXPECT_FALSE(insn->is_eret);
}

TEST(DecoderTargets, DirectBranches) {
  struct T {
    std::vector<uint8_t> bytes;
    uint64_t offset;
    uint64_t target;
  };
  // Offsets/targets from `objdump -d` of a small test object.
  const std::vector<T> ts = {
      {{0xe9, 0xe4, 0x00, 0x00, 0x00}, 0x0, 0xe9},        // jmp rel32 forward
      {{0xeb, 0xf9}, 0x5, 0x0},                           // jmp rel8 backward
      {{0xe9, 0x2c, 0xff, 0xff, 0xff}, 0xcf, 0x0},        // jmp rel32 backward
      {{0x74, 0x13}, 0xd4, 0xe9},                         // je rel8
      {{0x0f, 0x85, 0x24, 0xff, 0xff, 0xff}, 0xd6, 0x0},  // jne rel32 backward
      {{0xe3, 0x0b}, 0xdc, 0xe9},                         // jrcxz
      {{0xe2, 0x09}, 0xde, 0xe9},                         // loop
      {{0xe1, 0x07}, 0xe0, 0xe9},                         // loope
      {{0xe0, 0x05}, 0xe2, 0xe9},                         // loopne
      {{0xe8, 0x17, 0xff, 0xff, 0xff}, 0xe4, 0x0},        // call rel32 backward
  };
  for (const T& t : ts) {
    const auto insn = shared_decoder().decode(t.bytes, t.offset);
    ASSERT_TRUE(insn);
    EXPECT_TRUE(insn->has_target) << t.offset;
    EXPECT_EQ(insn->target(), t.target) << t.offset;
  }
}

TEST(DecoderTargets, IndirectAndNonBranchesHaveNoTarget) {
  for (const auto& bytes : {std::vector<uint8_t>{0xff, 0xd0}, std::vector<uint8_t>{0xff, 0xe0},
                            std::vector<uint8_t>{0xc3}, std::vector<uint8_t>{0x6a, 0x01}}) {
    const auto insn = shared_decoder().decode(bytes, 0x40);
    ASSERT_TRUE(insn);
    EXPECT_FALSE(insn->has_target);
  }
}

uint16_t bits(std::initializer_list<Reg> regs) {
  uint16_t m = 0;
  for (const Reg r : regs) m = static_cast<uint16_t>(m | (1u << static_cast<unsigned>(r)));
  return m;
}

TEST(DecoderWrittenRegs, ExplicitAndImplicit) {
  using enum Reg;
  struct T {
    const char* name;
    std::vector<uint8_t> bytes;
    uint16_t mask;
  };
  const std::vector<T> ts = {
      {"mov %eax,%ebp", {0x89, 0xc5}, bits({Bp})},
      {"mov %rsp,%rbp", {0x48, 0x89, 0xe5}, bits({Bp})},
      {"xor %bp,%bp", {0x66, 0x31, 0xed}, bits({Bp})},
      {"mov %al,%bpl", {0x40, 0x88, 0xc5}, bits({Bp})},
      {"mov %ah,%bh", {0x88, 0xe7}, bits({Bx})},
      {"push %rbp", {0x55}, bits({Sp})},
      {"pop %rbp", {0x5d}, bits({Sp, Bp})},
      {"call rel32", {0xe8, 0x00, 0x00, 0x00, 0x00}, bits({Sp})},
      {"call *%rax", {0xff, 0xd0}, bits({Sp})},
      {"ret", {0xc3}, bits({Sp})},
      {"leave", {0xc9}, bits({Sp, Bp})},
      {"enter $0x20,$0", {0xc8, 0x20, 0x00, 0x00}, bits({Sp, Bp})},
      {"enter $0x10,$1", {0xc8, 0x10, 0x00, 0x01}, bits({Sp, Bp})},
      {"cpuid", {0x0f, 0xa2}, bits({Ax, Bx, Cx, Dx})},
      {"sub $8,%rsp", {0x48, 0x83, 0xec, 0x08}, bits({Sp})},
      {"mov %rax,8(%rsp) (memory store)", {0x48, 0x89, 0x44, 0x24, 0x08}, 0},
      {"xchg %r8,%rax", {0x49, 0x90}, bits({Ax, R8})},
      {"rep movsb", {0xf3, 0xa4}, bits({Cx, Si, Di})},
      {"syscall", {0x0f, 0x05}, bits({Cx, R11})},
      {"nop", {0x90}, 0},
      {"jmp rel8", {0xeb, 0x00}, 0},
      {"vmovq %xmm0,%rbp", {0xc4, 0xe1, 0xf9, 0x7e, 0xc5}, bits({Bp})},
  };
  for (const T& t : ts) {
    const auto insn = shared_decoder().decode(t.bytes, 0);
    ASSERT_TRUE(insn) << t.name;
    EXPECT_EQ(insn->written_regs, t.mask) << t.name;
  }
  const auto mov = dec({0x89, 0xc5});
  ASSERT_TRUE(mov);
  EXPECT_TRUE(mov->writes(Bp));
  EXPECT_FALSE(mov->writes(Ax));
  EXPECT_FALSE(mov->writes(None));
}

TEST(DecoderZeroesBp, Idioms) {
  struct T {
    const char* name;
    std::vector<uint8_t> bytes;
    bool zeroes;
  };
  const std::vector<T> ts = {
      {"xor %ebp,%ebp", {0x31, 0xed}, true},
      {"xor %ebp,%ebp (33 form)", {0x33, 0xed}, true},
      {"xor %rbp,%rbp", {0x48, 0x31, 0xed}, true},
      {"sub %ebp,%ebp", {0x29, 0xed}, true},
      {"sub %rbp,%rbp", {0x48, 0x29, 0xed}, true},
      {"mov $0,%ebp", {0xbd, 0x00, 0x00, 0x00, 0x00}, true},
      {"mov $0,%rbp", {0x48, 0xc7, 0xc5, 0x00, 0x00, 0x00, 0x00}, true},
      {"and $0,%ebp", {0x83, 0xe5, 0x00}, true},
      {"and $0,%rbp", {0x48, 0x83, 0xe5, 0x00}, true},
      {"xor %bp,%bp (16-bit leaves upper bits)", {0x66, 0x31, 0xed}, false},
      {"mov $1,%ebp", {0xbd, 0x01, 0x00, 0x00, 0x00}, false},
      {"mov %eax,%ebp", {0x89, 0xc5}, false},
      {"xor %r13d,%r13d", {0x45, 0x31, 0xed}, false},
      {"xor %eax,%ebp", {0x31, 0xc5}, false},
      {"and $1,%ebp", {0x83, 0xe5, 0x01}, false},
      {"inc %ebp", {0xff, 0xc5}, false},
  };
  for (const T& t : ts) {
    const auto insn = shared_decoder().decode(t.bytes, 0);
    ASSERT_TRUE(insn) << t.name;
    EXPECT_EQ(insn->zeroes_bp, t.zeroes) << t.name;
    EXPECT_EQ(insn->op_count, 0) << t.name;  // never a stack op
  }
}

TEST(DecoderRobustness, TruncatedInputIsRejected) {
  const std::vector<std::vector<uint8_t>> full = {
      {0x48, 0x81, 0xec, 0x00, 0x10, 0x00, 0x00},
      {0xe8, 0x00, 0x00, 0x00, 0x00},
      {0x0f, 0x85, 0x24, 0xff, 0xff, 0xff},
      {0xf3, 0x0f, 0x1e, 0xfa},
      {0x48, 0x89, 0x44, 0x24, 0x08},
  };
  for (const auto& bytes : full) {
    for (size_t n = 0; n < bytes.size(); ++n) {
      const std::span<const uint8_t> cut(bytes.data(), n);
      EXPECT_FALSE(shared_decoder().decode(cut, 0).has_value()) << "prefix of length " << n;
    }
    EXPECT_TRUE(shared_decoder().decode(bytes, 0).has_value());
  }
}

TEST(DecoderRobustness, InvalidBytesAreRejected) {
  EXPECT_FALSE(dec({0x06}));              // push %es: invalid in 64-bit mode
  EXPECT_FALSE(dec({0x0f, 0xff}));        // ud0 without its ModRM
  EXPECT_FALSE(dec({0xd6}));              // salc: invalid in 64-bit mode
  EXPECT_FALSE(dec({0xff, 0xff}));        // ff /7
  EXPECT_FALSE(dec({0x48, 0x8d, 0xc0}));  // lea with a register source
  std::vector<uint8_t> too_long(16, 0x66);
  too_long.push_back(0x90);
  EXPECT_FALSE(shared_decoder().decode(too_long, 0));  // more than 15 bytes
}

TEST(DecoderRobustness, OnlyOneInstructionIsConsumed) {
  const auto insn = dec({0x55, 0x48, 0x89, 0xe5});
  ASSERT_TRUE(insn);
  EXPECT_EQ(insn->length, 1);
  EXPECT_EQ(insn->end(), kOffset + 1);
}

TEST(DecoderThreads, SharedDecoderIsConstAndReentrant) {
  const Decoder& d = shared_decoder();
  const std::vector<uint8_t> bytes = {0x48, 0x83, 0xec, 0x08};
  const auto a = d.decode(bytes, 0);
  const auto b = d.decode(bytes, 0);
  ASSERT_TRUE(a && b);
  EXPECT_EQ(a->ops, b->ops);
}

// --- differential sweep against objdump on a real binary (lengths only: libc is not kernel code) ---

struct TextSection {
  std::vector<uint8_t> bytes;
  uint64_t addr = 0;
};

std::optional<TextSection> read_text_section(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  const std::vector<uint8_t> file((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (file.size() < sizeof(Elf64_Ehdr)) return std::nullopt;
  Elf64_Ehdr eh;
  std::memcpy(&eh, file.data(), sizeof eh);
  if (std::memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0 || eh.e_ident[EI_CLASS] != ELFCLASS64 ||
      eh.e_machine != EM_X86_64 || eh.e_shentsize != sizeof(Elf64_Shdr)) {
    return std::nullopt;
  }
  const auto shdr = [&](size_t i) {
    Elf64_Shdr sh{};
    const size_t at = eh.e_shoff + i * sizeof(Elf64_Shdr);
    if (at + sizeof sh <= file.size()) std::memcpy(&sh, file.data() + at, sizeof sh);
    return sh;
  };
  const Elf64_Shdr names = shdr(eh.e_shstrndx);
  for (size_t i = 0; i < eh.e_shnum; ++i) {
    const Elf64_Shdr sh = shdr(i);
    const size_t name_at = names.sh_offset + sh.sh_name;
    if (name_at + 6 > file.size() || std::memcmp(file.data() + name_at, ".text", 6) != 0) continue;
    if (sh.sh_offset + sh.sh_size > file.size()) return std::nullopt;
    TextSection t;
    t.addr = sh.sh_addr;
    t.bytes.assign(file.begin() + static_cast<std::ptrdiff_t>(sh.sh_offset),
                   file.begin() + static_cast<std::ptrdiff_t>(sh.sh_offset + sh.sh_size));
    return t;
  }
  return std::nullopt;
}

struct ObjdumpLine {
  uint64_t addr = 0;
  std::string text;  // "mnemonic operands", objdump's tabs/spaces collapsed to single spaces
};

// The instructions objdump reports for [start, stop).
std::vector<ObjdumpLine> objdump_lines(const std::string& path, uint64_t start, uint64_t stop) {
  char cmd[512];
  std::snprintf(cmd, sizeof cmd,
                "objdump -d --no-show-raw-insn -j .text --start-address=0x%llx --stop-address=0x%llx %s 2>/dev/null",
                static_cast<unsigned long long>(start), static_cast<unsigned long long>(stop), path.c_str());
  std::vector<ObjdumpLine> out;
  FILE* p = popen(cmd, "r");
  if (p == nullptr) return out;
  char line[1024];
  while (std::fgets(line, sizeof line, p) != nullptr) {
    // Instruction lines look like "   1a2b:\tmnemonic ..."; labels and headers do not.
    char* s = line;
    while (*s == ' ') ++s;
    char* end = nullptr;
    const unsigned long long addr = std::strtoull(s, &end, 16);
    if (end == s || end[0] != ':' || end[1] != '\t') continue;
    ObjdumpLine l;
    l.addr = addr;
    for (const char* c = end + 2; *c != '\0' && *c != '\n'; ++c) {
      const bool space = *c == ' ' || *c == '\t';
      if (!space)
        l.text += *c;
      else if (!l.text.empty() && l.text.back() != ' ')
        l.text += ' ';
    }
    out.push_back(std::move(l));
  }
  pclose(p);
  return out;
}

// A direct branch as objdump prints it: mnemonic, then the absolute target in hex.
std::optional<uint64_t> direct_target(const std::string& text) {
  const size_t sp = text.find(' ');
  if (sp == std::string::npos || sp + 1 >= text.size() || !std::isxdigit(static_cast<unsigned char>(text[sp + 1]))) {
    return std::nullopt;
  }
  return std::strtoull(text.c_str() + sp + 1, nullptr, 16);
}

bool starts_with(const std::string& s, std::string_view p) { return s.rfind(p, 0) == 0; }

// Cross-checks the kinds/targets/push-pop ops of common instructions against objdump's mnemonics.
void expect_agrees_with_mnemonic(const DecodedInsn& insn, const std::string& text) {
  const std::string mnem = text.substr(0, text.find(' '));
  const bool branch = mnem.size() >= 2 && (mnem[0] == 'j' || mnem == "call" || starts_with(mnem, "loop"));
  const auto target = branch ? direct_target(text) : std::nullopt;
  if (mnem == "jmp" && target) {
    EXPECT_EQ(insn.kind, K::Jump) << text;
  } else if (mnem == "call" && target) {
    EXPECT_EQ(insn.kind, K::Call) << text;
  } else if (mnem != "jmp" && mnem != "call" && target) {
    EXPECT_EQ(insn.kind, K::JumpConditional) << text;
  } else if (mnem == "ret") {
    EXPECT_EQ(insn.kind, K::Return) << text;
  } else if (mnem == "endbr64") {
    EXPECT_EQ(insn.kind, K::Endbr) << text;
  } else if (mnem == "push" && starts_with(text, "push %r")) {
    ASSERT_EQ(insn.op_count, 1) << text;
    EXPECT_EQ(insn.ops[0].src, Src::Reg) << text;
    EXPECT_EQ(std::string("%") + std::string(reg_name(insn.ops[0].src_reg)), text.substr(5)) << text;
  } else if (mnem == "pop" && starts_with(text, "pop %r")) {
    ASSERT_EQ(insn.op_count, 1) << text;
    EXPECT_EQ(std::string("%") + std::string(reg_name(insn.ops[0].dst_reg)), text.substr(4)) << text;
  }
  if (target) {
    EXPECT_TRUE(insn.has_target) << text;
    EXPECT_EQ(insn.target(), *target) << text;
  }
}

constexpr const char* kLibc = "/usr/lib/x86_64-linux-gnu/libc.so.6";

TEST(DecoderSweep, LibcTextDecodesLinearlyWithoutCrashing) {
  const auto text = read_text_section(kLibc);
  if (!text) GTEST_SKIP() << kLibc << " not available";
  size_t pos = 0, decoded = 0, failed = 0;
  while (pos < text->bytes.size()) {
    const auto insn = shared_decoder().decode(std::span(text->bytes).subspan(pos), text->addr + pos);
    if (!insn) {
      ++failed;
      ++pos;
      continue;
    }
    ASSERT_GT(insn->length, 0);
    ASSERT_LE(insn->length, 15);
    ASSERT_LE(insn->op_count, 3);
    pos += insn->length;
    ++decoded;
  }
  EXPECT_GT(decoded, 10000u);
  EXPECT_LT(failed * 1000, decoded) << "too many undecodable bytes in libc .text";
}

TEST(DecoderSweep, LibcAgreesWithObjdump) {
  const auto text = read_text_section(kLibc);
  if (!text) GTEST_SKIP() << kLibc << " not available";
  constexpr size_t kInsns = 2000;
  const uint64_t stop = text->addr + std::min<uint64_t>(text->bytes.size(), 16 * kInsns);
  const std::vector<ObjdumpLine> lines = objdump_lines(kLibc, text->addr, stop);
  if (lines.size() < kInsns + 1) GTEST_SKIP() << "objdump not available";
  for (size_t i = 0; i < kInsns; ++i) {
    const uint64_t addr = lines[i].addr;
    // Decode at the section-relative offset; objdump prints virtual addresses, so shift the target.
    const auto insn = shared_decoder().decode(std::span(text->bytes).subspan(addr - text->addr), addr);
    ASSERT_TRUE(insn) << std::hex << "at 0x" << addr << ": " << lines[i].text;
    ASSERT_EQ(insn->end(), lines[i + 1].addr) << std::hex << "at 0x" << addr << ": " << lines[i].text;
    expect_agrees_with_mnemonic(*insn, lines[i].text);
  }
}

TEST(InsnNames, RegAndKindNames) {
  EXPECT_EQ(reg_name(Reg::Ax), "rax");
  EXPECT_EQ(reg_name(Reg::Sp), "rsp");
  EXPECT_EQ(reg_name(Reg::Bp), "rbp");
  EXPECT_EQ(reg_name(Reg::R8), "r8");
  EXPECT_EQ(reg_name(Reg::R15), "r15");
  EXPECT_EQ(kind_name(InsnKind::Other), "other");
  EXPECT_EQ(kind_name(InsnKind::JumpConditional), "jump-conditional");
  EXPECT_EQ(kind_name(InsnKind::JumpIndirect), "jump-indirect");
  EXPECT_EQ(kind_name(InsnKind::CallIndirect), "call-indirect");
  EXPECT_EQ(kind_name(InsnKind::ContextSwitch), "context-switch");
  EXPECT_EQ(kind_name(InsnKind::Endbr), "endbr");
  EXPECT_EQ(kind_name(InsnKind::Cld), "cld");
}

// head_64.S's shape: xor %ebp,%ebp; pushq $marker; lretq; marker: ... The marker is the address after the
// lretq; a near ret, or bytes that do not decode, give no marker (never a guess).
TEST(IdleMarker, IsTheAddressAfterTheFirstFarReturn) {
  const std::vector<uint8_t> head = {0x31, 0xed, 0x68, 0x78, 0x56, 0x34, 0x12, 0x48, 0xcb, 0x90};
  auto marker = find_idle_end_marker(head, 0xffffffff81000100);
  ASSERT_TRUE(marker.has_value()) << marker.error();
  EXPECT_EQ(*marker, 0xffffffff81000109u);
  const std::vector<uint8_t> near_ret = {0x31, 0xed, 0xc3, 0x90};
  EXPECT_FALSE(find_idle_end_marker(near_ret, 0x1000).has_value());
  const std::vector<uint8_t> garbage = {0x31, 0xed, 0x0f, 0xff};
  EXPECT_FALSE(find_idle_end_marker(garbage, 0x1000).has_value());
}

// 6.9+'s common_startup_64 (bytes from the 6.12 guest's vmlinux): it first reloads CS with an lretq (rbp not
// zeroed: not the marker), later does `xor %ebp,%ebp; call *initial_code(%rip); ud2`: the marker is the
// address after that call. An indirect call with rbp not zeroed, or rbp written again after the xor, is not.
TEST(IdleMarker, IsTheAddressAfterTheEntryIntoCWithRbpZeroed) {
  const std::vector<uint8_t> head = {0x6a, 0x10,                                // push $__KERNEL_CS
                                     0x48, 0x8d, 0x05, 0x02, 0x00, 0x00, 0x00,  // lea 1f(%rip),%rax
                                     0x50, 0x48, 0xcb,                          // push %rax; lretq
                                     0x4c, 0x89, 0xff,                          // 1: mov %r15,%rdi
                                     0x31, 0xed,                                // xor %ebp,%ebp
                                     0xff, 0x15, 0x47, 0xd3, 0x8c, 0x00,        // call *0x8cd347(%rip)
                                     0x0f, 0x0b};                               // ud2
  auto marker = find_idle_end_marker(head, 0xffffffff810263e6);
  ASSERT_TRUE(marker.has_value()) << marker.error();
  EXPECT_EQ(*marker, 0xffffffff810263e6u + 23);
  const std::vector<uint8_t> no_xor = {0x4c, 0x89, 0xff, 0xff, 0x15, 0x47, 0xd3, 0x8c, 0x00, 0x0f, 0x0b};
  EXPECT_FALSE(find_idle_end_marker(no_xor, 0x1000).has_value());
  const std::vector<uint8_t> rewritten = {0x31, 0xed, 0x48, 0x89, 0xe5, 0xff, 0x15, 0x47, 0xd3, 0x8c, 0x00};
  EXPECT_FALSE(find_idle_end_marker(rewritten, 0x1000).has_value());  // mov %rsp,%rbp after the xor
}

}  // namespace
}  // namespace framecert

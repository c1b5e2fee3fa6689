// The plugin's own classifier on literal encodings (the assembly each one is, in AT&T syntax).
#include "harness/shadow/insn_class.h"

#include <gtest/gtest.h>

#include <initializer_list>
#include <vector>

namespace framecert::shadow {
namespace {

InsnKind classify(std::initializer_list<uint8_t> bytes) {
  const std::vector<uint8_t> v(bytes);
  return classify_insn(v.data(), v.size());
}

TEST(InsnClass, NearCalls) {
  EXPECT_EQ(classify({0xe8, 0x10, 0x20, 0x30, 0x40}), InsnKind::kNearCall);        // call rel32
  EXPECT_EQ(classify({0xff, 0xd0}), InsnKind::kNearCall);                          // call *%rax
  EXPECT_EQ(classify({0x41, 0xff, 0xd3}), InsnKind::kNearCall);                    // call *%r11
  EXPECT_EQ(classify({0xff, 0x15, 0x00, 0x10, 0x00, 0x00}), InsnKind::kNearCall);  // call *0x1000(%rip)
  EXPECT_EQ(classify({0xff, 0x50, 0x08}), InsnKind::kNearCall);                    // call *0x8(%rax)
  EXPECT_EQ(classify({0xff, 0x14, 0xc5, 0, 0, 0, 0}), InsnKind::kNearCall);        // call *0x0(,%rax,8)
  EXPECT_EQ(classify({0x2e, 0xe8, 0x10, 0x20, 0x30, 0x40}), InsnKind::kNearCall);  // cs call rel32
  EXPECT_EQ(classify({0x3e, 0xff, 0xd0}), InsnKind::kNearCall);                    // notrack call *%rax
  EXPECT_EQ(classify({0x66, 0x66, 0x2e, 0xe8, 0, 0, 0, 0}), InsnKind::kNearCall);  // data16 data16 cs call
}

TEST(InsnClass, NearRets) {
  EXPECT_EQ(classify({0xc3}), InsnKind::kNearRet);              // ret
  EXPECT_EQ(classify({0xc2, 0x08, 0x00}), InsnKind::kNearRet);  // ret $8
  EXPECT_EQ(classify({0xf3, 0xc3}), InsnKind::kNearRet);        // rep ret
  EXPECT_EQ(classify({0x48, 0xc3}), InsnKind::kNearRet);        // rex.W ret
  EXPECT_EQ(classify({0x48, 0x48, 0xc3}), InsnKind::kNearRet);  // rex.W rex.W ret (the first REX is ignored)
}

TEST(InsnClass, FarTransfersAndSystemInstructionsAreOther) {
  EXPECT_EQ(classify({0x48, 0xcb}), InsnKind::kOther);              // lretq
  EXPECT_EQ(classify({0xcb}), InsnKind::kOther);                    // lret
  EXPECT_EQ(classify({0xca, 0x08, 0x00}), InsnKind::kOther);        // lret $8
  EXPECT_EQ(classify({0x48, 0xcf}), InsnKind::kOther);              // iretq
  EXPECT_EQ(classify({0xff, 0x18}), InsnKind::kOther);              // lcall *(%rax)
  EXPECT_EQ(classify({0x48, 0xff, 0x1c, 0x24}), InsnKind::kOther);  // rex.W lcall *(%rsp)
  EXPECT_EQ(classify({0x0f, 0x05}), InsnKind::kOther);              // syscall
  EXPECT_EQ(classify({0x48, 0x0f, 0x07}), InsnKind::kOther);        // sysretq
}

TEST(InsnClass, JumpsAndOtherGroup5FormsAreOther) {
  EXPECT_EQ(classify({0xe9, 0x10, 0x20, 0x30, 0x40}), InsnKind::kOther);  // jmp rel32
  EXPECT_EQ(classify({0xeb, 0x10}), InsnKind::kOther);                    // jmp rel8
  EXPECT_EQ(classify({0xff, 0xe0}), InsnKind::kOther);                    // jmp *%rax
  EXPECT_EQ(classify({0x41, 0xff, 0xe3}), InsnKind::kOther);              // jmp *%r11
  EXPECT_EQ(classify({0xff, 0x28}), InsnKind::kOther);                    // ljmp *(%rax)
  EXPECT_EQ(classify({0xff, 0xc0}), InsnKind::kOther);                    // inc %eax
  EXPECT_EQ(classify({0xff, 0xc8}), InsnKind::kOther);                    // dec %eax
  EXPECT_EQ(classify({0xff, 0x30}), InsnKind::kOther);                    // push (%rax)
  EXPECT_EQ(classify({0x90}), InsnKind::kOther);                          // nop
  EXPECT_EQ(classify({0x0f, 0x1f, 0x44, 0x00, 0x00}), InsnKind::kOther);  // nopl 0x0(%rax,%rax,1)
}

TEST(InsnClass, TruncatedOrPrefixOnlyIsOther) {
  EXPECT_EQ(classify_insn(nullptr, 0), InsnKind::kOther);
  EXPECT_EQ(classify({0xff}), InsnKind::kOther);  // group 5 without its ModRM
  EXPECT_EQ(classify({0x41, 0xff}), InsnKind::kOther);
  EXPECT_EQ(classify({0x2e}), InsnKind::kOther);  // a prefix alone
  EXPECT_EQ(classify({0x48}), InsnKind::kOther);  // in 32-bit code a whole `dec %eax`, not a REX
}

}  // namespace
}  // namespace framecert::shadow

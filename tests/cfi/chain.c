/* A known call chain for the CFI oracle's tests (tests/cfi/cfi_test.cpp), compiled at build time with
   -g -fno-asynchronous-unwind-tables (so its CFI is .debug_frame, relocatable like a kernel module's) and
   -ffunction-sections (each function's section address is the function's address), once with
   -fno-omit-frame-pointer (PFX fp_) and once with -fomit-frame-pointer (PFX nofp_). Frames of different
   sizes, callee-saved registers live across calls, no inlining, no tail calls. */
#include "chain.h"

#define CAT2(a, b) a##b
#define CAT(a, b) CAT2(a, b)
#define F(name) CAT(PFX, name)
#define NOINLINE __attribute__((noinline, noipa))

NOINLINE int F(leaf)(struct fc_cfi_capture* cap) {
  uint64_t rip, rsp, rbp;
  /* rbp first: another output may be allocated to rbp under -fomit-frame-pointer. */
  __asm__ volatile("mov %%rbp, %2\n\tlea 0(%%rip), %0\n\tmov %%rsp, %1" : "=&r"(rip), "=&r"(rsp), "=&r"(rbp));
  cap->rip = rip;
  cap->rsp = rsp;
  cap->rbp = rbp;
  cap->ra[0] = (uint64_t)__builtin_return_address(0);
  cap->top = fc_cfi_saved_sp;
  size_t len = cap->top > rsp ? cap->top - rsp : 0;
  if (len > cap->stack_cap) len = 0;
  const volatile uint8_t* src = (const volatile uint8_t*)rsp;
  for (size_t i = 0; i < len; ++i) cap->stack[i] = src[i];
  cap->stack_len = len;
  return (int)len;
}

NOINLINE int F(inner)(struct fc_cfi_capture* cap, int k) {
  volatile char pad[40];
  pad[0] = (char)k;
  cap->ra[1] = (uint64_t)__builtin_return_address(0);
  int r = F(leaf)(cap);
  return r + pad[0] + k;
}

NOINLINE int F(mid)(struct fc_cfi_capture* cap, int k) {
  volatile long pad[37];
  pad[3] = k * 3;
  long a = k * 7, b = k ^ 5, c = k + 11;  /* live across the call: callee-saved registers */
  cap->ra[2] = (uint64_t)__builtin_return_address(0);
  int r = F(inner)(cap, k + 1);
  return (int)(r + a + b + c + pad[3]);
}

NOINLINE int F(top)(struct fc_cfi_capture* cap) {
  volatile int pad[3];
  pad[1] = 2;
  cap->ra[3] = (uint64_t)__builtin_return_address(0);
  int r = F(mid)(cap, pad[1]);
  return r + 1;
}

#ifdef WITH_NOCFI
/* An assembly function with a frame but no .cfi directives: no FDE covers it. */
__asm__(".pushsection .text.fc_cfi_nocfi,\"ax\",@progbits\n"
        ".globl fc_cfi_nocfi\n"
        ".type fc_cfi_nocfi,@function\n"
        "fc_cfi_nocfi:\n"
        "  push %rbp\n"
        "  mov %rsp, %rbp\n"
        "  call *%rsi\n"
        "  pop %rbp\n"
        "  ret\n"
        ".size fc_cfi_nocfi, .-fc_cfi_nocfi\n"
        ".popsection\n");

NOINLINE int F(top_nocfi)(struct fc_cfi_capture* cap) {
  cap->ra[3] = (uint64_t)__builtin_return_address(0);
  int r = fc_cfi_nocfi(cap, F(leaf));
  return r + 1;
}
#endif

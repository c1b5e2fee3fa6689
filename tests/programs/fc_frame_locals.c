// Issue 14: frames that keep their own frame address or return address in a local, in functions whose
// frame size is not fixed (a VLA), so the skipped-frame scans run over them. Both values are what the
// scans take for traces of a skipped frame record; the validator proves the stores (self slots) and the
// walk stays reliable. Freestanding (no libc): every frame on the stack is this file's.
//
//   _start -> fl_main -> fl_keeps_frame_address -> fl_keeps_return_address -> fl_wait (pauses forever)

__asm__(
    "  .text\n"
    "  .globl _start\n"
    "  .type _start, @function\n"
    "_start:\n"
    "  xorl %ebp, %ebp\n"
    "  call fl_main\n"
    "  movl $60, %eax\n"
    "  xorl %edi, %edi\n"
    "  syscall\n"
    "  ud2\n"
    "  .size _start, .-_start\n"
    // long fl_wait(char *buf, long n): writes "ready\n", then pauses forever. A frameless leaf.
    "  .globl fl_wait\n"
    "  .type fl_wait, @function\n"
    "fl_wait:\n"
    "  movl $1, %eax\n"
    "  movl $1, %edi\n"
    "  leaq fl_ready(%rip), %rsi\n"
    "  movl $6, %edx\n"
    "  syscall\n"
    "1:\n"
    "  movl $34, %eax\n"
    "  syscall\n"
    "  testq %rax, %rax\n"
    "  jnz 1b\n"
    "  ret\n"
    "  .size fl_wait, .-fl_wait\n"
    "  .section .rodata\n"
    "fl_ready:\n"
    "  .ascii \"ready\\n\"\n"
    "  .text\n");

long fl_wait(char* buf, long n);
long fl_main(void);

// _RET_IP_ kept in a local: the return address after fl_keeps_frame_address's call to this function.
__attribute__((noinline, noclone)) long fl_keeps_return_address(long n) {
  char buf[n];
  buf[0] = (char)n;
  volatile unsigned long ip = (unsigned long)__builtin_return_address(0);
  return fl_wait(buf, n) + (long)ip;
}

// __builtin_frame_address(0) kept in a local: a word in the frame that holds the frame's own address.
__attribute__((noinline, noclone)) long fl_keeps_frame_address(long n) {
  char buf[n];
  buf[0] = (char)n;
  void* volatile self = __builtin_frame_address(0);
  return fl_keeps_return_address(n + 1) + buf[0] + (self != 0);
}

long fl_main(void) { return fl_keeps_frame_address(24); }

/* fc_cfi_run(fn, cap): calls fn(cap) with rsp recorded in fc_cfi_saved_sp just before the call, so the
   CFA of fn (the end of the test stacks) is known without any CFI. */
  .text
  .globl fc_cfi_run
  .type fc_cfi_run, @function
fc_cfi_run:
  push %rbx
  mov %rsp, fc_cfi_saved_sp(%rip)
  mov %rdi, %rax
  mov %rsi, %rdi
  call *%rax
  pop %rbx
  ret
  .size fc_cfi_run, .-fc_cfi_run

  .bss
  .align 8
  .globl fc_cfi_saved_sp
fc_cfi_saved_sp:
  .zero 8

  .section .note.GNU-stack, "", @progbits

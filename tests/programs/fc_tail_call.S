# Issue 14: tail calls. tc_main calls tc_a; tc_a tears its frame down and jumps to tc_b (a sibling call),
# tc_b does the same to tc_leaf. The stack then holds tc_leaf's frame right under tc_main's: complete, since
# tc_a and tc_b are gone for good (their callees return straight to tc_main). The call before tc_main's
# return address calls tc_a, the frame below runs in tc_leaf: the validator's tail-call records (proven:
# each jump leaves with the frame torn down) show tc_a reaches tc_leaf.
# fc_tail_call_indirect (FC_TAIL_INDIRECT): tc_b's jump is indirect, nothing proves where it goes, and the
# walk keeps saying call-target-mismatch.
#
#   _start -> tc_main -> tc_a ~> tc_b ~> tc_leaf (writes "ready", pauses forever)   (~> a tail call)

        .text
        .globl  _start
        .type   _start, @function
_start:
        xorl    %ebp, %ebp
        call    tc_main
        movl    $60, %eax
        xorl    %edi, %edi
        syscall
        ud2
        .size   _start, .-_start

        .globl  tc_main
        .type   tc_main, @function
tc_main:
        pushq   %rbp
        movq    %rsp, %rbp
        call    tc_a
        popq    %rbp
        ret
        .size   tc_main, .-tc_main

        .globl  tc_a
        .type   tc_a, @function
tc_a:
        pushq   %rbp
        movq    %rsp, %rbp
        movl    $1, %edi
        popq    %rbp
        jmp     tc_b
        .size   tc_a, .-tc_a

        .globl  tc_b
        .type   tc_b, @function
tc_b:
        pushq   %rbp
        movq    %rsp, %rbp
        addl    $1, %edi
        popq    %rbp
#ifdef FC_TAIL_INDIRECT
        leaq    tc_leaf(%rip), %rax
        jmp     *%rax
#else
        jmp     tc_leaf
#endif
        .size   tc_b, .-tc_b

        .globl  tc_leaf
        .type   tc_leaf, @function
tc_leaf:
        pushq   %rbp
        movq    %rsp, %rbp
        movl    $1, %eax                # write(1, "ready\n", 6)
        movl    $1, %edi
        leaq    tc_ready(%rip), %rsi
        movl    $6, %edx
        syscall
1:      movl    $34, %eax               # pause(), forever (a path back keeps tc_leaf returning)
        syscall
        testq   %rax, %rax
        jnz     1b
        popq    %rbp
        ret
        .size   tc_leaf, .-tc_leaf

        .section .rodata
tc_ready:
        .ascii  "ready\n"

        .section .note.GNU-stack,"",@progbits

# Issue 14: a freestanding program whose frames are the two forms framecert models beyond objtool.
#  - _start is the ABI's outermost frame as glibc's own _start sets it up: rbp zeroed, rsp realigned with
#    `and $-16,%rsp` (no CFA rule survives it), then the call. A walk must end reliably there.
#  - es_main sets up its frame with `enter $16,$0`, which is push %rbp; mov %rsp,%rbp; sub $16,%rsp.
# fc_enter_nested (FC_ENTER_NESTED) uses `enter $16,$1` instead: a nesting level framecert does not model,
# so es_main's call counts as made without a frame and the walk is unreliable.
#
#   _start -> es_main -> es_leaf (writes "ready", pauses forever)

        .text
        .globl  _start
        .type   _start, @function
_start:
        xorl    %ebp, %ebp
        andq    $-16, %rsp
        call    es_main
        movl    $60, %eax
        xorl    %edi, %edi
        syscall
        ud2
        .size   _start, .-_start

        .globl  es_main
        .type   es_main, @function
es_main:
#ifdef FC_ENTER_NESTED
        enter   $16, $1
#else
        enter   $16, $0
#endif
        call    es_leaf
        leave
        ret
        .size   es_main, .-es_main

        .globl  es_leaf
        .type   es_leaf, @function
es_leaf:
        pushq   %rbp
        movq    %rsp, %rbp
        movl    $1, %eax                # write(1, "ready\n", 6)
        movl    $1, %edi
        leaq    es_ready(%rip), %rsi
        movl    $6, %edx
        syscall
1:      movl    $34, %eax               # pause(), forever: it never returns 0 (a path back keeps es_leaf
        syscall                         # returning, so es_main's leave is reachable code to the validator)
        testq   %rax, %rax
        jnz     1b
        popq    %rbp
        ret
        .size   es_leaf, .-es_leaf

        .section .rodata
es_ready:
        .ascii  "ready\n"

        .section .note.GNU-stack,"",@progbits

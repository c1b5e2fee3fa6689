# Two builds of one freestanding program with byte-identical layouts, for the mount-namespace test
# (tests/unwinder/namespace_test.cpp): fc_ns_frame sets up a frame in ns_mid; fc_ns_frame_nops (FC_NOFRAME)
# has nops in its place, so its ns_mid calls without a frame and a frame-pointer walk skips ns_top. A
# process in a private mount namespace runs the nops build at the path of the framed one: metadata read
# from the host's file at that path would vouch for a frame the running code never sets up.
#
#   _start -> ns_main -(indirect)-> ns_top -(indirect)-> ns_mid -> ns_leaf (writes "ready", pauses forever)
#
# The indirect calls keep the call-target check out of the way, and the framed ns_mid's `sub %rcx,%rsp`
# (rcx = 0) keeps its frame size unprovable: with the host's metadata, nothing but the metadata itself
# could tell the skipped ns_top.

        .text
        .globl  _start
        .type   _start, @function
_start:
        xorl    %ebp, %ebp
        call    ns_main
        movl    $60, %eax
        xorl    %edi, %edi
        syscall
        hlt
        .size   _start, .-_start

        .globl  ns_main
        .type   ns_main, @function
ns_main:
        pushq   %rbp
        movq    %rsp, %rbp
        leaq    ns_top(%rip), %rax
        call    *%rax
        popq    %rbp
        ret
        .size   ns_main, .-ns_main

        .globl  ns_top
        .type   ns_top, @function
ns_top:
        pushq   %rbp
        movq    %rsp, %rbp
        leaq    ns_mid(%rip), %rax
        call    *%rax
        popq    %rbp
        ret
        .size   ns_top, .-ns_top

        .globl  ns_mid
        .type   ns_mid, @function
ns_mid:
#ifdef FC_NOFRAME
        nop                             # was: push %rbp
        nopl    (%rax)                  # was: mov %rsp,%rbp
        xorl    %ecx, %ecx
        nopl    (%rax)                  # was: sub %rcx,%rsp
        call    ns_leaf
        nop                             # was: leave
        ret
#else
        pushq   %rbp
        movq    %rsp, %rbp
        xorl    %ecx, %ecx
        subq    %rcx, %rsp
        call    ns_leaf
        leave
        ret
#endif
        .size   ns_mid, .-ns_mid

        .globl  ns_leaf
        .type   ns_leaf, @function
ns_leaf:
        pushq   %rbp
        movq    %rsp, %rbp
        movl    $1, %eax                # write(1, "ready\n", 6)
        movl    $1, %edi
        leaq    ns_ready(%rip), %rsi
        movl    $6, %edx
        syscall
1:      movl    $34, %eax               # pause(), forever
        syscall
        jmp     1b
        .size   ns_leaf, .-ns_leaf

        .section .rodata
ns_ready:
        .ascii  "ready\n"

        .section .note.GNU-stack,"",@progbits

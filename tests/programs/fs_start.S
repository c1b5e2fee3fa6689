# Freestanding runtime for fs_threads: no libc. _start and the raw-clone thread entry zero rbp before their
# first call, the x86-64 ABI's outermost-frame marker; the unwinder must recognise exactly these ends.
# The CFI marks the same ends for libunwind (.cfi_undefined rip), so the oracle stops where we stop.

        .text

        .globl  _start
        .type   _start, @function
_start:
        .cfi_startproc
        .cfi_undefined rip
        xorl    %ebp, %ebp
        movq    %rsp, %rdi              # the ABI guarantees rsp % 16 == 0 here: no realignment needed
        call    fs_main
        movl    $60, %eax
        xorl    %edi, %edi
        syscall
        hlt
        .cfi_endproc
        .size   _start, .-_start

# long fs_clone(void (*fn)(long), void *stack_top, long arg): a thread sharing everything, on stack_top.
        .globl  fs_clone
        .type   fs_clone, @function
fs_clone:
        .cfi_startproc
        subq    $16, %rsi
        movq    %rdi, 0(%rsi)
        movq    %rdx, 8(%rsi)
        movl    $0x50f00, %edi          # CLONE_VM|FS|FILES|SIGHAND|THREAD|SYSVSEM
        xorl    %edx, %edx
        xorl    %r10d, %r10d
        xorl    %r8d, %r8d
        movl    $56, %eax               # SYS_clone
        syscall
        testq   %rax, %rax
        jz      fs_thread_entry
        ret
        .cfi_endproc
        .size   fs_clone, .-fs_clone

# The child of fs_clone starts here on its new stack, [rsp] = fn, [rsp+8] = arg: the outermost frame.
        .globl  fs_thread_entry
        .type   fs_thread_entry, @function
fs_thread_entry:
        .cfi_startproc
        .cfi_undefined rip
        xorl    %ebp, %ebp
        popq    %rax
        popq    %rdi
        call    *%rax
        movl    $60, %eax
        xorl    %edi, %edi
        syscall
        hlt
        .cfi_endproc
        .size   fs_thread_entry, .-fs_thread_entry

# Frameless leaves that block or spin: the thread is stopped inside them, with no frame of their own.
        .globl  fs_pause
        .type   fs_pause, @function
fs_pause:
        .cfi_startproc
        movl    $34, %eax               # SYS_pause
        syscall
        ret
        .cfi_endproc
        .size   fs_pause, .-fs_pause

        .globl  fs_spin
        .type   fs_spin, @function
fs_spin:
        .cfi_startproc
1:      lock incq fs_counter(%rip)
        jmp     1b
        .cfi_endproc
        .size   fs_spin, .-fs_spin

        .globl  fs_write
        .type   fs_write, @function
fs_write:                               # long fs_write(int fd, const void *buf, long len)
        .cfi_startproc
        movl    $1, %eax
        syscall
        ret
        .cfi_endproc
        .size   fs_write, .-fs_write

# The planted bug: a call without a frame. Its caller is lost to a bare frame-pointer walk.
        .globl  fs_asm_noframe
        .type   fs_asm_noframe, @function
fs_asm_noframe:
        .cfi_startproc
        subq    $8, %rsp
        .cfi_adjust_cfa_offset 8
        call    t3_inner
        addq    $8, %rsp
        .cfi_adjust_cfa_offset -8
        ret
        .cfi_endproc
        .size   fs_asm_noframe, .-fs_asm_noframe

# The same in assembly done right.
        .globl  fs_asm_framed
        .type   fs_asm_framed, @function
fs_asm_framed:
        .cfi_startproc
        pushq   %rbp
        .cfi_adjust_cfa_offset 8
        .cfi_offset rbp, -16
        movq    %rsp, %rbp
        .cfi_def_cfa_register rbp
        call    t5_inner
        popq    %rbp
        .cfi_def_cfa rsp, 8
        ret
        .cfi_endproc
        .size   fs_asm_framed, .-fs_asm_framed

        .section .note.GNU-stack,"",@progbits

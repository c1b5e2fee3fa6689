# A 64 KiB stand-in BIOS for `qemu-system-x86_64 -machine pc -bios guest_rom.bin`: the guest of the shadow
# plugin's end-to-end test. It leaves real mode for long mode, makes a known number of near calls and rets of
# every encoding the classifier must catch, first from user-half code on a user-half stack (invisible unless
# user=1), then from the kernel-half alias of the same code and stack, and halts in a known two-deep chain.
# tests/shadow/plugin_qemu_test.cpp holds the expected counts and entries; keep the two in step.
#
# Linked at 0; the image's last 64 KiB also appear at ROM below 1 MiB, where real mode runs it, and paging
# maps physical 0..2 MiB both at 0 and at HIGH (a kernel address, like the kernel's direct map).
        .set HIGH, 0xffff800000000000
        .set ROM, 0xf0000
        .set STACK_TOP, 0x80000         # physical; the kernel-half part uses HIGH + STACK_TOP
        .set LOOPS, 1000

        .text
        .code16
start16:
        cli
        xorw    %ax, %ax
        movw    %ax, %ds
        movw    %ax, %es
        movw    %ax, %ss
        movw    $0x7000, %sp
        lgdtl   %cs:gdt_desc
        movl    %cr0, %eax
        orl     $1, %eax                # PE
        movl    %eax, %cr0
        ljmpl   $0x08, $(pm32 + ROM)

        .code32
pm32:
        movw    $0x10, %ax
        movw    %ax, %ds
        movw    %ax, %es
        movw    %ax, %ss
        # Page tables at 0x1000 (PML4), 0x2000 (PDPT), 0x3000 (PD): one 2 MiB page of physical 0, reachable
        # through PML4 slot 0 (address 0) and slot 256 (HIGH).
        movl    $0x1000, %edi
        xorl    %eax, %eax
        movl    $(3 * 4096 / 4), %ecx
        rep stosl
        movl    $0x2003, 0x1000
        movl    $0x2003, 0x1000 + 256 * 8
        movl    $0x3003, 0x2000
        movl    $0x83, 0x3000           # present, writable, 2 MiB
        movl    $0x1000, %eax
        movl    %eax, %cr3
        movl    %cr4, %eax
        orl     $0x20, %eax             # PAE
        movl    %eax, %cr4
        movl    $0xc0000080, %ecx       # EFER
        rdmsr
        orl     $0x100, %eax            # LME
        wrmsr
        movl    %cr0, %eax
        orl     $0x80000000, %eax       # PG
        movl    %eax, %cr0
        ljmp    $0x18, $(lm64 + ROM)

        .code64
lm64:
        # User half: LOOPS calls and rets, all at slot STACK_TOP - 8.
        movq    $STACK_TOP, %rsp
        movl    $LOOPS, %ecx
1:      call    low_leaf
        decl    %ecx
        jnz     1b
        movabsq $(HIGH + ROM + high_entry), %rax
        jmp     *%rax
low_leaf:
        ret

high_entry:
        movabsq $(HIGH + STACK_TOP), %rsp
        # LOOPS times: five calls and five rets, every one matched; and three atomic read-modify-writes on
        # the stack, each right after a call or a ret, for which QEMU 7.2 replays that call's or ret's memory
        # callbacks (see harness/shadow/access_gate.h): the plugin must refuse all of them as stale.
        movl    $LOOPS, %ecx
2:      call    f1                      # e8 rel32
        lock incq -0x100(%rsp)          # after f1's ret
        decl    %ecx
        jnz     2b

        # One ret that no call matches (a jump through the stack): unmatched = 1.
        leaq    3f(%rip), %rax
        pushq   %rax
        ret
3:      # A call used as a push (RSB stuffing): its entry stays below rsp, until the call below lands on the
        # same slot and drops it: dropped = 1.
        call    4f
4:      addq    $8, %rsp
        jmp     final

f1:     leaq    f2(%rip), %rax
        call    *%rax                   # ff d0
        leaq    f2(%rip), %r11
        call    *%r11                   # 41 ff d3
        call    *f3_ptr(%rip)           # ff 15 disp32: loads the target, then pushes
        pushq   $0
        call    f4                      # f4 pops the pushed word too
        ret
f2:     lock incq -0x100(%rsp)          # after the call
        ret                             # c3
f3:     rep ret                         # f3 c3
f4:     ret     $8                      # c2 08 00

        .balign 8
f3_ptr: .quad   HIGH + ROM + f3

        # Final chain, at fixed offsets so the test knows the return addresses: HIGH + ROM + 0x2005 at slot
        # HIGH + STACK_TOP - 8, and HIGH + ROM + 0x2105 at HIGH + STACK_TOP - 16.
        .org    0x2000
final:  call    g1
        .org    0x2100
g1:     call    g2
g2:     cli
        hlt
        jmp     g2

        .balign 8
gdt:    .quad   0
        .quad   0x00cf9a000000ffff      # 0x08: 32-bit code, flat
        .quad   0x00cf92000000ffff      # 0x10: data, flat
        .quad   0x00af9a000000ffff      # 0x18: 64-bit code
gdt_end:
gdt_desc:
        .word   gdt_end - gdt - 1
        .long   gdt + ROM

        # The reset vector: CS base 0xffff0000, IP 0xfff0, i.e. this offset of the image at the top of 4 GiB.
        .org    0xfff0
        .code16
        ljmp    $0xf000, $start16
        .org    0xffff
        .byte   0

/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The two assembly frames of fctest.ko.  Both call the same sleeping C function; only one of them
 * builds a frame first.
 */
#include <linux/linkage.h>
#include <asm/frame.h>

	.text

/* Well-behaved: push %rbp; mov %rsp,%rbp around the call, so an FP walk sees this frame. */
SYM_FUNC_START(fc_asm_framed)
	FRAME_BEGIN
	call	fc_asm_sleep
	FRAME_END
	RET
SYM_FUNC_END(fc_asm_framed)

/*
 * The planted bug: a call with no frame set up.  %rbp still holds the *caller's* frame, so an FP walk
 * starting in fc_asm_sleep finds the return address into this function, then follows %rbp straight to
 * the caller's caller: fc_noframe_caller vanishes from the trace without any sign of it.  objtool
 * warns "call without frame pointer save/setup" here, on purpose.
 */
SYM_FUNC_START(fc_asm_noframe)
	call	fc_asm_sleep
	RET
SYM_FUNC_END(fc_asm_noframe)

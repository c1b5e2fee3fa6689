// SPDX-License-Identifier: GPL-2.0
/*
 * fcpatch.ko - a livepatch of two fctest.ko functions, so that `framecert-guest patch-check
 * --kernel-compare` can set framecert's per-task decisions beside the kernel's own transition
 * (task_struct.patch_state, read from the same frozen memory).
 *
 *   fc_block_wait      user tasks reading /sys/kernel/debug/fctest/block sleep in it: the kernel must keep
 *                      them unpatched until they leave it, and framecert must say blocked-on-stack.
 *   fc_noframe_caller  the fc_asm_noframe kthread sleeps inside it, but below a frameless assembly call: the
 *                      kernel's frame-pointer walk does not see it there and switches the task at once,
 *                      while framecert says blocked-unreliable (no-frame-at-call-site).
 *
 * The replacements only sleep, like the originals' chains do.
 */
#include <linux/jiffies.h>
#include <linux/kernel.h>
#include <linux/livepatch.h>
#include <linux/module.h>
#include <linux/sched.h>

static noinline void fcpatch_block_wait(void)
{
	schedule_timeout_interruptible(msecs_to_jiffies(1000));
	barrier();
}

static noinline void fcpatch_noframe_caller(void)
{
	schedule_timeout_interruptible(msecs_to_jiffies(1000));
	barrier();
}

static struct klp_func fcpatch_funcs[] = {
	{ .old_name = "fc_block_wait", .new_func = fcpatch_block_wait },
	{ .old_name = "fc_noframe_caller", .new_func = fcpatch_noframe_caller },
	{ }
};

static struct klp_object fcpatch_objs[] = {
	{ .name = "fctest", .funcs = fcpatch_funcs },
	{ }
};

static struct klp_patch fcpatch = {
	.mod = THIS_MODULE,
	.objs = fcpatch_objs,
};

static int __init fcpatch_init(void)
{
	return klp_enable_patch(&fcpatch);
}

static void __exit fcpatch_exit(void)
{
}

module_init(fcpatch_init);
module_exit(fcpatch_exit);
MODULE_LICENSE("GPL");
MODULE_INFO(livepatch, "Y");
MODULE_DESCRIPTION("framecert livepatch of fctest.ko: fc_block_wait and fc_noframe_caller");

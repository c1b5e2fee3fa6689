// SPDX-License-Identifier: GPL-2.0
/*
 * fctest.ko - kthreads parked on known call chains, so framecert's guest walker can be checked against
 * exact expectations (the chains are listed in expected-chains.json, which the build also compiles in
 * and which debugfs publishes as fctest/chains).
 *
 * Every function on a chain is noinline and followed by barrier() at its call site: the call is then
 * never in tail position, so it stays a real call with a real return address on the stack.
 */
#include <linux/debugfs.h>
#include <linux/delay.h>
#include <linux/fs.h>
#include <linux/jiffies.h>
#include <linux/kthread.h>
#include <linux/module.h>
#include <linux/objtool.h>
#include <linux/sched.h>

#include "fctest_chains.h" /* fctest_chains_json: generated from expected-chains.json by the build */

/* Long naps: a frozen guest almost always finds the parked kthreads asleep inside their chain. */
static unsigned int nap_ms = 1000;
module_param(nap_ms, uint, 0644);
MODULE_PARM_DESC(nap_ms, "how long each parked kthread sleeps per loop (ms)");

/* A macro, not a function: the sleeping kernel call sits directly in each chain's last function. */
#define FC_NAP() schedule_timeout_interruptible(msecs_to_jiffies(nap_ms))

/* ---- fc_chain: four C frames, all with frame pointers: reliable ---- */

static noinline void fc_level3(void)
{
	FC_NAP();
	barrier();
}

static noinline void fc_level2(void)
{
	fc_level3();
	barrier();
}

static noinline void fc_level1(void)
{
	fc_level2();
	barrier();
}

static int fc_chain_fn(void *unused)
{
	while (!kthread_should_stop()) {
		fc_level1();
		barrier();
	}
	return 0;
}

/* ---- the assembly chains (fctest_asm.S) ---- */

void fc_asm_framed(void);
void fc_asm_noframe(void);
void fc_asm_sleep(void);

/* Called from assembly only; global so the .S file can reach it. */
noinline void fc_asm_sleep(void)
{
	FC_NAP();
	barrier();
}

static int fc_asm_framed_fn(void *unused)
{
	while (!kthread_should_stop()) {
		fc_asm_framed();
		barrier();
	}
	return 0;
}

/* The victim of the planted bug: an FP walk from fc_asm_sleep jumps from fc_asm_noframe to fc_noframe_fn. */
static noinline void fc_noframe_caller(void)
{
	fc_asm_noframe();
	barrier();
}

static int fc_asm_noframe_fn(void *unused)
{
	while (!kthread_should_stop()) {
		fc_noframe_caller();
		barrier();
	}
	return 0;
}

/* ---- fc_nonstd: objtool is told not to vouch for this function, so no walk through it is reliable ---- */

static noinline void fc_nonstd_sleep(void)
{
	FC_NAP();
	barrier();
}
STACK_FRAME_NON_STANDARD(fc_nonstd_sleep);

static int fc_nonstd_fn(void *unused)
{
	while (!kthread_should_stop()) {
		fc_nonstd_sleep();
		barrier();
	}
	return 0;
}

/* ---- fc_spin: mostly on a CPU, so freezes catch it running ---- */

static noinline void fc_spin_work(void)
{
	unsigned long end = jiffies + msecs_to_jiffies(20);

	while (time_before(jiffies, end))
		cpu_relax();
	barrier();
}

static int fc_spin_fn(void *unused)
{
	while (!kthread_should_stop()) {
		fc_spin_work();
		/* A short real sleep every 20 ms: ~90% busy, yet the shared host keeps some breath. */
		usleep_range(1000, 2000);
	}
	return 0;
}

/* ---- debugfs: fctest/chains (the expectations) and fctest/block (a read that sleeps in here) ---- */

/*
 * The workload's livepatch target: user tasks reading fctest/block sleep here, inside a system call,
 * and leave it again every nap, so a patch of this function can complete its transition.
 */
static noinline void fc_block_wait(void)
{
	FC_NAP();
	barrier();
}

static ssize_t fc_block_read(struct file *file, char __user *buf, size_t len, loff_t *pos)
{
	fc_block_wait();
	barrier();
	return 0;
}

static const struct file_operations fc_block_fops = {
	.owner = THIS_MODULE,
	.read = fc_block_read,
	.llseek = noop_llseek,
};

static ssize_t fc_chains_read(struct file *file, char __user *buf, size_t len, loff_t *pos)
{
	return simple_read_from_buffer(buf, len, pos, fctest_chains_json,
				       sizeof(fctest_chains_json) - 1);
}

static const struct file_operations fc_chains_fops = {
	.owner = THIS_MODULE,
	.read = fc_chains_read,
	.llseek = default_llseek,
};

/* ---- module life ---- */

struct fc_thread {
	const char *name;
	int (*fn)(void *);
	struct task_struct *task;
};

static struct fc_thread fc_threads[] = {
	{ "fc_chain", fc_chain_fn },
	{ "fc_asm_framed", fc_asm_framed_fn },
	{ "fc_asm_noframe", fc_asm_noframe_fn },
	{ "fc_nonstd", fc_nonstd_fn },
	{ "fc_spin", fc_spin_fn },
};

static struct dentry *fc_dir;

static void fc_stop_all(void)
{
	int i;

	for (i = ARRAY_SIZE(fc_threads) - 1; i >= 0; i--) {
		if (fc_threads[i].task)
			kthread_stop(fc_threads[i].task);
		fc_threads[i].task = NULL;
	}
}

static int __init fctest_init(void)
{
	int i;

	for (i = 0; i < ARRAY_SIZE(fc_threads); i++) {
		struct task_struct *t = kthread_run(fc_threads[i].fn, NULL, "%s", fc_threads[i].name);

		if (IS_ERR(t)) {
			pr_err("fctest: cannot start %s: %ld\n", fc_threads[i].name, PTR_ERR(t));
			fc_stop_all();
			return PTR_ERR(t);
		}
		fc_threads[i].task = t;
		pr_info("fctest: kthread %s pid=%d\n", fc_threads[i].name, task_pid_nr(t));
	}

	/* debugfs is a convenience: the module works without it (e.g. debugfs=off). */
	fc_dir = debugfs_create_dir("fctest", NULL);
	debugfs_create_file("chains", 0444, fc_dir, NULL, &fc_chains_fops);
	debugfs_create_file("block", 0444, fc_dir, NULL, &fc_block_fops);

	pr_info("fctest: loaded, %zu kthreads\n", ARRAY_SIZE(fc_threads));
	return 0;
}

static void __exit fctest_exit(void)
{
	debugfs_remove(fc_dir);
	fc_stop_all();
	pr_info("fctest: unloaded\n");
}

module_init(fctest_init);
module_exit(fctest_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("framecert test module: kthreads parked on known call chains");

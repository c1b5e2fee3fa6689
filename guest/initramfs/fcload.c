// SPDX-License-Identifier: GPL-2.0
/*
 * fcload: the guest workload's own program (static, built by `framecert-guest build`).
 * Busybox covers nanosleep, pipes, churn and file I/O; this covers what a shell cannot:
 *   fcload futex      one task waiting in FUTEX_WAIT forever
 *   fcload poll       one task sleeping in poll() on a pipe nobody writes
 *   fcload threads    a multithreaded process: threads in nanosleep, futex, poll, pipe read, and a busy one
 *   fcload spin       a user-space busy loop (always runnable)
 *   fcload count      prints "FRAMECERT-TASKS processes=N threads=M" counted from /proc (itself included)
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <linux/futex.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static int futex_word; /* never changes: waiters sleep until killed */

static void futex_forever(void)
{
	for (;;)
		syscall(SYS_futex, &futex_word, FUTEX_WAIT_PRIVATE, 0, NULL, NULL, 0);
}

static void poll_forever(void)
{
	int fds[2];
	struct pollfd p;

	if (pipe(fds) != 0) {
		perror("fcload: pipe");
		exit(1);
	}
	p.fd = fds[0];
	p.events = POLLIN;
	for (;;)
		poll(&p, 1, -1);
}

static void read_forever(void)
{
	int fds[2];
	char c;

	if (pipe(fds) != 0) {
		perror("fcload: pipe");
		exit(1);
	}
	for (;;)
		read(fds[0], &c, 1); /* the write end stays open, so this blocks */
}

static void sleep_forever(void)
{
	struct timespec t = { 3600, 0 };

	for (;;)
		nanosleep(&t, NULL);
}

/* Busy most of the time; `duty` of 100 never sleeps. */
static void spin(int duty)
{
	volatile unsigned long n = 0;
	struct timespec nap = { 0, 10 * 1000 * 1000 };

	for (;;) {
		struct timespec start, now;

		clock_gettime(CLOCK_MONOTONIC, &start);
		do {
			for (int i = 0; i < 10000; i++)
				n++;
			clock_gettime(CLOCK_MONOTONIC, &now);
		} while ((now.tv_sec - start.tv_sec) * 1000000000L + (now.tv_nsec - start.tv_nsec) <
			 duty * 1000000L);
		if (duty < 100)
			nanosleep(&nap, NULL);
	}
}

static void *thread_main(void *arg)
{
	switch ((long)arg) {
	case 0: sleep_forever(); break;
	case 1: futex_forever(); break;
	case 2: poll_forever(); break;
	case 3: read_forever(); break;
	default: spin(50); break; /* half busy: sometimes on a CPU, sometimes not */
	}
	return NULL;
}

static int threads(void)
{
	pthread_t t[5];

	for (long i = 0; i < 5; i++) {
		if (pthread_create(&t[i], NULL, thread_main, (void *)i) != 0) {
			fprintf(stderr, "fcload: pthread_create failed\n");
			return 1;
		}
	}
	sleep_forever();
	return 0;
}

/* Counts every /proc/PID (kthreads included) and the threads each one lists in its status file. */
static int count(void)
{
	DIR *d = opendir("/proc");
	struct dirent *e;
	long procs = 0, thr = 0;

	if (!d) {
		perror("fcload: /proc");
		return 1;
	}
	while ((e = readdir(d))) {
		char path[300], line[256];
		FILE *f;

		if (e->d_name[0] < '0' || e->d_name[0] > '9')
			continue;
		snprintf(path, sizeof(path), "/proc/%s/status", e->d_name);
		f = fopen(path, "r");
		if (!f)
			continue; /* exited meanwhile */
		procs++;
		while (fgets(line, sizeof(line), f))
			if (strncmp(line, "Threads:", 8) == 0)
				thr += strtol(line + 8, NULL, 10);
		fclose(f);
	}
	closedir(d);
	printf("FRAMECERT-TASKS processes=%ld threads=%ld\n", procs, thr);
	return 0;
}

int main(int argc, char **argv)
{
	const char *mode = argc > 1 ? argv[1] : "";

	if (!strcmp(mode, "futex"))
		futex_forever();
	else if (!strcmp(mode, "poll"))
		poll_forever();
	else if (!strcmp(mode, "threads"))
		return threads();
	else if (!strcmp(mode, "spin"))
		spin(100);
	else if (!strcmp(mode, "count"))
		return count();
	fprintf(stderr, "usage: fcload futex|poll|threads|spin|count\n");
	return 2;
}

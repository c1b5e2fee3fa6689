// SPDX-License-Identifier: GPL-2.0
/*
 * fcload: the guest workload's own program (static, built by `framecert-guest build`).
 * Busybox covers nanosleep, pipes, churn and file I/O; this covers what a shell cannot:
 *   fcload futex      one task waiting in FUTEX_WAIT forever
 *   fcload poll       one task sleeping in poll() on a pipe nobody writes
 *   fcload threads    a multithreaded process: threads in nanosleep, futex, poll, pipe read, and a busy one
 *   fcload spin       a user-space busy loop (always runnable)
 *   fcload count      prints "FRAMECERT-TASKS processes=N threads=M" counted from /proc (itself included)
 *   fcload timers     4 threads, each sleeping 1 ms at a time: a stream of timer interrupts and wake-ups
 *   fcload tids       prints "FRAMECERT-TID TID COMM" for every thread in /proc but itself, then
 *                     "FRAMECERT-TIDS count=N": a listing that forks nothing while it runs
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

static void *timer_main(void *arg)
{
	struct timespec ms = { 0, 1000000 };

	(void)arg;
	for (;;)
		nanosleep(&ms, NULL);
	return NULL;
}

static int timers(void)
{
	pthread_t t[4];

	for (int i = 0; i < 4; i++) {
		if (pthread_create(&t[i], NULL, timer_main, NULL) != 0) {
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

/* Every /proc/PID/task/TID except this process's own threads, with its comm. */
static int tids(void)
{
	DIR *d = opendir("/proc");
	struct dirent *e;
	long n = 0;
	pid_t self = getpid();

	if (!d) {
		perror("fcload: /proc");
		return 1;
	}
	while ((e = readdir(d))) {
		char path[300];
		DIR *td;
		struct dirent *te;

		if (e->d_name[0] < '0' || e->d_name[0] > '9' || strtol(e->d_name, NULL, 10) == self)
			continue;
		snprintf(path, sizeof(path), "/proc/%s/task", e->d_name);
		td = opendir(path);
		if (!td)
			continue; /* exited meanwhile */
		while ((te = readdir(td))) {
			char comm_path[600], comm[64] = "?";
			FILE *f;

			if (te->d_name[0] < '0' || te->d_name[0] > '9')
				continue;
			snprintf(comm_path, sizeof(comm_path), "%s/%s/comm", path, te->d_name);
			f = fopen(comm_path, "r");
			if (f) {
				if (fgets(comm, sizeof(comm), f))
					comm[strcspn(comm, "\n")] = 0;
				fclose(f);
			}
			printf("FRAMECERT-TID %s %s\n", te->d_name, comm);
			n++;
		}
		closedir(td);
	}
	closedir(d);
	printf("FRAMECERT-TIDS count=%ld\n", n);
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
	else if (!strcmp(mode, "tids"))
		return tids();
	else if (!strcmp(mode, "timers"))
		return timers();
	fprintf(stderr, "usage: fcload futex|poll|threads|spin|count|tids|timers\n");
	return 2;
}

/*
 * A process whose thread set keeps changing, for the process-fault tests of `framecert walk`:
 *   fc_churn churn        threads created and ended all the time (each lives ~1 ms), four long sleepers
 *   fc_churn exit MS      four sleeping threads; the whole process exits after MS milliseconds
 * Prints "ready" first.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static void nap_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000 };

	nanosleep(&ts, NULL);
}

static void *sleeper(void *arg)
{
	(void)arg;
	for (;;)
		nap_ms(1000);
	return NULL;
}

static void *brief(void *arg)
{
	(void)arg;
	nap_ms(1);
	return NULL;
}

int main(int argc, char **argv)
{
	const char *mode = argc > 1 ? argv[1] : "";
	pthread_t t;

	for (int i = 0; i < 4; i++)
		pthread_create(&t, NULL, sleeper, NULL);
	printf("ready\n");
	fflush(stdout);
	if (!strcmp(mode, "exit")) {
		nap_ms(argc > 2 ? atol(argv[2]) : 0);
		exit(0);
	}
	for (;;) {
		if (pthread_create(&t, NULL, brief, NULL) == 0)
			pthread_join(t, NULL);
	}
}

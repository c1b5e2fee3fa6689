// Benchmark target: N threads (argv[1], default 100), each parked under D frames of its own code
// (argv[2], default 50). Prints "ready\n" once every thread is parked.
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define NOINLINE __attribute__((noinline, noclone))
#define KEEP() __asm__ volatile("" ::: "memory")

static pthread_barrier_t barrier;
static int depth = 50;
static volatile int stop;

NOINLINE long descend(long n) {
  if (n <= 0) {
    pthread_barrier_wait(&barrier);
    while (!stop) pause();
    return 0;
  }
  long r = descend(n - 1);
  KEEP();
  return r;
}

NOINLINE void* worker(void* arg) {
  descend(depth - 2);  // worker + descend frames = depth of own code
  KEEP();
  return arg;
}

int main(int argc, char** argv) {
  int n = argc > 1 ? atoi(argv[1]) : 100;
  depth = argc > 2 ? atoi(argv[2]) : 50;
  pthread_barrier_init(&barrier, NULL, (unsigned)n + 1);
  for (int i = 0; i < n; ++i) {
    pthread_t t;
    pthread_attr_t a;
    pthread_attr_init(&a);
    pthread_attr_setstacksize(&a, 256 * 1024);
    pthread_create(&t, &a, worker, NULL);
  }
  pthread_barrier_wait(&barrier);
  printf("ready\n");
  fflush(stdout);
  for (;;) pause();
}

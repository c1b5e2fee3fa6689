// A glibc program whose main thread calls pthread_exit while its workers run on: the process lives on with
// a zombie main thread. framecert must walk the workers and report the main thread as exited, not refuse
// the whole process as a zombie.
//   workers: start_thread -> x_worker -> x_a -> x_b (raw pause syscall, own frames)
// It writes "ready\n" once every worker is parked (just before the main thread exits).
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#define NOINLINE __attribute__((noinline, noclone))
#define KEEP() __asm__ volatile("" ::: "memory")

static pthread_barrier_t barrier;
static volatile int stop;

NOINLINE void x_b(void) {
  while (!stop) {
    long nr = 34;  // SYS_pause
    __asm__ volatile("syscall" : "+a"(nr) : : "rcx", "r11", "memory");
  }
  KEEP();
}
NOINLINE void x_a(void) { x_b(); KEEP(); }
NOINLINE void* x_worker(void* arg) {
  pthread_barrier_wait(&barrier);
  x_a();
  KEEP();
  return arg;
}

int main(int argc, char** argv) {
  int n = argc > 1 ? atoi(argv[1]) : 2;
  pthread_barrier_init(&barrier, NULL, (unsigned)n + 1);
  for (int i = 0; i < n; ++i) {
    pthread_t t;
    pthread_create(&t, NULL, x_worker, NULL);
  }
  pthread_barrier_wait(&barrier);
  printf("ready\n");
  fflush(stdout);
  pthread_exit(NULL);
}

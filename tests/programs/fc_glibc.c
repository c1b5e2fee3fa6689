// A glibc program with frame pointers in its own code (-fno-omit-frame-pointer), threads from pthreads.
//   main thread: main -> g_main_wait -> pause
//   worker threads: start_thread -> g_worker -> g_a -> g_b (raw syscall)
//   one more thread: start_thread -> g_lworker -> g_c -> g_d -> syscall (glibc's wrapper, a frameless leaf)
// glibc itself is built without frame pointers, so the honest verdict at the libc frames is unreliable.
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

#define NOINLINE __attribute__((noinline, noclone))
#define KEEP() __asm__ volatile("" ::: "memory")

static pthread_barrier_t barrier;
static volatile int stop;

// Blocks in a raw system call of its own, so the innermost frame is in code with metadata.
NOINLINE void g_b(void) {
  while (!stop) {
    long nr = 34;  // SYS_pause
    __asm__ volatile("syscall" : "+a"(nr) : : "rcx", "r11", "memory");
  }
  KEEP();
}
NOINLINE void g_a(void) { g_b(); KEEP(); }
NOINLINE void* g_worker(void* arg) {
  pthread_barrier_wait(&barrier);
  g_a();
  KEEP();
  return arg;
}

// Blocks inside libc's syscall(2) wrapper: the innermost frame is libc code with CFA = rsp+8.
NOINLINE void g_d(void) {
  while (!stop) syscall(SYS_pause);
  KEEP();
}
NOINLINE void g_c(void) { g_d(); KEEP(); }
NOINLINE void* g_lworker(void* arg) {
  pthread_barrier_wait(&barrier);
  g_c();
  KEEP();
  return arg;
}

NOINLINE void g_main_wait(void) {
  printf("ready\n");
  fflush(stdout);
  for (;;) pause();
  KEEP();
}

int main(int argc, char** argv) {
  int n = argc > 1 ? atoi(argv[1]) : 3;
  (void)argv;
  pthread_barrier_init(&barrier, NULL, (unsigned)n + 2);
  for (int i = 0; i < n; ++i) {
    pthread_t t;
    pthread_create(&t, NULL, g_worker, NULL);
  }
  pthread_t lt;
  pthread_create(&lt, NULL, g_lworker, NULL);
  pthread_barrier_wait(&barrier);
  g_main_wait();
  return 0;
}

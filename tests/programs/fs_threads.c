// A program without libc whose threads park on known call chains (the user-space twin of the guest's
// fctest module). Built -nostdlib -static -fno-omit-frame-pointer; tests walk it with `framecert walk`.
//   main thread: _start -> fs_main -> m_wait -> fs_pause
//   t1: fs_clone -> t1_top -> t1_mid -> t1_leaf -> fs_pause                 (reliable)
//   t2: fs_clone -> t2_top -> fs_spin (spinning, frameless)                  (reliable, via the CFA rule)
//   t3: fs_clone -> t3_top -> fs_asm_noframe -> t3_inner -> fs_pause         (no-frame-at-call-site)
//   t4: fs_clone -> t4_top -> rec x1000 -> fs_pause                           (reliable, 1000 deep)
//   t5: fs_clone -> t5_top -> fs_asm_framed -> t5_inner -> fs_pause          (reliable)
// When every thread is parked, it writes "ready <address of fs_counter>\n" to stdout.
#define NOINLINE __attribute__((noinline, noclone))
#define KEEP() __asm__ volatile("" ::: "memory")  // a call followed by this is never a tail call

long fs_clone(void (*fn)(long), void* stack_top, long arg);
long fs_pause(void);
void fs_spin(void);
long fs_write(int fd, const void* buf, long len);
void fs_asm_noframe(void);
void fs_asm_framed(void);

volatile long fs_counter;
static volatile int ready;
static volatile int fs_stop;  // never set: keeps the compiler from treating park() as noreturn

static char stacks[5][1 << 18] __attribute__((aligned(16)));

static void park(void) {
  __atomic_add_fetch(&ready, 1, __ATOMIC_SEQ_CST);
  while (!fs_stop) fs_pause();
}

NOINLINE void t1_leaf(void) { park(); KEEP(); }
NOINLINE void t1_mid(void) { t1_leaf(); KEEP(); }
NOINLINE void t1_top(long arg) { (void)arg; t1_mid(); KEEP(); }

NOINLINE void t2_top(long arg) {
  (void)arg;
  __atomic_add_fetch(&ready, 1, __ATOMIC_SEQ_CST);
  fs_spin();
  KEEP();
}

NOINLINE void t3_inner(void) { park(); KEEP(); }
NOINLINE void t3_top(long arg) { (void)arg; fs_asm_noframe(); KEEP(); }

NOINLINE long rec(long n) {
  if (n == 0) {
    park();
    return 0;
  }
  long r = rec(n - 1);
  KEEP();
  return r + 1;
}
NOINLINE void t4_top(long arg) { rec(arg); KEEP(); }

NOINLINE void t5_inner(void) { park(); KEEP(); }
NOINLINE void t5_top(long arg) { (void)arg; fs_asm_framed(); KEEP(); }

static long hex(char* out, unsigned long v) {
  char tmp[16];
  int n = 0;
  do {
    tmp[n++] = "0123456789abcdef"[v & 15];
    v >>= 4;
  } while (v);
  for (int i = 0; i < n; ++i) out[i] = tmp[n - 1 - i];
  return n;
}

NOINLINE void m_wait(void) {
  while (ready < 5) KEEP();
  while (ready < 6) {  // 6: t2 spins, the other four park, and so does this thread, below
    char line[64] = "ready 0x";
    long n = 8 + hex(line + 8, (unsigned long)&fs_counter);
    line[n++] = '\n';
    fs_write(1, line, n);
    park();
  }
}

void fs_main(void* initial_sp) {
  (void)initial_sp;
  void (*fns[5])(long) = {t1_top, t2_top, t3_top, t4_top, t5_top};
  for (int i = 0; i < 5; ++i) fs_clone(fns[i], stacks[i] + sizeof stacks[i], i == 3 ? 1000 : 0);
  m_wait();
  KEEP();
}

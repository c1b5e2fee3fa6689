// Real processes under ptrace: exact traces and verdicts for the parked threads of tests/programs, the
// libunwind oracle's agreement on every reliable trace, and the process left running afterwards — also
// when framecert is interrupted mid-walk.
#include <gtest/gtest.h>

#include <random>
#include <sstream>

#include "tests/unwinder/process_util.h"
#include "unwinder/memory_ptrace.h"
#include "unwinder/process_walk.h"

namespace framecert::testing {
namespace {

const std::string kPrograms = FRAMECERT_PROGRAMS_DIR;

std::vector<std::string> symbols(const Trace& t) {
  std::vector<std::string> out;
  for (const Frame& f : t.frames) out.push_back(f.symbol);
  return out;
}

using Names = std::vector<std::string>;

uint64_t read_counter(pid_t pid, uint64_t addr) {
  ProcessMemory m(pid);
  return m.read_u64(RemoteAddr(addr)).value_or(0);
}

class FreestandingProcess : public ::testing::Test {
 protected:
  void SetUp() override {
    child_ = std::make_unique<Child>(kPrograms + "/fs_threads");
    ASSERT_TRUE(child_->ready()) << child_->ready_line();
    ASSERT_TRUE(child_->wait_parked(5, 6));
    counter_ = std::stoull(child_->ready_line().substr(6), nullptr, 16);
    provider_ = validator_metadata(cache_);
  }
  std::unique_ptr<Child> child_;
  uint64_t counter_ = 0;
  std::shared_ptr<MetadataCache> cache_;
  MetadataProvider provider_;
};

TEST_F(FreestandingProcess, ExactChainsVerdictsAndOracle) {
  ProcessWalkOptions o;
  o.oracle_libunwind = true;
  auto r = walk_process(child_->pid(), provider_, o);
  ASSERT_TRUE(r) << r.error();
  ASSERT_EQ(r->threads.size(), 6u);
  // Threads in creation order: main, t1..t5.
  const auto& th = r->threads;
  EXPECT_EQ(symbols(th[0].unwind.trace), (Names{"fs_pause", "park", "m_wait", "fs_main", "_start"}));
  EXPECT_EQ(symbols(th[1].unwind.trace), (Names{"fs_pause", "park", "t1_leaf", "t1_mid", "t1_top", "fs_thread_entry"}));
  EXPECT_EQ(symbols(th[2].unwind.trace), (Names{"fs_spin", "t2_top", "fs_thread_entry"}));
  EXPECT_EQ(symbols(th[3].unwind.trace), (Names{"fs_pause", "park", "t3_inner", "fs_asm_noframe", "fs_thread_entry"}));
  Names deep{"fs_pause", "park"};
  for (int i = 0; i < 1001; ++i) deep.push_back("rec");
  deep.push_back("t4_top");
  deep.push_back("fs_thread_entry");
  EXPECT_EQ(symbols(th[4].unwind.trace), deep);
  EXPECT_EQ(symbols(th[5].unwind.trace),
            (Names{"fs_pause", "park", "t5_inner", "fs_asm_framed", "t5_top", "fs_thread_entry"}));
  for (int i : {0, 1, 2, 4, 5}) {
    const ThreadReport& t = th[i];
    EXPECT_TRUE(t.unwind.trace.verdict.reliable) << i << ": " << t.unwind.trace.verdict.detail;
    EXPECT_TRUE(t.unwind.cross_check.agree) << i << ": " << t.unwind.cross_check.detail;
    ASSERT_TRUE(t.oracle_check);
    EXPECT_TRUE(t.oracle_check->agree) << i << ": " << t.oracle_check->detail;
  }
  // Stopped inside a frameless leaf: frame 1 comes from the CFA rule, not from rbp.
  EXPECT_EQ(th[2].unwind.trace.frames[1].trust, FrameTrust::CfaRule);
  // The planted frameless call: unreliable exactly there; the CFA walk and libunwind both see t3_top,
  // which the frame-pointer chain skips.
  const Verdict& v = th[3].unwind.trace.verdict;
  EXPECT_FALSE(v.reliable);
  EXPECT_EQ(reason_name(v.reason), "no-frame-at-call-site");
  EXPECT_EQ(v.frame, 3);
  EXPECT_EQ(symbols(th[3].unwind.cfa_trace),
            (Names{"fs_pause", "park", "t3_inner", "fs_asm_noframe", "t3_top", "fs_thread_entry"}));
  EXPECT_TRUE(th[3].unwind.cfa_trace.verdict.reliable);
  EXPECT_FALSE(th[3].oracle_check->agree);

  // Left running: nobody stopped or traced, and the spinning thread keeps counting.
  EXPECT_TRUE(child_->running_free());
  uint64_t before = read_counter(child_->pid(), counter_);
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_GT(read_counter(child_->pid(), counter_), before);
}

TEST_F(FreestandingProcess, RepeatedWalksLeaveItRunning) {
  for (int i = 0; i < 20; ++i) {
    auto r = walk_process(child_->pid(), provider_, {});
    ASSERT_TRUE(r) << r.error();
    EXPECT_EQ(r->threads.size(), 6u);
    EXPECT_TRUE(r->threads[1].unwind.trace.verdict.reliable);
  }
  EXPECT_TRUE(child_->running_free());
  uint64_t before = read_counter(child_->pid(), counter_);
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_GT(read_counter(child_->pid(), counter_), before);
  EXPECT_TRUE(child_->wait_parked(5, 6));  // the parked threads went back to sleep in their syscalls
}

#ifdef FRAMECERT_BINARY
// framecert killed (SIGINT, SIGTERM, SIGKILL) at random moments of a walk: the target must run on.
TEST_F(FreestandingProcess, InterruptedWalkerLeavesItRunning) {
  std::mt19937 rng(1234);
  std::string cache_dir = "/tmp/framecert-test-sigcache-" + std::to_string(getpid());
  for (int i = 0; i < 24; ++i) {
    pid_t w = fork();
    if (w == 0) {
      int devnull = open("/dev/null", O_WRONLY);
      dup2(devnull, 1);
      dup2(devnull, 2);
      std::string pid = std::to_string(child_->pid());
      execl(FRAMECERT_BINARY, "framecert", "walk", "--pid", pid.c_str(), "--cache-dir", cache_dir.c_str(),
            static_cast<char*>(nullptr));
      _exit(127);
    }
    std::this_thread::sleep_for(std::chrono::microseconds(rng() % 30000));
    int sig = (i % 3 == 0) ? SIGINT : (i % 3 == 1) ? SIGTERM : SIGKILL;
    kill(w, sig);
    waitpid(w, nullptr, 0);
    bool free_again = false;
    for (int k = 0; k < 100 && !free_again; ++k) {
      free_again = child_->running_free();
      if (!free_again) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    ASSERT_TRUE(free_again) << "round " << i << " signal " << sig;
  }
  uint64_t before = read_counter(child_->pid(), counter_);
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_GT(read_counter(child_->pid(), counter_), before);
  std::filesystem::remove_all(cache_dir);
}
#endif

TEST(GlibcProcess, OwnFramesExactLibcBoundaryUnreliable) {
  // fc_glibc 3: three workers blocked in their own raw syscall (g_b), one blocked inside glibc's syscall(2)
  // wrapper (g_d -> syscall), the main thread in glibc's pause().
  Child child(kPrograms + "/fc_glibc", {"3"});
  ASSERT_TRUE(child.ready()) << child.ready_line();
  ASSERT_TRUE(child.wait_parked(5, 5));
  std::shared_ptr<MetadataCache> cache;
  ProcessWalkOptions o;
  o.oracle_libunwind = true;
  auto r = walk_process(child.pid(), validator_metadata(cache), o);
  ASSERT_TRUE(r) << r.error();
  ASSERT_EQ(r->threads.size(), 5u);
  const std::string libc_object = "libc.so.6";
  auto in_libc = [&](const Frame& f) { return f.object.find(libc_object) != std::string::npos; };
  size_t own_leaf = 0, libc_leaf = 0;
  for (size_t i = 1; i < r->threads.size(); ++i) {
    const Trace& t = r->threads[i].unwind.trace;
    ASSERT_GE(t.frames.size(), 4u) << t.verdict.detail;
    Names own;
    for (const Frame& f : t.frames)
      if (!in_libc(f)) own.push_back(f.symbol);
    // The thread's start, glibc's start_thread, has no symbol in the stripped libc (.dynsym only) and so no
    // metadata from the validator: its return address is after no *proven* call. Were it covered, it would
    // be `no-frame-at-call-site` at the same frame (glibc has no frame pointers), never reliable.
    EXPECT_FALSE(t.verdict.reliable);
    EXPECT_EQ(reason_name(t.verdict.reason), "no-metadata") << t.verdict.detail;
    EXPECT_TRUE(in_libc(t.frames.back())) << t.frames.back().object;
    EXPECT_EQ(t.verdict.frame, static_cast<int>(t.frames.size()) - 1) << t.verdict.detail;
    EXPECT_TRUE(r->threads[i].unwind.cross_check.agree) << r->threads[i].unwind.cross_check.detail;
    if (t.frames[0].symbol == "g_b") {
      ++own_leaf;
      // Stopped in its own frameless leaf: the CFA rule at the exact pc finds g_a, frame pointers the rest.
      EXPECT_EQ(own, (Names{"g_b", "g_a", "g_worker"}));
      EXPECT_EQ(t.frames.size(), 4u);
      EXPECT_EQ(t.verdict.frame, 3);
    } else {
      ++libc_leaf;
      // Stopped inside glibc's syscall(2) wrapper (cfa=rsp+8, rbp untouched): the CFA rule steps out of
      // libc into the program's own frames, which the frame-pointer chain then follows exactly.
      EXPECT_EQ(t.frames[0].symbol, "syscall");
      EXPECT_TRUE(in_libc(t.frames[0]));
      EXPECT_EQ(t.frames[1].trust, FrameTrust::CfaRule);
      EXPECT_EQ(own, (Names{"g_d", "g_c", "g_lworker"}));
      EXPECT_EQ(t.frames.size(), 5u);
      EXPECT_EQ(t.verdict.frame, 4);
    }
  }
  EXPECT_EQ(own_leaf, 3u);
  EXPECT_EQ(libc_leaf, 1u);
  // The main thread sleeps in glibc's pause(). pause has a finding ("pause+0x24: call without frame
  // pointer save/setup", objtool's rule), but the validator still proves its CFA rules, so the walk steps
  // out of it into main; it ends at glibc's start-up code, which keeps no frame pointer and whose call
  // into main the metadata cannot vouch for.
  const Trace& m = r->threads[0].unwind.trace;
  ASSERT_GE(m.frames.size(), 4u);
  EXPECT_EQ(m.frames[0].symbol, "pause");
  EXPECT_TRUE(in_libc(m.frames[0]));
  EXPECT_EQ(m.frames[1].trust, FrameTrust::CfaRule);
  EXPECT_EQ(m.frames[1].symbol, "g_main_wait");
  EXPECT_EQ(m.frames[2].symbol, "main");
  EXPECT_FALSE(m.verdict.reliable);
  EXPECT_EQ(reason_name(m.verdict.reason), "no-metadata") << m.verdict.detail;
  EXPECT_EQ(m.verdict.frame, 3);
  for (const ThreadReport& t : r->threads) {
    if (t.unwind.trace.verdict.reliable) {
      EXPECT_TRUE(t.oracle_check && t.oracle_check->agree);
    }
  }
  EXPECT_TRUE(child.running_free());
}

}  // namespace
}  // namespace framecert::testing

// `framecert walk --pid` on processes that fight back: a missing pid, a zombie, one whose main thread is already
// traced by somebody else (reported for that thread, the others walked), one that exits during the walk, one that
// creates and ends threads all the time. Every case gives a clear one-line error (exit 2) or a complete report (exit 0
// or 1), never a crash or a hang, and the target is never left stopped or traced.
#ifdef FRAMECERT_BINARY
#include <gtest/gtest.h>
#include <sys/ptrace.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstdio>
#include <random>
#include <string>
#include <thread>

#include <nlohmann/json.hpp>

#include "tests/unwinder/process_util.h"

namespace framecert::testing {
namespace {

const std::string kPrograms = FRAMECERT_PROGRAMS_DIR;

struct CliRun {
  int status = -1;  // exit status, or 128 + signal
  std::string out, err;
  double seconds = 0;
};

// Runs framecert walk --pid PID --json, capturing stdout and stderr.
CliRun walk_cli(pid_t pid) {
  std::string err_path = "/tmp/framecert-fault-err-" + std::to_string(getpid());
  std::string cmd = std::string(FRAMECERT_BINARY) + " walk --json --pid " + std::to_string(pid) +
                    " --cache-dir /tmp/framecert-fault-cache-" + std::to_string(getpid()) + " 2>" + err_path;
  CliRun r;
  auto t0 = std::chrono::steady_clock::now();
  FILE* p = popen(cmd.c_str(), "r");
  std::array<char, 4096> buf;
  while (size_t n = fread(buf.data(), 1, buf.size(), p)) r.out.append(buf.data(), n);
  int st = pclose(p);
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  if (FILE* f = fopen(err_path.c_str(), "r")) {
    while (size_t n = fread(buf.data(), 1, buf.size(), f)) r.err.append(buf.data(), n);
    fclose(f);
  }
  unlink(err_path.c_str());
  return r;
}

// One line on stderr, saying `what`.
void expect_one_line_error(const CliRun& r, const std::string& what) {
  EXPECT_EQ(r.status, 2) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  EXPECT_NE(r.err.find(what), std::string::npos) << r.err;
  EXPECT_LT(r.seconds, 30);
}

TEST(ProcessFaults, MissingPid) {
  pid_t gone = fork();
  if (gone == 0) _exit(0);
  waitpid(gone, nullptr, 0);  // reaped: the pid names nothing now
  expect_one_line_error(walk_cli(gone), "does not exist");
}

TEST(ProcessFaults, Zombie) {
  pid_t z = fork();
  if (z == 0) _exit(0);
  for (int i = 0; i < 200 && thread_state(z, z) != 'Z'; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  ASSERT_EQ(thread_state(z, z), 'Z');
  expect_one_line_error(walk_cli(z), "zombie");
  waitpid(z, nullptr, 0);
}

TEST(ProcessFaults, AlreadyTracedBySomebodyElse) {
  Child child(kPrograms + "/fc_churn", {"exit", "60000"});
  ASSERT_TRUE(child.ready());
  ASSERT_EQ(ptrace(PTRACE_SEIZE, child.pid(), nullptr, nullptr), 0);  // we are its main thread's tracer now
  // The other four threads are walked; the held one is reported with who holds it.
  CliRun r = walk_cli(child.pid());
  ASSERT_EQ(r.status, 1) << r.err;
  auto j = nlohmann::json::parse(r.out);
  ASSERT_EQ(j["threads"].size(), 5u);
  bool held_reported = false;
  for (auto& t : j["threads"]) {
    if (t["tid"] != child.pid()) continue;
    held_reported = true;
    EXPECT_EQ(t["reason"], "no-registers");
    EXPECT_NE(t["detail"].get<std::string>().find(fmt::format("already traced by another process (pid {})", getpid())),
              std::string::npos)
        << t["detail"];
  }
  EXPECT_TRUE(held_reported);
  // Detaching needs a stopped tracee: interrupt it, wait for the stop, let go.
  ASSERT_EQ(ptrace(PTRACE_INTERRUPT, child.pid(), nullptr, nullptr), 0);
  int status = 0;
  ASSERT_EQ(waitpid(child.pid(), &status, __WALL), child.pid());
  ASSERT_EQ(ptrace(PTRACE_DETACH, child.pid(), nullptr, nullptr), 0);
  EXPECT_TRUE(child.running_free());
}

TEST(ProcessFaults, ExitingDuringTheWalk) {
  std::mt19937 rng(99);
  int complete = 0, refused = 0;
  for (int i = 0; i < 25; ++i) {
    Child child(kPrograms + "/fc_churn", {"exit", std::to_string(rng() % 40)});
    ASSERT_TRUE(child.ready());
    CliRun r = walk_cli(child.pid());
    // 0/1: a report (1: some thread unreliable); 2: refused with a reason.
    ASSERT_TRUE(r.status <= 2) << "round " << i << ": status " << r.status << " " << r.err;
    ASSERT_LT(r.seconds, 30);
    if (r.status != 2) {
      auto j = nlohmann::json::parse(r.out);  // a complete report, however many threads were left
      EXPECT_EQ(j["pid"], child.pid());
      ++complete;
    } else {
      EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
      ++refused;
    }
  }
  RecordProperty("complete", complete);
  RecordProperty("refused", refused);
}

TEST(ProcessFaults, ThreadsCreatedDuringTheWalk) {
  Child child(kPrograms + "/fc_churn", {"churn"});
  ASSERT_TRUE(child.ready());
  for (int i = 0; i < 20; ++i) {
    CliRun r = walk_cli(child.pid());
    ASSERT_TRUE(r.status == 0 || r.status == 1) << r.status << " " << r.err;  // a report
    auto j = nlohmann::json::parse(r.out);
    ASSERT_GE(j["threads"].size(), 5u);  // main + 4 sleepers, plus whichever brief thread was alive
    for (auto& t : j["threads"]) {
      EXPECT_TRUE(t.contains("reliable"));
      if (!t["reliable"]) {
        EXPECT_FALSE(t["reason"].get<std::string>().empty());
      }
    }
    bool free_again = false;
    for (int k = 0; k < 100 && !free_again; ++k) {
      free_again = child.running_free();
      if (!free_again) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    ASSERT_TRUE(free_again) << "walk " << i << " left the process stopped or traced";
  }
}

}  // namespace
}  // namespace framecert::testing
#endif

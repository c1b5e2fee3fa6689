// Issue 14, the process side: verdicts that tell the truth about what was walked.
//  - A process in a private mount namespace runs another binary at the path of a host binary: its metadata
//    must come from the file it mapped (or from none), never from the host's file at that path.
//  - A process whose main thread called pthread_exit is walked; the dead main thread is reported as exited.
//  - A thread held by another tracer is reported as such.
//  - A return address in code that no symbol and no metadata describe is called `no-metadata`.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/ptrace.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <optional>

#include "tests/unwinder/process_util.h"
#include "unwinder/process_walk.h"

namespace framecert::testing {
namespace {

const std::string kPrograms = FRAMECERT_PROGRAMS_DIR;
using Names = std::vector<std::string>;

Names symbols(const Trace& t) {
  Names out;
  for (const Frame& f : t.frames) out.push_back(f.symbol);
  return out;
}

std::string verdict_text(const Verdict& v) {
  return v.reliable ? "reliable" : fmt::format("{} at frame {}: {}", reason_name(v.reason), v.frame, v.detail);
}

// Runs `over` (bind-mounted over `path` in a new private mount namespace) as `path`, stdout on a pipe.
class NamespacedChild {
 public:
  NamespacedChild(const std::string& path, const std::string& over) {
    int out[2], status[2];
    if (pipe2(out, O_CLOEXEC) != 0 || pipe2(status, O_CLOEXEC) != 0) return;
    pid_ = fork();
    if (pid_ == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      auto fail = [&](const char* what) {
        std::string msg = fmt::format("{}: {}", what, std::strerror(errno));
        (void)!write(status[1], msg.data(), msg.size());
        _exit(77);
      };
      if (unshare(CLONE_NEWNS) != 0) fail("unshare(CLONE_NEWNS)");
      if (mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) fail("mount --make-rprivate /");
      if (mount(over.c_str(), path.c_str(), nullptr, MS_BIND, nullptr) != 0) fail("mount --bind");
      dup2(out[1], 1);
      execl(path.c_str(), path.c_str(), static_cast<char*>(nullptr));
      fail("exec");
    }
    close(out[1]);
    close(status[1]);
    out_ = out[0];
    char buf[256];
    ssize_t n = read(status[0], buf, sizeof buf);  // EOF: the exec happened
    close(status[0]);
    if (n > 0) {
      setup_error_.assign(buf, static_cast<size_t>(n));
      return;
    }
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (line_.find('\n') == std::string::npos && std::chrono::steady_clock::now() < deadline) {
      pollfd p{out_, POLLIN, 0};
      if (poll(&p, 1, 100) <= 0) continue;
      ssize_t k = read(out_, buf, sizeof buf);
      if (k <= 0) break;
      line_.append(buf, static_cast<size_t>(k));
    }
  }
  ~NamespacedChild() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    if (out_ >= 0) close(out_);
  }
  pid_t pid() const { return pid_; }
  const std::string& setup_error() const { return setup_error_; }
  bool ready() const { return line_.rfind("ready", 0) == 0; }

  // Bind-mounts `over` on `path` once more inside the child's namespace: the child keeps its mapping of
  // the file it runs, but the path now names another file there. From a forked helper: setns needs a
  // single-threaded caller.
  bool mount_in_namespace(const std::string& path, const std::string& over) const {
    pid_t h = fork();
    if (h == 0) {
      int ns = open(fmt::format("/proc/{}/ns/mnt", pid_).c_str(), O_RDONLY | O_CLOEXEC);
      if (ns < 0 || setns(ns, CLONE_NEWNS) != 0) _exit(1);
      _exit(mount(over.c_str(), path.c_str(), nullptr, MS_BIND, nullptr) == 0 ? 0 : 2);
    }
    int st = 0;
    waitpid(h, &st, 0);
    return WIFEXITED(st) && WEXITSTATUS(st) == 0;
  }

 private:
  pid_t pid_ = -1;
  int out_ = -1;
  std::string line_, setup_error_;
};

const Mapping* text_mapping(const std::vector<Mapping>& maps, const std::string& path) {
  for (const Mapping& m : maps)
    if (m.executable && m.path == path) return &m;
  return nullptr;
}

// The most important one: `framecert walk` used to open the path in /proc/PID/maps in its own mount
// namespace — here the host's framed fc_ns_frame — and vouch for ns_mid's frame, which the running nops
// build never sets up: the frame-pointer chain skips ns_top and the trace was called reliable.
TEST(MountNamespace, MetadataComesFromTheMappedFileNotTheHostPath) {
  const std::string framed = kPrograms + "/fc_ns_frame", nops = kPrograms + "/fc_ns_frame_nops";
  std::shared_ptr<MetadataCache> cache;
  MetadataProvider provider = validator_metadata(cache);

  // The host's own fc_ns_frame, walked first with the same cache: reliable, every frame there.
  {
    Child host(framed);
    ASSERT_TRUE(host.ready()) << host.ready_line();
    ASSERT_TRUE(host.wait_parked(1, 1));
    auto r = walk_process(host.pid(), provider, {});
    ASSERT_TRUE(r) << r.error();
    ASSERT_EQ(r->threads.size(), 1u);
    const Trace& t = r->threads[0].unwind.trace;
    EXPECT_TRUE(t.verdict.reliable) << verdict_text(t.verdict);
    EXPECT_EQ(symbols(t), (Names{"ns_leaf", "ns_mid", "ns_top", "ns_main", "_start"}));
  }

  NamespacedChild child(framed, nops);
  if (!child.setup_error().empty()) GTEST_SKIP() << "no private mount namespace here: " << child.setup_error();
  ASSERT_TRUE(child.ready());
  for (int i = 0; i < 200 && thread_state(child.pid(), child.pid()) != 'S'; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));

  // The scenario really is there: the process maps a file that is not the one at that path on the host.
  auto maps = read_maps(child.pid());
  ASSERT_TRUE(maps) << maps.error();
  const Mapping* text = text_mapping(*maps, framed);
  ASSERT_NE(text, nullptr);
  struct stat host_st {};
  ASSERT_EQ(stat(framed.c_str(), &host_st), 0);
  ASSERT_NE(text->inode, host_st.st_ino);

  // Through /proc/PID/map_files (default) and through /proc/PID/root (the fallback): the mapped nops
  // file's metadata, hence the truthful verdict for the code that runs.
  for (bool map_files : {true, false}) {
    SCOPED_TRACE(map_files ? "map_files" : "root");
    ProcessWalkOptions o;
    o.code.use_map_files = map_files;
    auto r = walk_process(child.pid(), provider, o);
    ASSERT_TRUE(r) << r.error();
    ASSERT_EQ(r->threads.size(), 1u);
    const Unwind& u = r->threads[0].unwind;
    EXPECT_FALSE(u.trace.verdict.reliable);
    EXPECT_EQ(reason_name(u.trace.verdict.reason), "no-frame-at-call-site") << verdict_text(u.trace.verdict);
    EXPECT_EQ(symbols(u.trace), (Names{"ns_leaf", "ns_mid", "ns_main", "_start"}));
    EXPECT_EQ(symbols(u.cfa_trace), (Names{"ns_leaf", "ns_mid", "ns_top", "ns_main", "_start"}));
  }
  EXPECT_TRUE(child.ready());

  // Now the path in the child's own namespace names a copy of the framed file, while the child still runs
  // the nops file it mapped. /proc/PID/root/PATH reaches the wrong file: device and inode differ, and so do
  // the build-ids, so no metadata and no symbols from it — the trace is unreliable and says why.
  std::string copy = fmt::format("{}/fc_ns_frame.copy.{}", std::filesystem::temp_directory_path().string(), getpid());
  std::filesystem::copy_file(framed, copy, std::filesystem::copy_options::overwrite_existing);
  ASSERT_TRUE(child.mount_in_namespace(framed, copy));
  std::filesystem::remove(copy);  // the mount keeps it
  {
    ProcessWalkOptions o;
    o.code.use_map_files = false;
    auto r = walk_process(child.pid(), provider, o);
    ASSERT_TRUE(r) << r.error();
    const Verdict& v = r->threads[0].unwind.trace.verdict;
    EXPECT_FALSE(v.reliable);
    EXPECT_EQ(reason_name(v.reason), "no-metadata") << verdict_text(v);
    EXPECT_EQ(v.frame, 0);
    EXPECT_NE(v.detail.find("the file at " + framed + " is not the one the process mapped (device/inode differ"),
              std::string::npos)
        << v.detail;
    EXPECT_NE(v.detail.find("build-id"), std::string::npos) << v.detail;
    EXPECT_TRUE(r->threads[0].unwind.trace.frames[0].symbol.empty());  // no symbols from the wrong file
  }
  // map_files still reaches the mapped file.
  {
    auto r = walk_process(child.pid(), provider, {});
    ASSERT_TRUE(r) << r.error();
    EXPECT_EQ(reason_name(r->threads[0].unwind.trace.verdict.reason), "no-frame-at-call-site")
        << verdict_text(r->threads[0].unwind.trace.verdict);
  }
}

TEST(ProcessTruth, MainThreadExitedOthersWalked) {
  Child child(kPrograms + "/fc_main_exit", {"2"});
  ASSERT_TRUE(child.ready()) << child.ready_line();
  for (int i = 0; i < 400 && thread_state(child.pid(), child.pid()) != 'Z'; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  ASSERT_EQ(thread_state(child.pid(), child.pid()), 'Z');
  ASSERT_TRUE(child.wait_parked(2, 3));
  std::shared_ptr<MetadataCache> cache;
  auto r = walk_process(child.pid(), validator_metadata(cache), {});
  ASSERT_TRUE(r) << r.error();
  ASSERT_EQ(r->threads.size(), 3u);
  size_t workers = 0;
  for (const ThreadReport& t : r->threads) {
    const Verdict& v = t.unwind.trace.verdict;
    if (t.tid == child.pid()) {
      EXPECT_EQ(reason_name(v.reason), "no-registers");
      EXPECT_NE(v.detail.find("exited"), std::string::npos) << v.detail;
      EXPECT_NE(v.detail.find("pthread_exit"), std::string::npos) << v.detail;
      EXPECT_TRUE(t.unwind.trace.frames.empty());
      continue;
    }
    ++workers;
    ASSERT_GE(t.unwind.trace.frames.size(), 3u) << verdict_text(v);
    Names names = symbols(t.unwind.trace);
    EXPECT_EQ(Names(names.begin(), names.begin() + 3), (Names{"x_b", "x_a", "x_worker"}));
    EXPECT_NE(reason_name(v.reason), "no-registers") << verdict_text(v);
  }
  EXPECT_EQ(workers, 2u);
  // Left running: no live thread stopped or traced (the main thread stays a zombie).
  for (auto& e : std::filesystem::directory_iterator("/proc/" + std::to_string(child.pid()) + "/task")) {
    pid_t tid = std::stoi(e.path().filename());
    if (tid == child.pid()) continue;
    char st = thread_state(child.pid(), tid);
    EXPECT_TRUE(st == 'S' || st == 'R') << tid << " " << st;
    EXPECT_EQ(tracer_of(child.pid(), tid), 0) << tid;
  }
}

TEST(ProcessTruth, ThreadHeldByAnotherTracer) {
  Child child(kPrograms + "/fc_glibc", {"3"});
  ASSERT_TRUE(child.ready()) << child.ready_line();
  ASSERT_TRUE(child.wait_parked(5, 5));
  pid_t held = 0;
  for (auto& e : std::filesystem::directory_iterator("/proc/" + std::to_string(child.pid()) + "/task")) {
    pid_t tid = std::stoi(e.path().filename());
    if (tid != child.pid()) held = std::max(held, tid);
  }
  ASSERT_NE(held, 0);
  // Another process holds one worker (PTRACE_SEIZE does not stop it); its exit lets the worker go.
  int ack[2];
  ASSERT_EQ(pipe(ack), 0);
  pid_t tracer = fork();
  if (tracer == 0) {
    char ok = ptrace(PTRACE_SEIZE, held, nullptr, nullptr) == 0 ? 'y' : 'n';
    (void)!write(ack[1], &ok, 1);
    for (;;) pause();
  }
  char ok = 0;
  ASSERT_EQ(read(ack[0], &ok, 1), 1);
  close(ack[0]);
  close(ack[1]);
  ASSERT_EQ(ok, 'y');

  std::shared_ptr<MetadataCache> cache;
  auto r = walk_process(child.pid(), validator_metadata(cache), {});
  kill(tracer, SIGKILL);
  waitpid(tracer, nullptr, 0);
  ASSERT_TRUE(r) << r.error();
  ASSERT_EQ(r->threads.size(), 5u);
  for (const ThreadReport& t : r->threads) {
    const Verdict& v = t.unwind.trace.verdict;
    if (t.tid == held) {
      EXPECT_EQ(reason_name(v.reason), "no-registers");
      EXPECT_NE(v.detail.find(fmt::format("already traced by another process (pid {})", tracer)), std::string::npos)
          << v.detail;
    } else {
      EXPECT_GE(t.unwind.trace.frames.size(), 3u) << verdict_text(v);  // walked normally
    }
  }
  for (int i = 0; i < 100 && !child.running_free(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  EXPECT_TRUE(child.running_free());
}

// A process with one thread, held by another tracer: nothing can be walked, and the error says why.
TEST(ProcessTruth, OnlyThreadHeldByAnotherTracer) {
  Child child(kPrograms + "/fc_ns_frame");
  ASSERT_TRUE(child.ready()) << child.ready_line();
  int ack[2];
  ASSERT_EQ(pipe(ack), 0);
  pid_t tracer = fork();
  if (tracer == 0) {
    char ok = ptrace(PTRACE_SEIZE, child.pid(), nullptr, nullptr) == 0 ? 'y' : 'n';
    (void)!write(ack[1], &ok, 1);
    for (;;) pause();
  }
  char ok = 0;
  ASSERT_EQ(read(ack[0], &ok, 1), 1);
  close(ack[0]);
  close(ack[1]);
  std::shared_ptr<MetadataCache> cache;
  auto r = walk_process(child.pid(), validator_metadata(cache), {});
  kill(tracer, SIGKILL);
  waitpid(tracer, nullptr, 0);
  ASSERT_EQ(ok, 'y');
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().find(fmt::format("already traced by another process (pid {})", tracer)), std::string::npos)
      << r.error();
}

// t1's chain runs through t1_mid, whose symbol was stripped: no symbol, so the validator knew no function
// there and wrote no metadata for it. That is `no-metadata`, not a return address "after no call".
TEST(ProcessTruth, ReturnAddressWithoutSymbolOrMetadata) {
  Child child(kPrograms + "/fs_threads_nosym");
  ASSERT_TRUE(child.ready()) << child.ready_line();
  ASSERT_TRUE(child.wait_parked(5, 6));
  std::shared_ptr<MetadataCache> cache;
  auto r = walk_process(child.pid(), validator_metadata(cache), {});
  ASSERT_TRUE(r) << r.error();
  ASSERT_EQ(r->threads.size(), 6u);
  const Trace& t = r->threads[1].unwind.trace;  // t1: fs_pause, park, t1_leaf, (t1_mid), ...
  ASSERT_GE(t.frames.size(), 4u) << verdict_text(t.verdict);
  Names names = symbols(t);
  EXPECT_EQ(Names(names.begin(), names.begin() + 3), (Names{"fs_pause", "park", "t1_leaf"}));
  EXPECT_FALSE(t.verdict.reliable);
  EXPECT_EQ(reason_name(t.verdict.reason), "no-metadata") << verdict_text(t.verdict);
  EXPECT_EQ(t.verdict.frame, 3);
  EXPECT_NE(t.verdict.detail.find(fmt::format("no symbol or metadata for {:#x}", t.frames[3].pc)), std::string::npos)
      << t.verdict.detail;
  // The other threads do not pass through t1_mid: as reliable as in fs_threads.
  EXPECT_TRUE(r->threads[5].unwind.trace.verdict.reliable) << verdict_text(r->threads[5].unwind.trace.verdict);
}

// Starts a one-thread program of tests/programs, waits until it sleeps, walks it: its only thread's unwind
// (nullopt, with the failure recorded, when any step fails).
std::optional<Unwind> walk_only_thread(const std::string& program) {
  Child child(kPrograms + "/" + program);
  if (!child.ready() || !child.wait_parked(1, 1)) {
    ADD_FAILURE() << program << " never got ready: " << child.ready_line();
    return std::nullopt;
  }
  std::shared_ptr<MetadataCache> cache;
  auto r = walk_process(child.pid(), validator_metadata(cache), {});
  if (!r || r->threads.size() != 1) {
    ADD_FAILURE() << program << ": " << (r ? fmt::format("{} threads", r->threads.size()) : r.error());
    return std::nullopt;
  }
  return r->threads[0].unwind;
}

// Issue 14: frames objtool 6.1 does not model. _start zeroes rbp and realigns rsp before its call (as glibc's
// _start does), es_main sets up its frame with `enter $16,$0`: both walks reach _start and end there.
TEST(ProcessTruth, EnterFrameAndRealignedStartAreReliable) {
  const std::optional<Unwind> walked = walk_only_thread("fc_enter_start");
  ASSERT_TRUE(walked);
  const Unwind& u = *walked;
  EXPECT_TRUE(u.trace.verdict.reliable) << verdict_text(u.trace.verdict);
  EXPECT_EQ(symbols(u.trace), (Names{"es_leaf", "es_main", "_start"}));
  EXPECT_TRUE(u.cfa_trace.verdict.reliable) << verdict_text(u.cfa_trace.verdict);
  EXPECT_EQ(symbols(u.cfa_trace), (Names{"es_leaf", "es_main", "_start"}));
}

// The same program with `enter $16,$1`: a nesting level framecert does not model, so es_main's call is
// one without a frame and the walk is not reliable.
TEST(ProcessTruth, EnterWithNestingLevelIsNotAFrame) {
  const std::optional<Unwind> walked = walk_only_thread("fc_enter_nested");
  ASSERT_TRUE(walked);
  const Verdict& v = walked->trace.verdict;
  EXPECT_FALSE(v.reliable);
  EXPECT_EQ(reason_name(v.reason), "no-frame-at-call-site") << verdict_text(v);
  EXPECT_EQ(v.frame, 1);
}

// Issue 14: tail calls. tc_main calls tc_a, which reaches tc_leaf through two proven tail calls: the chain
// tc_leaf <- tc_main <- _start is complete and reliable, in both walks.
TEST(ProcessTruth, ACalleeReachedThroughProvenTailCallsIsReliable) {
  const std::optional<Unwind> walked = walk_only_thread("fc_tail_call");
  ASSERT_TRUE(walked);
  const Unwind& u = *walked;
  EXPECT_TRUE(u.trace.verdict.reliable) << verdict_text(u.trace.verdict);
  EXPECT_EQ(symbols(u.trace), (Names{"tc_leaf", "tc_main", "_start"}));
  EXPECT_TRUE(u.cfa_trace.verdict.reliable) << verdict_text(u.cfa_trace.verdict);
}

// The same chain with the second tail call made indirect: nothing proves tc_a reaches tc_leaf, so the call
// target check still fires (it is not switched off by the presence of tail calls).
TEST(ProcessTruth, AnUnprovenTailCallLeavesTheCallTargetMismatch) {
  const std::optional<Unwind> walked = walk_only_thread("fc_tail_call_indirect");
  ASSERT_TRUE(walked);
  const Verdict& v = walked->trace.verdict;
  EXPECT_FALSE(v.reliable);
  EXPECT_EQ(reason_name(v.reason), "call-target-mismatch") << verdict_text(v);
  EXPECT_NE(v.detail.find("calls tc_a but the frame below runs in tc_leaf"), std::string::npos) << v.detail;
}

// Issue 14: the skipped-frame scans' precision. fl_keeps_frame_address keeps __builtin_frame_address(0) in a
// local and fl_keeps_return_address its _RET_IP_, both under a VLA (no exact frame size, so the scans run
// over their frames): the validator's self slots show both values are the functions' own copies, and the
// walk is reliable. With the slots ignored (the metadata stripped of them) the same stack is frame-skipped — the scans
// do look there.
TEST(ProcessTruth, FramesKeepingTheirOwnFrameOrReturnAddressAreReliable) {
  const std::optional<Unwind> walked = walk_only_thread("fc_frame_locals");
  ASSERT_TRUE(walked);
  const Unwind& u = *walked;
  EXPECT_TRUE(u.trace.verdict.reliable) << verdict_text(u.trace.verdict);
  EXPECT_EQ(symbols(u.trace),
            (Names{"fl_wait", "fl_keeps_return_address", "fl_keeps_frame_address", "fl_main", "_start"}));
  EXPECT_TRUE(u.cfa_trace.verdict.reliable) << verdict_text(u.cfa_trace.verdict);
}

TEST(ProcessTruth, WithoutSelfSlotsTheOwnCopiesLookLikeSkippedFrames) {
  Child child(kPrograms + "/fc_frame_locals");
  ASSERT_TRUE(child.ready() && child.wait_parked(1, 1)) << child.ready_line();
  std::shared_ptr<MetadataCache> cache;
  const MetadataProvider with_slots = validator_metadata(cache);
  size_t slots = 0;
  const MetadataProvider without_slots = [&](const ElfImage& image, std::string& error) {
    std::shared_ptr<const FrameTable> table = with_slots(image, error);
    if (!table) return table;
    auto copy = std::make_shared<FrameTable>(*table);
    for (FrameSection& s : copy->sections) {
      slots += s.self_slots.size();
      s.self_slots.clear();
    }
    return std::shared_ptr<const FrameTable>(copy);
  };
  auto r = walk_process(child.pid(), without_slots, {});
  ASSERT_TRUE(r && r->threads.size() == 1) << (r ? "" : r.error());
  const Verdict& v = r->threads[0].unwind.trace.verdict;
  EXPECT_FALSE(v.reliable);
  EXPECT_EQ(reason_name(v.reason), "frame-skipped") << verdict_text(v);
  EXPECT_GE(slots, 2u) << "one frame-address and one return-address slot";
}

// Separate debug files found by build-id: Debian's stripped libc has no symbol for start_thread (only
// .dynsym); libc6-dbg's /usr/lib/debug/.build-id/xx/yyyy.debug has. Symbols only: the metadata still comes
// from the validator's view of the stripped file, so the verdict at that frame is unchanged.
TEST(DebugFiles, GlibcThreadStartIsNamed) {
  Child child(kPrograms + "/fc_glibc", {"1"});
  ASSERT_TRUE(child.ready()) << child.ready_line();
  ASSERT_TRUE(child.wait_parked(3, 3));
  std::shared_ptr<MetadataCache> cache;
  auto r = walk_process(child.pid(), validator_metadata(cache), {});
  ASSERT_TRUE(r) << r.error();
  const ThreadReport& worker = r->threads[1];
  ASSERT_FALSE(worker.unwind.trace.frames.empty());
  const Frame& last = worker.unwind.trace.frames.back();
  auto img = read_elf_image("/proc/" + std::to_string(child.pid()) + "/root" + last.object);
  ASSERT_TRUE(img) << img.error();
  std::string debug =
      "/usr/lib/debug/.build-id/" + img->build_id.substr(0, 2) + "/" + img->build_id.substr(2) + ".debug";
  if (!std::filesystem::exists(debug)) GTEST_SKIP() << "no debug file for " << last.object << " (libc6-dbg): " << debug;
  EXPECT_EQ(last.symbol, "start_thread") << last.object;
  EXPECT_FALSE(worker.unwind.trace.verdict.reliable);

  // Without debug files, as before: no name there.
  ProcessWalkOptions o;
  o.code.debug_files = false;
  auto plain = walk_process(child.pid(), validator_metadata(cache), o);
  ASSERT_TRUE(plain) << plain.error();
  EXPECT_EQ(plain->threads[1].unwind.trace.frames.back().symbol, "");
}

// A file under another object's build-id is not taken for its debug file.
TEST(DebugFiles, WrongBuildIdIsIgnored) {
  auto img = read_elf_image(kPrograms + "/fs_threads_nosym");
  ASSERT_TRUE(img) << img.error();
  ASSERT_FALSE(img->build_id.empty());
  auto dir = std::filesystem::temp_directory_path() / ("framecert-debug-" + std::to_string(getpid()));
  auto sub = dir / img->build_id.substr(0, 2);
  std::filesystem::create_directories(sub);
  // fc_ns_frame has symbols, but another build-id.
  std::filesystem::copy_file(kPrograms + "/fc_ns_frame", sub / (img->build_id.substr(2) + ".debug"));
  size_t before = img->symbols.size();
  EXPECT_FALSE(add_debug_file_symbols(*img, dir.string()));
  EXPECT_EQ(img->symbols.size(), before);
  // The right one (fs_threads itself, same build-id, with t1_mid) is taken.
  std::filesystem::copy_file(kPrograms + "/fs_threads", sub / (img->build_id.substr(2) + ".debug"),
                             std::filesystem::copy_options::overwrite_existing);
  EXPECT_TRUE(add_debug_file_symbols(*img, dir.string()));
  EXPECT_EQ(img->symbols.size(), before + 1);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace framecert::testing

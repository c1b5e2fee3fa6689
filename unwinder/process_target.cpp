#include "unwinder/process_target.h"

#include <dirent.h>
#include <sys/ptrace.h>
#include <sys/user.h>
#include <sys/wait.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>
#include <set>
#include <thread>

namespace framecert {

SignalShield::SignalShield() {
  sigset_t block;
  sigemptyset(&block);
  for (int s : {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGTSTP}) sigaddset(&block, s);
  pthread_sigmask(SIG_BLOCK, &block, &saved_);
}

SignalShield::~SignalShield() { pthread_sigmask(SIG_SETMASK, &saved_, nullptr); }

namespace {

std::vector<pid_t> list_tasks(pid_t pid) {
  std::vector<pid_t> out;
  std::string dir = "/proc/" + std::to_string(pid) + "/task";
  DIR* d = opendir(dir.c_str());
  if (!d) return out;
  while (dirent* e = readdir(d)) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    out.push_back(static_cast<pid_t>(std::atoi(e->d_name)));
  }
  closedir(d);
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

Result<std::unique_ptr<FrozenProcess>> FrozenProcess::freeze(pid_t pid, std::chrono::milliseconds timeout) {
  if (list_tasks(pid).empty()) return fail("process {} does not exist", pid);
  std::unique_ptr<FrozenProcess> p(new FrozenProcess(pid));
  if (auto r = p->seize_all(std::chrono::steady_clock::now() + timeout); !r) {
    p->detach();
    return tl::unexpected(r.error());
  }
  return p;
}

Result<void> FrozenProcess::seize_all(std::chrono::steady_clock::time_point deadline) {
  std::set<pid_t> known;
  // Threads may be created while we attach: list again until a listing shows nothing new after
  // everything listed before has stopped (a stopped thread cannot clone).
  for (int round = 0; round < 100; ++round) {
    std::vector<pid_t> fresh;
    for (pid_t tid : list_tasks(pid_)) {
      if (known.insert(tid).second) fresh.push_back(tid);
    }
    if (fresh.empty()) break;
    for (pid_t tid : fresh) {
      if (ptrace(PTRACE_SEIZE, tid, nullptr, nullptr) != 0) {
        if (errno == ESRCH) continue;  // exited
        if (tracees_.empty())
          return fail("cannot attach to {} (thread {}): {}", pid_, tid, std::strerror(errno));
        unstopped_.push_back(tid);
        continue;
      }
      tracees_.push_back({tid});
      ptrace(PTRACE_INTERRUPT, tid, nullptr, nullptr);
    }
    // Wait for each new tracee's stop.
    for (Tracee& t : tracees_) {
      if (t.stopped) continue;
      for (;;) {
        int status = 0;
        pid_t r = waitpid(t.tid, &status, __WALL | WNOHANG);
        if (r == t.tid) {
          if (WIFEXITED(status) || WIFSIGNALED(status)) break;  // gone
          if (WIFSTOPPED(status)) {
            int event = status >> 16;
            int sig = WSTOPSIG(status);
            if (event == 0 && sig != SIGTRAP) t.pending_signal = sig;  // signal-delivery-stop: give it back later
            t.stopped = true;
            break;
          }
        } else if (r < 0 && errno != EINTR) {
          break;  // not our child any more (exited and reaped)
        }
        if (std::chrono::steady_clock::now() > deadline) {
          unstopped_.push_back(t.tid);
          break;
        }
        std::this_thread::sleep_for(std::chrono::microseconds(200));
      }
    }
  }
  if (std::none_of(tracees_.begin(), tracees_.end(), [](const Tracee& t) { return t.stopped; }))
    return fail("no thread of process {} could be stopped", pid_);
  return {};
}

std::vector<pid_t> FrozenProcess::threads() const {
  std::vector<pid_t> out;
  for (const Tracee& t : tracees_)
    if (t.stopped) out.push_back(t.tid);
  std::sort(out.begin(), out.end());
  return out;
}

Result<Regs> FrozenProcess::regs(pid_t tid) const {
  user_regs_struct r;
  if (ptrace(PTRACE_GETREGS, tid, nullptr, &r) != 0) return fail("thread {}: PTRACE_GETREGS: {}", tid, std::strerror(errno));
  return Regs{r.rip, r.rsp, r.rbp, static_cast<int64_t>(r.orig_rax)};
}

Result<void> FrozenProcess::detach() {
  if (detached_) return {};
  detached_ = true;
  std::string errors;
  for (const Tracee& t : tracees_) {
    // A tracee that never reported its stop is still attached; the kernel needs it stopped to detach, so
    // interrupt and wait briefly once more before giving up (our exit would detach it anyway).
    if (!t.stopped) {
      ptrace(PTRACE_INTERRUPT, t.tid, nullptr, nullptr);
      int status;
      for (int i = 0; i < 50 && waitpid(t.tid, &status, __WALL | WNOHANG) == 0; ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    if (ptrace(PTRACE_DETACH, t.tid, nullptr, reinterpret_cast<void*>(static_cast<intptr_t>(t.pending_signal))) != 0 &&
        errno != ESRCH)
      errors += fmt::format(" {}: {}", t.tid, std::strerror(errno));
  }
  shield_.reset();  // pending SIGINT/SIGTERM are delivered now, with the process already released
  if (!errors.empty()) return fail("detach failed for{}", errors);
  return {};
}

FrozenProcess::~FrozenProcess() { detach(); }

std::string thread_name(pid_t pid, pid_t tid) {
  auto text = read_proc_file("/proc/" + std::to_string(pid) + "/task/" + std::to_string(tid) + "/comm");
  if (!text) return {};  // exited meanwhile
  return text->substr(0, text->find('\n'));
}

char thread_state(pid_t pid, pid_t tid) {
  auto text = read_proc_file("/proc/" + std::to_string(pid) + "/task/" + std::to_string(tid) + "/stat");
  if (!text) return 0;  // exited meanwhile
  const std::string& s = *text;
  auto close = s.rfind(')');  // comm may contain spaces and parentheses
  if (close == std::string::npos || close + 2 >= s.size()) return 0;
  return s[close + 2];
}

Result<CodeMap> build_code_map(const std::vector<Mapping>& maps, const MetadataProvider& metadata) {
  CodeMap code;
  std::map<std::string, std::shared_ptr<ElfImage>> images;
  std::map<std::string, std::shared_ptr<const FrameTable>> tables;
  std::map<std::string, std::string> table_errors;
  for (const Mapping& m : maps) {
    if (!m.executable) continue;
    CodeImage ci;
    ci.path = m.path.empty() ? "[anon]" : m.path;
    ci.start = m.start;
    ci.end = m.end;
    bool file = !m.path.empty() && m.path[0] == '/' && m.path.find(" (deleted)") == std::string::npos;
    if (!file) {
      ci.metadata_error = "not a file mapping";
      code.add(std::move(ci));
      continue;
    }
    auto& img = images[m.path];
    if (!img) {
      auto r = read_elf_image(m.path);
      if (!r) {
        ci.metadata_error = r.error();
        code.add(std::move(ci));
        continue;
      }
      img = std::make_shared<ElfImage>(std::move(*r));
      std::string error;
      tables[m.path] = metadata(*img, error);
      table_errors[m.path] = error;
    }
    auto bias = load_bias(*img, m);
    if (!bias) {
      ci.metadata_error = bias.error();
      code.add(std::move(ci));
      continue;
    }
    ci.bias = *bias;
    ci.symbols = std::shared_ptr<const SymbolTable>(img, &img->symbols);
    ci.metadata = tables[m.path];
    ci.metadata_error = table_errors[m.path];
    code.add(std::move(ci));
  }
  return code;
}

}  // namespace framecert

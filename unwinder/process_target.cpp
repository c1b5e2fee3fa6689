#include "unwinder/process_target.h"

#include <dirent.h>
#include <elf.h>
#include <fcntl.h>
#include <sys/ptrace.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/user.h>
#include <sys/wait.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>
#include <set>
#include <thread>
#include <tuple>

#include "unwinder/memory_ptrace.h"

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
        int err = errno;
        if (err == ESRCH) continue;  // exited and reaped
        char state = thread_state(pid_, tid);
        if (state == 0) continue;  // gone meanwhile
        if (state == 'Z' || state == 'X') {
          // ptrace refuses an exited thread (EPERM) whose process has not reaped it: a main thread that
          // called pthread_exit while others run stays like this until the whole process exits.
          not_stopped(tid, tid == pid_ ? "the thread has exited (the main thread ended, e.g. by pthread_exit, "
                                         "while other threads run): no registers to read"
                                       : "the thread has exited (not yet reaped): no registers to read");
        } else if (pid_t tracer = tracer_of(pid_, tid); err == EPERM && tracer != 0 && tracer != getpid()) {
          not_stopped(tid, fmt::format("cannot attach ({}): already traced by another process (pid {})",
                                       std::strerror(err), tracer));
        } else {
          not_stopped(tid, fmt::format("cannot attach: {}", std::strerror(err)));
        }
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
          not_stopped(t.tid, "the thread could not be stopped (no stop reported before the deadline)");
          break;
        }
        std::this_thread::sleep_for(std::chrono::microseconds(200));
      }
    }
  }
  if (std::none_of(tracees_.begin(), tracees_.end(), [](const Tracee& t) { return t.stopped; })) {
    std::string why;
    for (pid_t tid : unstopped_)
      why += fmt::format("{}thread {}: {}", why.empty() ? ": " : "; ", tid, unstopped_reason(tid));
    return fail("no thread of process {} could be stopped{}", pid_, why);
  }
  return {};
}

void FrozenProcess::not_stopped(pid_t tid, std::string why) {
  if (!unstopped_reasons_.count(tid)) unstopped_.push_back(tid);
  unstopped_reasons_[tid] = std::move(why);
}

std::string FrozenProcess::unstopped_reason(pid_t tid) const {
  auto it = unstopped_reasons_.find(tid);
  return it == unstopped_reasons_.end() ? "the thread could not be stopped" : it->second;
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
  if (ptrace(PTRACE_GETREGS, tid, nullptr, &r) != 0)
    return fail("thread {}: PTRACE_GETREGS: {}", tid, std::strerror(errno));
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

pid_t tracer_of(pid_t pid, pid_t tid) {
  auto text = read_proc_file("/proc/" + std::to_string(pid) + "/task/" + std::to_string(tid) + "/status");
  if (!text) return 0;
  auto at = text->find("\nTracerPid:");
  if (at == std::string::npos) return 0;
  return static_cast<pid_t>(std::atoi(text->c_str() + at + 11));
}

pid_t live_thread(pid_t pid) {
  auto alive = [pid](pid_t tid) {
    char st = thread_state(pid, tid);
    return st != 0 && st != 'Z' && st != 'X';
  };
  if (alive(pid)) return pid;
  for (pid_t tid : list_tasks(pid))
    if (alive(tid)) return tid;
  return 0;
}

namespace {

bool is_deleted(const std::string& path) {
  static const std::string kDeleted = " (deleted)";
  return path.size() > kDeleted.size() && path.compare(path.size() - kDeleted.size(), kDeleted.size(), kDeleted) == 0;
}

// The build-id in the ELF headers the process itself mapped for the file of `m` (its mapping at file
// offset 0), read from the process's memory; empty when it cannot be read.
std::string mapped_build_id(pid_t pid, const Mapping& m, const std::vector<Mapping>& maps) {
  const Mapping* head = nullptr;
  for (const Mapping& h : maps) {
    if (h.inode == m.inode && h.dev_major == m.dev_major && h.dev_minor == m.dev_minor && h.offset == 0 && h.readable &&
        h.path == m.path) {
      head = &h;
      break;
    }
  }
  if (!head) return {};
  ProcessMemory mem(pid);
  Elf64_Ehdr eh;
  if (mem.read(RemoteAddr(head->start), &eh, sizeof eh) != sizeof eh) return {};
  if (std::memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0 || eh.e_ident[EI_CLASS] != ELFCLASS64 ||
      eh.e_phentsize != sizeof(Elf64_Phdr) || eh.e_phnum == 0 || eh.e_phnum > 256)
    return {};
  std::vector<Elf64_Phdr> ph(eh.e_phnum);
  size_t bytes = ph.size() * sizeof(Elf64_Phdr);
  if (eh.e_phoff > head->end - head->start || mem.read(RemoteAddr(head->start + eh.e_phoff), ph.data(), bytes) != bytes)
    return {};
  std::optional<uint64_t> bias;
  for (const Elf64_Phdr& p : ph) {
    if (p.p_type == PT_LOAD && p.p_offset == 0) {
      bias = head->start - (p.p_vaddr & ~uint64_t{0xfff});
      break;
    }
  }
  if (!bias) return {};
  for (const Elf64_Phdr& p : ph) {
    if (p.p_type != PT_NOTE || p.p_filesz == 0 || p.p_filesz > 65536) continue;
    std::vector<uint8_t> notes(p.p_filesz);
    if (mem.read(RemoteAddr(*bias + p.p_vaddr), notes.data(), notes.size()) != notes.size()) continue;
    std::string id = build_id_from_notes(notes.data(), notes.size());
    if (!id.empty()) return id;
  }
  return {};
}

}  // namespace

Result<ElfImage> open_mapped_image(pid_t pid, const Mapping& m, const std::vector<Mapping>& maps,
                                   const CodeMapOptions& options) {
  bool deleted = is_deleted(m.path);
  std::string name = deleted ? m.path.substr(0, m.path.size() - 10) : m.path;
  ScopedFd fd;
  std::string tried;
  if (options.use_map_files) {
    std::string p = fmt::format("/proc/{}/map_files/{:x}-{:x}", pid, m.start, m.end);
    fd = ScopedFd(::open(p.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd.valid()) tried = fmt::format("{}: {}", p, std::strerror(errno));
  }
  // A deleted file has no path left to open: only map_files reaches it.
  if (!fd.valid() && !deleted) {
    std::string p = fmt::format("/proc/{}/root{}", pid, m.path);
    fd = ScopedFd(::open(p.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd.valid()) tried += fmt::format("{}{}: {}", tried.empty() ? "" : "; ", p, std::strerror(errno));
  }
  if (!fd.valid()) return fail("cannot open the file the process mapped at {} ({})", m.path, tried);
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return fail("{}: fstat: {}", m.path, std::strerror(errno));
  bool same_file = st.st_dev == makedev(m.dev_major, m.dev_minor) && st.st_ino == m.inode;
  auto img = read_elf_image(std::move(fd), m.path);
  if (same_file) return img;
  // Device and inode differ — a different file, or the same one seen through a file system that reports
  // other numbers to stat than to /proc/PID/maps (overlayfs, btrfs subvolumes). Only the build-id in the
  // process's own mapped headers can then prove the file is the mapped one.
  std::string mapped_id = mapped_build_id(pid, m, maps);
  if (img && !img->build_id.empty() && img->build_id == mapped_id) return img;
  std::string ids;
  if (mapped_id.empty())
    ids = "no build-id readable in the process to compare";
  else
    ids = fmt::format("build-id {} in the process, {} in the file", mapped_id,
                      img && !img->build_id.empty() ? img->build_id : "none");
  return fail(
      "the file at {} is not the one the process mapped (device/inode differ: {:02x}:{:02x} inode {} "
      "mapped, {:02x}:{:02x} inode {} opened; {})",
      name, m.dev_major, m.dev_minor, m.inode, major(st.st_dev), minor(st.st_dev), static_cast<uint64_t>(st.st_ino),
      ids);
}

Result<CodeMap> build_code_map(pid_t pid, const std::vector<Mapping>& maps, const MetadataProvider& metadata,
                               const CodeMapOptions& options) {
  CodeMap code;
  // One object per mapped file (device, inode and name from the maps line), opened and verified once.
  struct Loaded {
    std::shared_ptr<ElfImage> image;  // null: not proven to be the mapped file (error says why)
    std::shared_ptr<const FrameTable> table;
    std::string error;
  };
  std::map<std::tuple<unsigned, unsigned, uint64_t, std::string>, Loaded> objects;
  for (const Mapping& m : maps) {
    if (!m.executable) continue;
    CodeImage ci;
    ci.path = m.path.empty() ? "[anon]" : m.path;
    ci.start = m.start;
    ci.end = m.end;
    bool file = !m.path.empty() && m.path[0] == '/';
    if (!file) {
      ci.metadata_error = "not a file mapping";
      code.add(std::move(ci));
      continue;
    }
    Loaded& obj = objects[{m.dev_major, m.dev_minor, m.inode, m.path}];
    if (!obj.image && obj.error.empty()) {
      auto r = open_mapped_image(pid, m, maps, options);
      if (!r) {
        obj.error = r.error();
      } else {
        if (options.debug_files) add_debug_file_symbols(*r);
        obj.image = std::make_shared<ElfImage>(std::move(*r));
        obj.table = metadata(*obj.image, obj.error);
      }
    }
    if (!obj.image) {
      ci.metadata_error = obj.error;  // no symbols either: they would be another file's
      code.add(std::move(ci));
      continue;
    }
    auto bias = load_bias(*obj.image, m);
    if (!bias) {
      ci.metadata_error = bias.error();
      code.add(std::move(ci));
      continue;
    }
    ci.bias = *bias;
    ci.symbols = std::shared_ptr<const SymbolTable>(obj.image, &obj.image->symbols);
    ci.metadata = obj.table;
    ci.metadata_error = obj.error;
    code.add(std::move(ci));
  }
  return code;
}

}  // namespace framecert

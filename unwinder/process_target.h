// A live process as an unwind target: freeze every thread (PTRACE_SEIZE + PTRACE_INTERRUPT), read their
// registers, and always leave the process running afterwards. The attachment is an RAII object; while it
// exists the usual terminating signals are blocked, so a Ctrl-C or kill (other than SIGKILL, after which
// the kernel detaches for us) is only acted on once every thread has been detached.
#pragma once

#include <signal.h>
#include <sys/types.h>

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "unwinder/code_map.h"
#include "unwinder/elf_image.h"
#include "unwinder/proc_maps.h"
#include "unwinder/regs.h"
#include "unwinder/result.h"

namespace framecert {

// Blocks SIGINT, SIGTERM, SIGHUP, SIGQUIT and SIGTSTP for its lifetime; pending ones arrive on release.
class SignalShield {
 public:
  SignalShield();
  ~SignalShield();
  SignalShield(const SignalShield&) = delete;
  SignalShield& operator=(const SignalShield&) = delete;

 private:
  sigset_t saved_;
};

class FrozenProcess {
 public:
  // Stops every thread of `pid`. Threads that exit meanwhile are dropped; threads that cannot be stopped
  // (exited but not reaped — e.g. a main thread that called pthread_exit —, held by another tracer, or not
  // stopping within `timeout`) are reported by `unstopped()`, each with why, and never walked.
  static Result<std::unique_ptr<FrozenProcess>> freeze(pid_t pid,
                                                       std::chrono::milliseconds timeout = std::chrono::seconds(2));
  ~FrozenProcess();  // detaches if detach() was not called
  FrozenProcess(const FrozenProcess&) = delete;
  FrozenProcess& operator=(const FrozenProcess&) = delete;

  pid_t pid() const { return pid_; }
  std::vector<pid_t> threads() const;  // stopped, in tid order
  const std::vector<pid_t>& unstopped() const { return unstopped_; }
  // Why `tid` (one of unstopped()) was not stopped, in words.
  std::string unstopped_reason(pid_t tid) const;
  Result<Regs> regs(pid_t tid) const;
  // Detaches every thread (re-injecting any signal that was being delivered). Idempotent.
  Result<void> detach();

 private:
  explicit FrozenProcess(pid_t pid) : pid_(pid) {}
  struct Tracee {
    pid_t tid;
    bool stopped = false;
    int pending_signal = 0;  // a signal-delivery-stop we intercepted: handed back on detach
  };
  Result<void> seize_all(std::chrono::steady_clock::time_point deadline);

  pid_t pid_;
  std::unique_ptr<SignalShield> shield_ = std::make_unique<SignalShield>();
  std::vector<Tracee> tracees_;
  std::vector<pid_t> unstopped_;
  std::map<pid_t, std::string> unstopped_reasons_;
  bool detached_ = false;
  void not_stopped(pid_t tid, std::string why);
};

std::string thread_name(pid_t pid, pid_t tid);
// The one-letter state of /proc/PID/task/TID/stat ('R', 'S', 't', ...), or 0.
char thread_state(pid_t pid, pid_t tid);
// The TracerPid of /proc/PID/task/TID/status: 0 when nobody traces the thread (or it is gone).
pid_t tracer_of(pid_t pid, pid_t tid);
// A thread of `pid` that has not exited (the process's address space is reachable through /proc/TID/...):
// `pid` itself unless the main thread is a zombie while others run; 0 if there is none.
pid_t live_thread(pid_t pid);

// Metadata for one mapped object: returns null (with `error` set) when none can be had.
using MetadataProvider = std::function<std::shared_ptr<const FrameTable>(const ElfImage&, std::string& error)>;

struct CodeMapOptions {
  // Open mapped objects through /proc/PID/map_files/START-END (the very file mapped, whatever the process's
  // mount namespace); off: only through /proc/PID/root/PATH (tests use it to reach the fallback).
  bool use_map_files = true;
  // Add symbols from separate debug files found by build-id (/usr/lib/debug/.build-id/xx/yyyy.debug).
  bool debug_files = true;
};

// Opens the object a file mapping of process `pid` maps, as that process sees it — /proc/PID/map_files/
// START-END, else /proc/PID/root/PATH — and proves it is the mapped file: its device and inode must be
// those of the maps line, or else its build-id must equal the one in the process's own mapped ELF headers.
// Fails (in words: "the file at PATH is not the one the process mapped ...") when it cannot prove that.
// `maps`: all mappings of the process (to find the mapped ELF header of that file).
Result<ElfImage> open_mapped_image(pid_t pid, const Mapping& m, const std::vector<Mapping>& maps,
                                   const CodeMapOptions& options = {});

// The executable mappings of process `pid` (any of its live threads) as a CodeMap: ELF symbols, load bias
// and metadata per object, read only from files proven to be the mapped ones (open_mapped_image).
Result<CodeMap> build_code_map(pid_t pid, const std::vector<Mapping>& maps, const MetadataProvider& metadata,
                               const CodeMapOptions& options = {});

}  // namespace framecert

// A live process as an unwind target: freeze every thread (PTRACE_SEIZE + PTRACE_INTERRUPT), read their
// registers, and always leave the process running afterwards. The attachment is an RAII object; while it
// exists the usual terminating signals are blocked, so a Ctrl-C or kill (other than SIGKILL, after which
// the kernel detaches for us) is only acted on once every thread has been detached.
#pragma once

#include <signal.h>
#include <sys/types.h>

#include <chrono>
#include <functional>
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
  // Stops every thread of `pid`. Threads that exit meanwhile are dropped; threads that do not stop within
  // `timeout` are reported by `unstopped()` and never walked.
  static Result<std::unique_ptr<FrozenProcess>> freeze(pid_t pid,
                                                       std::chrono::milliseconds timeout = std::chrono::seconds(2));
  ~FrozenProcess();  // detaches if detach() was not called
  FrozenProcess(const FrozenProcess&) = delete;
  FrozenProcess& operator=(const FrozenProcess&) = delete;

  pid_t pid() const { return pid_; }
  std::vector<pid_t> threads() const;  // stopped, in tid order
  const std::vector<pid_t>& unstopped() const { return unstopped_; }
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
  bool detached_ = false;
};

std::string thread_name(pid_t pid, pid_t tid);
// The one-letter state of /proc/PID/task/TID/stat ('R', 'S', 't', ...), or 0.
char thread_state(pid_t pid, pid_t tid);

// Metadata for one mapped object: returns null (with `error` set) when none can be had.
using MetadataProvider = std::function<std::shared_ptr<const FrameTable>(const ElfImage&, std::string& error)>;

// The executable mappings of a process as a CodeMap: ELF symbols, load bias and metadata per object.
Result<CodeMap> build_code_map(const std::vector<Mapping>& maps, const MetadataProvider& metadata);

}  // namespace framecert

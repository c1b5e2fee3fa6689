#include "unwinder/process_walk.h"

#include <algorithm>
#include <chrono>

#include "unwinder/memory_ptrace.h"

namespace framecert {

namespace {
double ms_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t).count();
}
}  // namespace

Result<ProcessReport> walk_process(pid_t pid, const MetadataProvider& metadata, const ProcessWalkOptions& options) {
  ProcessReport report;
  report.pid = pid;
  // Metadata first, while the process still runs: computing it may take seconds and must not extend the
  // time the process is frozen. Mappings are read again once frozen; objects mapped meanwhile get
  // metadata then.
  // The common ways to name a process that cannot be walked, in words, before /proc/PID/maps says less.
  // A main thread that exited (pthread_exit) while other threads run is a zombie too: that process is
  // walked, through one of its live threads (the address space is no longer reachable through the main
  // thread's /proc entries).
  pid_t live = live_thread(pid);
  switch (thread_state(pid, pid)) {
    case 0:
      return fail("process {} does not exist", pid);
    case 'Z':
      if (!live) return fail("process {} is a zombie (it exited; its parent has not reaped it): no stack to walk", pid);
      break;
    case 'X':
      if (!live) return fail("process {} is exiting: no stack to walk", pid);
      break;
    default:
      break;
  }
  auto early_maps = read_maps(live);
  if (!early_maps) return tl::unexpected(early_maps.error());
  if (auto warm = build_code_map(live, *early_maps, metadata, options.code); !warm) return tl::unexpected(warm.error());

  auto t0 = std::chrono::steady_clock::now();
  auto frozen = FrozenProcess::freeze(pid);
  if (!frozen) return tl::unexpected(frozen.error());
  report.freeze_ms = ms_since(t0);
  // A stopped thread cannot exit on its own: read the address space through one (the main thread if it is).
  std::vector<pid_t> stopped = (*frozen)->threads();
  if (!stopped.empty() && std::find(stopped.begin(), stopped.end(), pid) == stopped.end()) live = stopped.front();
  auto maps = read_maps(live);
  if (!maps) return tl::unexpected(maps.error());
  auto code = build_code_map(live, *maps, metadata, options.code);
  if (!code) return tl::unexpected(code.error());

  ProcessMemory raw(live);
  CachedMemory memory(raw);
  auto t1 = std::chrono::steady_clock::now();
  for (pid_t tid : (*frozen)->threads()) {
    ThreadReport tr;
    tr.tid = tid;
    tr.name = thread_name(pid, tid);
    auto regs = (*frozen)->regs(tid);
    if (!regs) {
      tr.unwind.trace.verdict = Verdict{false, Reason::NoRegisters, 0, regs.error()};
      report.threads.push_back(std::move(tr));
      continue;
    }
    tr.regs = *regs;
    tr.bounds = stack_bounds_for(*maps, regs->rsp);
    StackBounds bounds = tr.bounds.value_or(StackBounds{});  // empty: every frame is out of bounds
    WalkContext ctx{memory, *code, bounds, options.walk};
    tr.unwind = unwind(ctx, *regs);
    report.frames += tr.unwind.trace.frames.size();
    report.threads.push_back(std::move(tr));
  }
  report.walk_ms = ms_since(t1);
  for (pid_t tid : (*frozen)->unstopped()) {
    ThreadReport tr;
    tr.tid = tid;
    tr.name = thread_name(pid, tid);
    tr.unwind.trace.verdict = Verdict{false, Reason::NoRegisters, 0, (*frozen)->unstopped_reason(tid)};
    report.threads.push_back(std::move(tr));
  }
  if (options.oracle_libunwind) {
    auto t2 = std::chrono::steady_clock::now();
    LibunwindOracle oracle;
    for (ThreadReport& tr : report.threads) {
      if (!tr.regs) continue;
      tr.oracle = oracle.trace(tr.tid);
      tr.oracle_check = compare_with_oracle(tr.unwind.trace, *tr.oracle);
      report.oracle_frames += tr.oracle->pcs.size();
    }
    report.oracle_ms = ms_since(t2);
  }
  if (options.while_frozen) options.while_frozen(**frozen, *code, report);
  auto detached = (*frozen)->detach();
  report.total_frozen_ms = ms_since(t0);
  if (!detached) return tl::unexpected(detached.error());
  return report;
}

}  // namespace framecert

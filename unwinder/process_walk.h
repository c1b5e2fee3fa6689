// Walk every thread of a live process: freeze, build the code map (symbols + metadata), unwind each thread
// with both walkers (and optionally libunwind), detach. The one entry point for `framecert walk --pid`,
// the process tests and the benchmark.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "unwinder/libunwind_oracle.h"
#include "unwinder/process_target.h"
#include "unwinder/stack_bounds.h"
#include "unwinder/unwind.h"

namespace framecert {

struct ThreadReport {
  pid_t tid = 0;
  std::string name;
  std::optional<Regs> regs;
  std::optional<StackBounds> bounds;
  Unwind unwind;
  std::optional<OracleTrace> oracle;
  std::optional<OracleComparison> oracle_check;
  // A disagreement with an independent walker on a trace we call reliable: a suspected false reliable.
  bool suspect() const { return unwind.trace.verdict.reliable && oracle_check && !oracle_check->agree; }
};

struct ProcessReport {
  pid_t pid = 0;
  std::vector<ThreadReport> threads;
  double freeze_ms = 0, walk_ms = 0, oracle_ms = 0, total_frozen_ms = 0;
  size_t frames = 0, oracle_frames = 0;
};

struct ProcessWalkOptions {
  WalkOptions walk;
  bool oracle_libunwind = false;
  CodeMapOptions code;  // how mapped objects are opened and verified
  // Runs while every thread is stopped (tests use it to snapshot stacks). Must not detach.
  std::function<void(const FrozenProcess&, const CodeMap&, const ProcessReport&)> while_frozen;
};

Result<ProcessReport> walk_process(pid_t pid, const MetadataProvider& metadata, const ProcessWalkOptions& options);

}  // namespace framecert

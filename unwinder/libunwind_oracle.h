// An independent opinion on a live thread's stack: libunwind-ptrace, driven by DWARF CFI. It shares no
// code or data with our walkers (it reads .eh_frame, we read validator metadata), so agreement on every
// trace we call reliable is evidence; a disagreement there is a suspected false reliable.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "unwinder/trace.h"

namespace framecert {

struct OracleTrace {
  std::vector<uint64_t> pcs;
  std::string error;  // why libunwind stopped early, if it said so
};

struct OracleComparison {
  bool agree = false;
  std::string detail;
};

// One libunwind address space per process (libunwind caches unwind info in it). The threads walked must be
// ptrace-stopped by the caller.
class LibunwindOracle {
 public:
  LibunwindOracle();
  ~LibunwindOracle();
  LibunwindOracle(const LibunwindOracle&) = delete;
  LibunwindOracle& operator=(const LibunwindOracle&) = delete;

  OracleTrace trace(pid_t tid, size_t max_frames = 4096);

 private:
  struct Api;  // libunwind's entry points, loaded with dlopen on construction
  std::unique_ptr<Api> api_;
  std::string load_error_;
  void* address_space_ = nullptr;
};

OracleComparison compare_with_oracle(const Trace& ours, const OracleTrace& theirs);

}  // namespace framecert

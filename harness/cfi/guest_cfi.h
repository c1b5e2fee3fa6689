// The CFI oracle over a frozen Linux guest: every task's kernel stack unwound by DWARF CFI alone
// (cfi_unwind.h), from the same starting registers as the guest walker (harness/guest/guest_walk.h), with
// the same task enumeration and guest memory (harness/guest/guest_tasks.h, unwinder/memory_guest.h) — those
// are not the unwinding under test. Nothing of framecert's metadata, walker or judge is used.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "harness/cfi/cfi_unwind.h"
#include "harness/guest/guest_tasks.h"
#include "harness/guest/kernel_layout.h"
#include "unwinder/memory_guest.h"

namespace framecert::cfi {

struct CfiModuleConfig {
  std::string name;
  std::string object;                        // the .ko
  std::map<std::string, uint64_t> sections;  // load address of each section (/sys/module/NAME/sections)
};

struct CfiGuestConfig {
  std::string ram;
  std::string vmlinux;
  std::vector<CfiModuleConfig> modules;
};

struct CfiCpuRegs {
  int cpu = 0;
  uint64_t rip = 0, rsp = 0, rbp = 0, cs = 0;
};

struct CfiTaskReport {
  guest::GuestTask task;
  bool running = false;
  int vcpu = -1;
  CfiTrace trace;
};

struct CfiGuestReport {
  std::vector<CfiTaskReport> tasks;
  std::vector<std::string> warnings;
  double walk_ms = 0;
};

class GuestCfi {
 public:
  static Result<std::unique_ptr<GuestCfi>> prepare(const CfiGuestConfig& config);
  // The guest must be frozen.
  Result<CfiGuestReport> unwind(const std::vector<CfiCpuRegs>& cpus);
  const CfiCode& code() const { return code_; }

 private:
  GuestCfi() = default;
  CfiTrace unwind_task(const guest::GuestTask& t, const CfiCpuRegs* regs);

  guest::KernelLayout layout_;
  guest::KernelGlobals globals_;
  std::unique_ptr<GuestRam> ram_;
  std::unique_ptr<GuestVirtualMemory> memory_;
  CfiCode code_;
  std::vector<std::string> warnings_;
};

}  // namespace framecert::cfi

// The registers an x86-64 frame-pointer unwind starts from.
#pragma once

#include <cstdint>

namespace framecert {

struct Regs {
  uint64_t rip = 0;
  uint64_t rsp = 0;
  uint64_t rbp = 0;
  // The system call the task is inside of (the kernel's orig_rax), or -1 when it was stopped in user code.
  int64_t syscall_nr = -1;
  bool in_syscall() const { return syscall_nr >= 0; }
  bool operator==(const Regs&) const = default;
};

}  // namespace framecert

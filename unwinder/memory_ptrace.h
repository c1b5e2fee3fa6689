// The memory of a live process (the caller must hold it ptrace-stopped for a coherent view).
#pragma once

#include <sys/types.h>

#include "unwinder/memory.h"
#include "unwinder/scoped_fd.h"

namespace framecert {

class ProcessMemory final : public Memory {
 public:
  explicit ProcessMemory(pid_t pid) : pid_(pid) {}
  size_t read(RemoteAddr addr, void* dst, size_t len) override;

 private:
  size_t read_vm(RemoteAddr addr, void* dst, size_t len);
  size_t read_proc_mem(RemoteAddr addr, void* dst, size_t len);

  pid_t pid_;
  bool use_proc_mem_ = false;  // process_vm_readv unavailable (ENOSYS / EPERM under some LSMs)
  ScopedFd mem_fd_;
};

}  // namespace framecert

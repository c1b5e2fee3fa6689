#include "unwinder/memory_ptrace.h"

#include <fcntl.h>
#include <sys/uio.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <string>

namespace framecert {

namespace {
constexpr uint64_t kPage = 4096;
}

size_t ProcessMemory::read(RemoteAddr addr, void* dst, size_t len) {
  if (len == 0) return 0;
  if (use_proc_mem_) return read_proc_mem(addr, dst, len);
  size_t got = read_vm(addr, dst, len);
  if (got == len) return got;
  if (use_proc_mem_) return read_proc_mem(addr, dst, len);  // process_vm_readv turned out unavailable
  // A short read may stop at a fault or earlier: retry the rest page by page so the returned count ends
  // exactly at the first unreadable byte.
  auto* out = static_cast<uint8_t*>(dst);
  size_t done = got;
  while (done < len) {
    uint64_t a = addr.value + done;
    size_t chunk = std::min<uint64_t>(len - done, kPage - (a & (kPage - 1)));
    size_t n = read_vm(RemoteAddr(a), out + done, chunk);
    done += n;
    if (n < chunk) break;
  }
  return done;
}

size_t ProcessMemory::read_vm(RemoteAddr addr, void* dst, size_t len) {
  iovec local{dst, len};
  iovec remote{reinterpret_cast<void*>(addr.value), len};
  ssize_t n = process_vm_readv(pid_, &local, 1, &remote, 1, 0);
  if (n >= 0) return static_cast<size_t>(n);
  if (errno == ENOSYS || errno == EPERM) use_proc_mem_ = true;
  return 0;
}

size_t ProcessMemory::read_proc_mem(RemoteAddr addr, void* dst, size_t len) {
  if (!mem_fd_.valid()) {
    std::string path = "/proc/" + std::to_string(pid_) + "/mem";
    mem_fd_ = ScopedFd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!mem_fd_.valid()) return 0;
  }
  auto* out = static_cast<uint8_t*>(dst);
  size_t done = 0;
  while (done < len) {
    // pread's offset is signed: addresses above 2^63 (none in user space) cannot be read this way.
    uint64_t a = addr.value + done;
    if (a > static_cast<uint64_t>(INT64_MAX)) break;
    ssize_t n = ::pread(mem_fd_.get(), out + done, len - done, static_cast<off_t>(a));
    if (n <= 0) break;
    done += static_cast<size_t>(n);
  }
  return done;
}

}  // namespace framecert

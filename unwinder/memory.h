// Memory sources for the unwinder (after libunwindstack's Memory): one virtual read that reports how many
// bytes it could read, and non-virtual typed helpers that turn a short read into a MemoryFault naming the
// first unreadable address. A fault is an expected outcome of walking a damaged or changing stack, so it
// is a value, never an exception or a crash.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <type_traits>
#include <unordered_map>
#include <vector>

#include <tl/expected.hpp>

#include "unwinder/address.h"

namespace framecert {

struct MemoryFault {
  RemoteAddr address;  // the first byte that could not be read
  std::string describe() const;
};

template <typename T>
using MemResult = tl::expected<T, MemoryFault>;

class Memory {
 public:
  virtual ~Memory() = default;

  // Copies up to `len` bytes starting at `addr` into `dst`. Returns the number of bytes copied: fewer than
  // `len` means the byte at addr + returned count is unreadable. Never throws.
  virtual size_t read(RemoteAddr addr, void* dst, size_t len) = 0;

  MemResult<void> read_fully(RemoteAddr addr, void* dst, size_t len) {
    size_t got = read(addr, dst, len);
    if (got == len) return {};
    return tl::unexpected(MemoryFault{addr + got});
  }

  template <typename T>
  MemResult<T> read_as(RemoteAddr addr) {
    static_assert(std::is_trivially_copyable_v<T>);
    T value;
    if (auto r = read_fully(addr, &value, sizeof(T)); !r) return tl::unexpected(r.error());
    return value;
  }

  MemResult<uint64_t> read_u64(RemoteAddr addr) { return read_as<uint64_t>(addr); }
};

// A page cache in front of a slow source (ptrace reads cost a system call each). Only valid while the
// target is frozen: nothing invalidates it.
class CachedMemory final : public Memory {
 public:
  explicit CachedMemory(Memory& backing) : backing_(backing) {}
  size_t read(RemoteAddr addr, void* dst, size_t len) override;
  size_t backing_reads() const { return backing_reads_; }

 private:
  static constexpr uint64_t kPage = 4096;
  struct Page {
    size_t valid = 0;  // readable bytes from the page's start
    std::vector<uint8_t> bytes;
  };
  const Page& page(uint64_t base);

  Memory& backing_;
  std::unordered_map<uint64_t, Page> pages_;
  size_t backing_reads_ = 0;
};

}  // namespace framecert

#include "unwinder/memory.h"

#include <algorithm>

#include <fmt/format.h>

namespace framecert {

std::string MemoryFault::describe() const { return fmt::format("cannot read memory at {:#x}", address.value); }

const CachedMemory::Page& CachedMemory::page(uint64_t base) {
  auto it = pages_.find(base);
  if (it != pages_.end()) return it->second;
  Page p;
  p.bytes.resize(kPage);
  ++backing_reads_;
  p.valid = backing_.read(RemoteAddr(base), p.bytes.data(), kPage);
  return pages_.emplace(base, std::move(p)).first->second;
}

size_t CachedMemory::read(RemoteAddr addr, void* dst, size_t len) {
  auto* out = static_cast<uint8_t*>(dst);
  size_t done = 0;
  while (done < len) {
    uint64_t a = addr.value + done;
    if (a < addr.value) break;  // wrapped around the address space
    uint64_t base = a & ~(kPage - 1);
    const Page& p = page(base);
    uint64_t in_page = a - base;
    if (in_page >= p.valid) break;
    size_t n = std::min<uint64_t>(len - done, p.valid - in_page);
    std::memcpy(out + done, p.bytes.data() + in_page, n);
    done += n;
    if (p.valid < kPage) break;  // the rest of this page faulted
  }
  return done;
}

}  // namespace framecert

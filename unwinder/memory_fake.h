// A memory for tests and offline cases: sparse byte ranges, anything else unreadable (after
// libunwindstack's MemoryFake). Also the container of stack snapshots used by fault injection.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <map>
#include <vector>

#include "unwinder/memory.h"

namespace framecert {

class FakeMemory final : public Memory {
 public:
  // Maps [addr, addr+len) as readable, zero-filled (merging is not needed: tests map disjoint regions).
  void map(uint64_t addr, size_t len) { regions_[addr].assign(len, 0); }
  void map_bytes(uint64_t addr, const void* src, size_t len) {
    auto& r = regions_[addr];
    r.resize(len);
    if (len) std::memcpy(r.data(), src, len);  // src may be null for an empty region
  }
  void unmap(uint64_t addr) { regions_.erase(addr); }

  // Writes into an already mapped region; returns false if any byte is not mapped.
  bool write(uint64_t addr, const void* src, size_t len) {
    auto* r = region_at(addr, len);
    if (!r) return false;
    std::memcpy(r->second.data() + (addr - r->first), src, len);
    return true;
  }
  bool write_u64(uint64_t addr, uint64_t v) { return write(addr, &v, sizeof v); }

  size_t read(RemoteAddr addr, void* dst, size_t len) override {
    auto it = regions_.upper_bound(addr.value);
    if (it == regions_.begin()) return 0;
    --it;
    uint64_t off = addr.value - it->first;
    if (off >= it->second.size()) return 0;
    size_t n = std::min<uint64_t>(len, it->second.size() - off);
    std::memcpy(dst, it->second.data() + off, n);
    return n;
  }

  const std::map<uint64_t, std::vector<uint8_t>>& regions() const { return regions_; }

 private:
  std::pair<const uint64_t, std::vector<uint8_t>>* region_at(uint64_t addr, size_t len) {
    auto it = regions_.upper_bound(addr);
    if (it == regions_.begin()) return nullptr;
    --it;
    if (addr - it->first + len > it->second.size()) return nullptr;
    return &*it;
  }
  std::map<uint64_t, std::vector<uint8_t>> regions_;
};

}  // namespace framecert

// Where a task's stack may lie: [low, high). Frames outside are rejected (condition 1 of a reliable trace).
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "unwinder/proc_maps.h"

namespace framecert {

struct StackBounds {
  uint64_t low = 0;
  uint64_t high = 0;
  // True if the whole range [addr, addr+len) is inside, without wrap-around.
  bool contains(uint64_t addr, uint64_t len = 8) const { return addr >= low && addr < high && len <= high - addr; }
};

// A user thread's stack: the writable mapping that holds its stack pointer. The main thread's [stack]
// mapping and a thread stack allocated by mmap both qualify; code or read-only memory never does.
std::optional<StackBounds> stack_bounds_for(const std::vector<Mapping>& maps, uint64_t rsp);

}  // namespace framecert

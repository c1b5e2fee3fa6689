// How much memory checking an object may take, decided before the large tables are allocated: an object
// too big for this machine gets one clear error (exit 2) instead of being killed by the kernel's OOM
// killer after minutes of swapping (docs/design.md, "Memory").
#pragma once

#include <cstdint>

#include "unwinder/result.h"

namespace framecert {

// The validator's bound on its memory per instruction (docs/design.md, "Memory"); tests/validator measures
// it on large inputs.
inline constexpr uint64_t kBytesPerInstruction = 64;

// The memory this process can still use: the smaller of the system's available memory (MemAvailable in
// /proc/meminfo) and the address-space and data-segment limits (RLIMIT_AS, RLIMIT_DATA) beyond what is
// already in use. 0 when nothing can be read (no limit is then applied).
uint64_t available_memory();

// An error naming the object when checking `instructions` instructions would need more than `available`
// bytes (0: unknown, never an error).
Result<void> fits_in_memory(uint64_t instructions, uint64_t available);

// The same against what this process can use now. Below kAlwaysAffordable bytes the system's free memory is
// not read (a process cannot start with less; reading /proc/meminfo costs more than checking a small object,
// and Kbuild starts one process per object); resource limits are always applied.
inline constexpr uint64_t kAlwaysAffordable = 16ull << 20;
Result<void> fits_in_this_process(uint64_t instructions);

}  // namespace framecert

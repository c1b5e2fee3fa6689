// The end marker of a Linux idle task's stack: head_64.S's startup code zeroes rbp and enters the C code
// so that the address after that instruction is the last return address on every idle task's stack: up to
// 6.8 secondary_startup_64 pushes the address right after its `lretq` "for unwinders" and lretq's into the C
// entry; since 6.9 common_startup_64 calls it indirectly (`call *initial_code(%rip)`). Found once per guest
// with the validator's decoder, so that the unwinder's judge compares addresses (KernelEndRecord::idle_marker)
// and reads no instruction bytes itself.
#pragma once

#include <cstdint>
#include <span>

#include "unwinder/result.h"

namespace framecert {

// Bytes read from secondary_startup_64 onwards, as many as needed to reach its lretq.
inline constexpr uint64_t kIdleMarkerSearch = 4096;

// The address after the first far return or indirect call made with rbp zeroed in `code`, the startup code's
// bytes at `address` (secondary_startup_64's: the caller already has the symbol and the kernel text, no
// second reading of vmlinux).
Result<uint64_t> find_idle_end_marker(std::span<const uint8_t> code, uint64_t address);

}  // namespace framecert

// The end marker of a Linux idle task's stack: head_64.S's secondary_startup_64 zeroes rbp, pushes the
// address right after its `lretq` "for unwinders" and lretq's into the C entry, so that address is the
// last return address on every idle task's stack — pushed by no call. Found once per vmlinux with the
// validator's decoder, so that the unwinder's judge compares addresses (KernelEndRecord::idle_marker)
// and reads no instruction bytes itself.
#pragma once

#include <cstdint>
#include <string>

#include "unwinder/result.h"

namespace framecert {

// The address after the first far return in secondary_startup_64 of the linked image `vmlinux`.
Result<uint64_t> find_idle_end_marker(const std::string& vmlinux);

}  // namespace framecert

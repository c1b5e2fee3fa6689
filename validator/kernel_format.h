#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace framecert {

// Which kernel's layouts and numbering an object's special sections use (validator/annotations.cpp): 6.1's,
// or those of Linux 6.10 and later (a 14-byte struct alt_instr; unwind hints renumbered, with UNDEFINED and
// END_OF_STACK types and a `signal` byte where 6.1 had `end`). Read from the object where it shows (its
// .altinstructions stride), else the kernel version the caller names (CheckOptions::kernel), else 6.1's.
enum class KernelFormat : uint8_t { Linux6_1, Linux6_10 };
// "6.12", "6.12.118", "6.1.0-9-amd64": the format of that kernel; nullopt for text that is no version.
std::optional<KernelFormat> kernel_format_of_version(std::string_view version);

}  // namespace framecert

// The registers an x86-64 frame-pointer unwind starts from.
#pragma once

#include <cstdint>

namespace framecert {

struct Regs {
  uint64_t rip = 0;
  uint64_t rsp = 0;
  uint64_t rbp = 0;
  bool operator==(const Regs&) const = default;
};

}  // namespace framecert

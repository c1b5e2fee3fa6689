// /proc/PID/maps, parsed.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "unwinder/result.h"

namespace framecert {

struct Mapping {
  uint64_t start = 0;
  uint64_t end = 0;
  bool readable = false, writable = false, executable = false;
  uint64_t offset = 0;  // file offset of `start`
  std::string path;     // file path, "[stack]", "[vdso]", ... or empty for anonymous memory
  bool contains(uint64_t a) const { return a >= start && a < end; }
};

Result<std::vector<Mapping>> parse_maps(const std::string& text);
Result<std::vector<Mapping>> read_maps(pid_t pid);

}  // namespace framecert

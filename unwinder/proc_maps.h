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
  // The mapped file's device and inode as the kernel shows them (0 for anonymous memory): what a file
  // opened by path must match before its contents are trusted to be the mapped ones.
  unsigned dev_major = 0, dev_minor = 0;
  uint64_t inode = 0;
  std::string path;  // file path, "[stack]", "[vdso]", ... or empty for anonymous memory
  bool contains(uint64_t a) const { return a >= start && a < end; }
};

Result<std::vector<Mapping>> parse_maps(const std::string& text);
// /proc/PID/maps; `pid` may be any thread of the process (/proc/TID/maps: a process whose main thread has
// exited shows no mappings under its own pid).
Result<std::vector<Mapping>> read_maps(pid_t pid);

// The whole of a small /proc file. Plain read(2), never an exception: a file of a thread or process that
// exits meanwhile fails to read (ESRCH), which iostreams may report by throwing.
Result<std::string> read_proc_file(const std::string& path);

}  // namespace framecert

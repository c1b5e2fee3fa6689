// What the unwinder needs from an ELF file on disk: its build-id, its loadable segments (to compute the
// load bias of a mapping) and its function symbols. libelf stays inside elf_image.cpp.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "unwinder/proc_maps.h"
#include "unwinder/result.h"
#include "unwinder/symbolizer.h"

namespace framecert {

struct LoadSegment {
  uint64_t vaddr = 0, offset = 0, filesz = 0, memsz = 0;
  bool executable = false;
};

struct ElfImage {
  std::string path;
  std::string build_id;  // lowercase hex, empty if the object has none
  std::vector<LoadSegment> segments;
  SymbolTable symbols;
};

Result<ElfImage> read_elf_image(const std::string& path);

// run-time address = link-time address + bias, for the object mapped by `m` (a mapping of `image`).
Result<uint64_t> load_bias(const ElfImage& image, const Mapping& m);

}  // namespace framecert

// What the unwinder and the guest walker need from a linked ELF file on disk (an executable, a shared
// object, vmlinux): its build-id, its loadable segments (to compute the load bias of a mapping), its
// function symbols and, on request, the addresses of named symbols of any type (a kernel's globals).
// libelf stays inside elf_image.cpp; the validator's ElfFile (validator/elf_file.h) is the other reader,
// for objects the validator decodes (relocatable objects with their relocations). The build-id note is
// decoded here only (build_id_from_notes), for both.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "unwinder/proc_maps.h"
#include "unwinder/result.h"
#include "unwinder/scoped_fd.h"
#include "unwinder/symbolizer.h"

namespace framecert {

struct LoadSegment {
  uint64_t vaddr = 0, offset = 0, filesz = 0, memsz = 0;
  bool executable = false;
};

struct ElfImage {
  std::string path;      // the object's name in reports (for a process: its path in /proc/PID/maps)
  std::string build_id;  // lowercase hex, empty if the object has none
  std::vector<LoadSegment> segments;
  SymbolTable symbols;
  // The defined .symtab symbols asked for by name (any type; the first of each name); absent if missing.
  std::map<std::string, uint64_t> named;
  // The file that was read, as fstat saw it: what metadata caches key on (never the path alone).
  uint64_t dev = 0, inode = 0, size = 0;
  int64_t mtime_ns = 0;
  // Where exactly the file that was read can be opened again (by the metadata producer):
  // "/proc/self/fd/N" while `file` is held. Empty: `path`.
  std::string open_path;
  std::shared_ptr<const ScopedFd> file;
  // Symbols were added from a separate debug file found by build-id (/usr/lib/debug/.build-id/...).
  std::string debug_file;

  const std::string& source() const { return open_path.empty() ? path : open_path; }
};

// `named`: symbols whose addresses to put in ElfImage::named.
Result<ElfImage> read_elf_image(const std::string& path, const std::vector<std::string>& named = {});
// Reads the file open at `fd` (kept open in the image, so the metadata producer reads this very file),
// naming it `name` in reports.
Result<ElfImage> read_elf_image(ScopedFd fd, const std::string& name, const std::vector<std::string>& named = {});
// Only the addresses of named symbols (ElfImage::named without the rest of the image).
Result<std::map<std::string, uint64_t>> read_symbol_values(const std::string& path,
                                                           const std::vector<std::string>& names);

// The GNU build-id in the first `len` bytes of note data (one or more ELF notes), or empty.
std::string build_id_from_notes(const uint8_t* notes, size_t len);

// Adds the function symbols of the separate debug file for `image`'s build-id
// (DIR/xx/yyyy.debug, DIR = /usr/lib/debug/.build-id), when there is one with the same build-id.
// Returns true if symbols were added.
bool add_debug_file_symbols(ElfImage& image, const std::string& dir = "/usr/lib/debug/.build-id");

// run-time address = link-time address + bias, for the object mapped by `m` (a mapping of `image`).
Result<uint64_t> load_bias(const ElfImage& image, const Mapping& m);

}  // namespace framecert

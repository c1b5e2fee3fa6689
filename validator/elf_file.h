// An x86-64 ELF object as the validator sees it: sections with their bytes, symbols with section-relative
// offsets, and relocations grouped by the section they patch. This is the only place libelf is used.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "unwinder/result.h"

struct Elf;  // libelf's handle, kept opaque here

namespace framecert {

struct ElfSection {
  uint32_t index = 0;
  std::string_view name;  // into the ELF string table (valid while the ElfFile lives)
  uint32_t type = 0;
  uint64_t flags = 0;
  uint64_t address = 0;  // sh_addr (0 in relocatable objects)
  uint64_t size = 0;
  std::span<const uint8_t> bytes;  // empty for SHT_NOBITS
  bool executable() const;
  bool is_rodata() const;  // may hold jump tables: .rodata*, but not string-merge sections
};

struct ElfSymbol {
  uint32_t index = 0;
  std::string_view name;  // into the ELF string table (valid while the ElfFile lives)
  uint8_t type = 0;       // STT_*
  uint8_t bind = 0;       // STB_*
  uint32_t section = 0;   // section index (0 when undefined or special)
  uint64_t value = 0;
  uint64_t offset = 0;  // value relative to the section start
  uint64_t size = 0;
  bool defined() const { return section != 0; }
};

// One RELA entry, laid out as the file's Elf64_Rela: a relocation section already sorted by offset (what
// assemblers and linkers write) is used where libelf mapped it, not copied (docs/design.md, "Memory").
struct ElfReloc {
  uint64_t offset = 0;  // in the patched section
  uint64_t info = 0;    // symbol << 32 | type
  int64_t addend = 0;
  uint32_t type() const { return static_cast<uint32_t>(info); }
  uint32_t symbol() const { return static_cast<uint32_t>(info >> 32); }  // index into symbols()
};

class ElfFile {
 public:
  // Opens and validates `path`: must be a 64-bit little-endian x86-64 ELF of type REL, EXEC or DYN.
  static Result<std::unique_ptr<ElfFile>> open(const std::string& path);
  ~ElfFile();
  ElfFile(const ElfFile&) = delete;
  ElfFile& operator=(const ElfFile&) = delete;

  const std::string& path() const { return path_; }
  bool relocatable() const { return relocatable_; }
  const std::string& build_id() const { return build_id_; }
  const std::vector<ElfSection>& sections() const { return sections_; }
  const std::vector<ElfSymbol>& symbols() const { return symbols_; }
  // Relocations applying to section `index`, sorted by offset (empty if none).
  std::span<const ElfReloc> relocs_for(uint32_t index) const;
  const ElfSection* section_by_name(std::string_view name) const;
  // The bytes of any section, read on demand (annotation tables); empty when unreadable or NOBITS.
  std::span<const uint8_t> section_bytes(uint32_t index) const;

 private:
  ElfFile() = default;
  Result<void> check_layout() const;  // the headers against the file size, before libelf reads them
  Result<void> load();

  std::string path_;
  int fd_ = -1;
  uint64_t file_size_ = 0;
  ::Elf* elf_ = nullptr;
  bool relocatable_ = false;
  std::string build_id_;
  std::vector<ElfSection> sections_;
  std::vector<ElfSymbol> symbols_;
  std::vector<std::span<const ElfReloc>> relocs_;  // by patched section index: in the file, or in `sorted_`
  std::vector<std::vector<ElfReloc>> sorted_;      // copies of the relocation tables that were not sorted
};

}  // namespace framecert

#include "validator/elf_file.h"

#include <fcntl.h>
#include <gelf.h>
#include <libelf.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "unwinder/elf_image.h"

namespace framecert {

// Code is code whatever the section type says: objtool decodes every SHF_EXECINSTR section, so an "ax"
// section of type NOTE or INIT_ARRAY is checked like .text (NOBITS has no bytes to check).
bool ElfSection::executable() const { return type != SHT_NOBITS && type != SHT_NULL && (flags & SHF_EXECINSTR); }

bool ElfSection::is_rodata() const { return name.starts_with(".rodata") && name.find(".str1.") == std::string::npos; }

ElfFile::~ElfFile() {
  if (elf_) elf_end(elf_);
  if (fd_ >= 0) close(fd_);
}

static const char* file_type_name(mode_t mode) {
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  if (S_ISSOCK(mode)) return "a socket";
  return "not a plain file";
}

Result<std::unique_ptr<ElfFile>> ElfFile::open(const std::string& path) {
  static const bool version_ok = elf_version(EV_CURRENT) != EV_NONE;
  if (!version_ok) return fail("{}: libelf is unusable", path);
  std::unique_ptr<ElfFile> f(new ElfFile());
  f->path_ = path;
  // The file type is checked before opening: opening a FIFO would block until a writer appears.
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return fail("{}: cannot open: {}", path, std::strerror(errno));
  if (!S_ISREG(st.st_mode)) return fail("{}: not a regular file ({})", path, file_type_name(st.st_mode));
  // O_NONBLOCK and a second look at the opened file: it may have been replaced since the stat.
  f->fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (f->fd_ < 0) return fail("{}: cannot open: {}", path, std::strerror(errno));
  if (::fstat(f->fd_, &st) != 0) return fail("{}: cannot stat: {}", path, std::strerror(errno));
  if (!S_ISREG(st.st_mode)) return fail("{}: not a regular file ({})", path, file_type_name(st.st_mode));
  f->file_size_ = static_cast<uint64_t>(st.st_size);
  if (auto r = f->check_layout(); !r) return fail("{}: {}", path, r.error());
  if (auto r = f->load(); !r) return fail("{}: {}", path, r.error());
  return f;
}

// The ELF header, section header table and every section's extent, read directly from the file and
// checked against its size before libelf sees the file: libelf reads a truncated or corrupted object
// without complaint (a section header table past the end looks like "no sections"), and nothing may
// be sized from these fields before they are known to fit the file.
Result<void> ElfFile::check_layout() const {
  auto read_at = [&](uint64_t offset, void* out, size_t n) -> bool {
    if (offset > file_size_ || n > file_size_ - offset) return false;
    return ::pread(fd_, out, n, static_cast<off_t>(offset)) == static_cast<ssize_t>(n);
  };
  unsigned char ident[EI_NIDENT] = {};
  if (file_size_ < SELFMAG || !read_at(0, ident, SELFMAG) || std::memcmp(ident, ELFMAG, SELFMAG) != 0)
    return fail("not an ELF object");
  if (file_size_ < EI_NIDENT || !read_at(0, ident, EI_NIDENT))
    return fail("truncated ELF header ({} bytes)", file_size_);
  if (ident[EI_CLASS] != ELFCLASS64) return fail("not a 64-bit ELF object (32-bit objects are not supported)");
  if (ident[EI_DATA] != ELFDATA2LSB) return fail("not a little-endian ELF object");
  Elf64_Ehdr eh;
  if (!read_at(0, &eh, sizeof eh))
    return fail("truncated ELF header ({} bytes, an ELF header needs {})", file_size_, sizeof eh);
  if (eh.e_machine != EM_X86_64) return fail("not an x86-64 object (e_machine {})", eh.e_machine);
  if (eh.e_type != ET_REL && eh.e_type != ET_EXEC && eh.e_type != ET_DYN)
    return fail("unsupported ELF type {} (want a relocatable object, executable or shared object)", eh.e_type);
  if (eh.e_phnum != 0 && (eh.e_phentsize != sizeof(Elf64_Phdr) || eh.e_phoff > file_size_ ||
                          uint64_t{eh.e_phnum} * sizeof(Elf64_Phdr) > file_size_ - eh.e_phoff))
    return fail("program headers ({} at offset {}) extend past the end of the file ({} bytes)", eh.e_phnum, eh.e_phoff,
                file_size_);
  if (eh.e_shoff == 0) {
    // No section header table: nothing says where the code is, so nothing could be checked.
    return fail("no section headers (e_shnum {}, e_shoff 0): no code to check", eh.e_shnum);
  }
  if (eh.e_shentsize != sizeof(Elf64_Shdr))
    return fail("bad section header size {} (want {})", eh.e_shentsize, sizeof(Elf64_Shdr));
  Elf64_Shdr first;
  if (!read_at(eh.e_shoff, &first, sizeof first))
    return fail("section header table at offset {} is past the end of the file ({} bytes)", eh.e_shoff, file_size_);
  // More than SHN_LORESERVE sections: the count and the string table index live in section 0.
  const uint64_t shnum = eh.e_shnum != 0 ? eh.e_shnum : first.sh_size;
  if (shnum == 0) return fail("no section headers (e_shnum 0): no code to check");
  if (shnum > (file_size_ - eh.e_shoff) / sizeof(Elf64_Shdr))
    return fail("section header table ({} headers at offset {}) extends past the end of the file ({} bytes)", shnum,
                eh.e_shoff, file_size_);
  const uint64_t shstrndx = eh.e_shstrndx == SHN_XINDEX ? first.sh_link : eh.e_shstrndx;
  if (shstrndx >= shnum) return fail("section name table index {} out of range ({} sections)", shstrndx, shnum);
  std::vector<Elf64_Shdr> headers(shnum);  // shnum is bounded by the file size (checked above)
  if (!read_at(eh.e_shoff, headers.data(), shnum * sizeof(Elf64_Shdr))) return fail("section header table unreadable");
  for (uint64_t i = 1; i < shnum; ++i) {
    const Elf64_Shdr& sh = headers[i];
    if (sh.sh_type == SHT_NOBITS || sh.sh_type == SHT_NULL || sh.sh_size == 0) continue;
    if (sh.sh_offset > file_size_ || sh.sh_size > file_size_ - sh.sh_offset)
      return fail("section {} ({} bytes at offset {}) extends past the end of the file ({} bytes)", i, sh.sh_size,
                  sh.sh_offset, file_size_);
  }
  return {};
}

static std::string elf_error() { return elf_errmsg(-1) ? elf_errmsg(-1) : "unknown libelf error"; }

Result<void> ElfFile::load() {
  elf_ = elf_begin(fd_, ELF_C_READ_MMAP, nullptr);
  if (!elf_) return fail("not readable as ELF: {}", elf_error());
  if (elf_kind(elf_) != ELF_K_ELF) return fail("not an ELF object");
  const char* ident = elf_getident(elf_, nullptr);
  if (!ident) return fail("truncated ELF header");
  if (ident[EI_CLASS] != ELFCLASS64) return fail("not a 64-bit ELF object (32-bit objects are not supported)");
  if (ident[EI_DATA] != ELFDATA2LSB) return fail("not a little-endian ELF object");
  GElf_Ehdr eh;
  if (!gelf_getehdr(elf_, &eh)) return fail("bad ELF header: {}", elf_error());
  if (eh.e_machine != EM_X86_64) return fail("not an x86-64 object (e_machine {})", eh.e_machine);
  if (eh.e_type != ET_REL && eh.e_type != ET_EXEC && eh.e_type != ET_DYN)
    return fail("unsupported ELF type {} (want a relocatable object, executable or shared object)", eh.e_type);
  relocatable_ = eh.e_type == ET_REL;

  size_t shstrndx = 0, shnum = 0;
  if (elf_getshdrstrndx(elf_, &shstrndx) != 0 || elf_getshdrnum(elf_, &shnum) != 0)
    return fail("bad section header table: {}", elf_error());
  sections_.resize(shnum);
  relocs_.resize(shnum);
  std::vector<Elf_Scn*> rela_sections;
  std::vector<Elf_Scn*> shndx_sections;  // SHT_SYMTAB_SHNDX: extended section indexes of symbols
  Elf_Scn* symtab = nullptr;
  Elf_Scn* dynsym = nullptr;
  for (Elf_Scn* scn = nullptr; (scn = elf_nextscn(elf_, scn)) != nullptr;) {
    GElf_Shdr sh;
    if (!gelf_getshdr(scn, &sh)) return fail("bad section header: {}", elf_error());
    size_t idx = elf_ndxscn(scn);
    if (idx >= shnum) return fail("section index {} out of range", idx);
    ElfSection& s = sections_[idx];
    s.index = static_cast<uint32_t>(idx);
    const char* name = elf_strptr(elf_, shstrndx, sh.sh_name);
    s.name = name ? name : "";
    s.type = sh.sh_type;
    s.flags = sh.sh_flags;
    s.address = sh.sh_addr;
    s.size = sh.sh_size;
    if (s.executable()) {
      // The raw bytes: code needs no translation, and libelf refuses to translate an "ax" section of a
      // type with entries (INIT_ARRAY) whose size is not a multiple of the entry size.
      Elf_Data* d = elf_rawdata(scn, nullptr);
      if (!d || (d->d_size && !d->d_buf))
        return fail("section {}: data unreadable (truncated file?): {}", s.name, elf_error());
      if (d->d_size != sh.sh_size)
        return fail("section {}: size {} but {} bytes of data", s.name, sh.sh_size, d->d_size);
      s.bytes = {static_cast<const uint8_t*>(d->d_buf), d->d_size};
    }
    if (sh.sh_type == SHT_RELA) rela_sections.push_back(scn);
    if (sh.sh_type == SHT_SYMTAB_SHNDX) shndx_sections.push_back(scn);
    if (sh.sh_type == SHT_SYMTAB) symtab = scn;
    if (sh.sh_type == SHT_DYNSYM) dynsym = scn;
    if (sh.sh_type == SHT_NOTE && s.name == ".note.gnu.build-id") {
      // Decoded by the unwinder's reader (one decoder of the note for both readers).
      Elf_Data* d = elf_getdata(scn, nullptr);
      if (d && d->d_buf) build_id_ = build_id_from_notes(static_cast<const uint8_t*>(d->d_buf), d->d_size);
    }
  }

  // Symbols: .symtab if present (it has local functions), else the dynamic symbols.
  if (Elf_Scn* scn = symtab ? symtab : dynsym) {
    GElf_Shdr sh;
    gelf_getshdr(scn, &sh);
    Elf_Data* d = elf_getdata(scn, nullptr);
    if (!d) return fail("symbol table unreadable: {}", elf_error());
    if (sh.sh_entsize != sizeof(Elf64_Sym))
      return fail("symbol table entry size {} (want {})", sh.sh_entsize, sizeof(Elf64_Sym));
    size_t count = d->d_size / sizeof(Elf64_Sym);  // bounded by the file size (check_layout)
    // With more than 0xff00 sections, a symbol's st_shndx is SHN_XINDEX and its real section index sits
    // in the SYMTAB_SHNDX section linked to this symbol table.
    Elf_Data* xindex = nullptr;
    const size_t symtab_index = elf_ndxscn(scn);
    for (Elf_Scn* x : shndx_sections) {
      GElf_Shdr xsh;
      if (gelf_getshdr(x, &xsh) && xsh.sh_link == symtab_index) {
        xindex = elf_getdata(x, nullptr);
        if (!xindex) return fail("extended section index table unreadable: {}", elf_error());
      }
    }
    symbols_.resize(count);
    for (size_t i = 0; i < count; ++i) {
      GElf_Sym sym;
      Elf32_Word ext = 0;
      if (!gelf_getsymshndx(d, xindex, static_cast<int>(i), &sym, &ext))
        return fail("symbol {} unreadable (truncated file?)", i);
      uint64_t shndx = sym.st_shndx;
      if (sym.st_shndx == SHN_XINDEX) {
        if (!xindex) return fail("symbol {} has an extended section index but there is no SYMTAB_SHNDX table", i);
        shndx = ext;
      } else if (sym.st_shndx >= SHN_LORESERVE) {
        shndx = 0;  // SHN_ABS, SHN_COMMON: not in a section
      }
      if (shndx >= shnum) return fail("symbol {} is in section {} of {}", i, shndx, shnum);
      ElfSymbol& out = symbols_[i];
      out.index = static_cast<uint32_t>(i);
      const char* name = elf_strptr(elf_, sh.sh_link, sym.st_name);
      out.name = name ? name : "";
      out.type = GELF_ST_TYPE(sym.st_info);
      out.bind = GELF_ST_BIND(sym.st_info);
      out.section = static_cast<uint32_t>(shndx);
      out.value = sym.st_value;
      out.size = sym.st_size;
      uint64_t base = out.section ? sections_[out.section].address : 0;
      out.offset = relocatable_ || out.value < base ? out.value : out.value - base;
      if (out.type == STT_SECTION && out.name.empty() && out.section) out.name = sections_[out.section].name;
    }
  }

  // Relocations (relocatable objects, or images linked with --emit-relocs), only for the symbol table
  // we loaded.
  for (Elf_Scn* scn : rela_sections) {
    GElf_Shdr sh;
    gelf_getshdr(scn, &sh);
    if (sh.sh_info == 0 || sh.sh_info >= shnum) continue;
    if (symtab && sh.sh_link != elf_ndxscn(symtab)) continue;
    // Debug information is never needed, and its relocations are most of a vmlinux.o's.
    if (sections_[sh.sh_info].name.starts_with(".debug")) continue;
    Elf_Data* d = elf_getdata(scn, nullptr);
    if (!d) return fail("relocation section unreadable: {}", elf_error());
    if (sh.sh_entsize != sizeof(Elf64_Rela))
      return fail("relocation section entry size {} (want {})", sh.sh_entsize, sizeof(Elf64_Rela));
    const size_t count = d->d_size / sizeof(Elf64_Rela);
    static_assert(sizeof(ElfReloc) == sizeof(Elf64_Rela) &&
                  offsetof(ElfReloc, addend) == offsetof(Elf64_Rela, r_addend));
    if (reinterpret_cast<uintptr_t>(d->d_buf) % alignof(ElfReloc) != 0)
      return fail("relocation section {} is misaligned in the file", sections_[elf_ndxscn(scn)].name);
    const std::span<const ElfReloc> table(static_cast<const ElfReloc*>(d->d_buf), count);
    bool sorted = true;
    for (size_t i = 0; i < count; ++i) {
      if (table[i].symbol() >= symbols_.size())
        return fail("relocation {} names symbol {} of {}", i, table[i].symbol(), symbols_.size());
      sorted = sorted && (i == 0 || table[i - 1].offset <= table[i].offset);
    }
    std::span<const ElfReloc>& out = relocs_[sh.sh_info];
    if (sorted && out.empty()) {
      out = table;
      continue;
    }
    // Unsorted, or a second table for the same section: merged into a sorted copy.
    std::vector<ElfReloc> merged(out.begin(), out.end());
    merged.insert(merged.end(), table.begin(), table.end());
    std::stable_sort(merged.begin(), merged.end(),
                     [](const ElfReloc& a, const ElfReloc& b) { return a.offset < b.offset; });
    out = sorted_.emplace_back(std::move(merged));
  }
  return {};
}

std::span<const ElfReloc> ElfFile::relocs_for(uint32_t index) const {
  return index < relocs_.size() ? relocs_[index] : std::span<const ElfReloc>();
}

const ElfSection* ElfFile::section_by_name(std::string_view name) const {
  for (const auto& s : sections_)
    if (s.name == name) return &s;
  return nullptr;
}

}  // namespace framecert

namespace framecert {

std::span<const uint8_t> ElfFile::section_bytes(uint32_t index) const {
  if (index >= sections_.size() || sections_[index].type == SHT_NOBITS) return {};
  if (!sections_[index].bytes.empty()) return sections_[index].bytes;
  Elf_Scn* scn = elf_getscn(elf_, index);
  Elf_Data* d = scn ? elf_getdata(scn, nullptr) : nullptr;
  if (!d || !d->d_buf) return {};
  return {static_cast<const uint8_t*>(d->d_buf), d->d_size};
}

}  // namespace framecert

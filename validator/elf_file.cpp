#include "validator/elf_file.h"

#include <fcntl.h>
#include <gelf.h>
#include <libelf.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

namespace framecert {

bool ElfSection::executable() const { return type == SHT_PROGBITS && (flags & SHF_EXECINSTR); }

bool ElfSection::is_rodata() const {
  return name.starts_with(".rodata") && name.find(".str1.") == std::string::npos;
}

ElfFile::~ElfFile() {
  if (elf_) elf_end(elf_);
  if (fd_ >= 0) close(fd_);
}

Result<std::unique_ptr<ElfFile>> ElfFile::open(const std::string& path) {
  static const bool version_ok = elf_version(EV_CURRENT) != EV_NONE;
  if (!version_ok) return fail("{}: libelf is unusable", path);
  std::unique_ptr<ElfFile> f(new ElfFile());
  f->path_ = path;
  f->fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (f->fd_ < 0) return fail("{}: cannot open: {}", path, std::strerror(errno));
  if (auto r = f->load(); !r) return fail("{}: {}", path, r.error());
  return f;
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
    if (sh.sh_type == SHT_PROGBITS && (sh.sh_flags & SHF_EXECINSTR)) {
      Elf_Data* d = elf_getdata(scn, nullptr);
      if (!d || (d->d_size && !d->d_buf)) return fail("section {}: data unreadable (truncated file?): {}", s.name, elf_error());
      if (d->d_size != sh.sh_size) return fail("section {}: size {} but {} bytes of data", s.name, sh.sh_size, d->d_size);
      s.bytes = {static_cast<const uint8_t*>(d->d_buf), d->d_size};
    }
    if (sh.sh_type == SHT_RELA) rela_sections.push_back(scn);
    if (sh.sh_type == SHT_SYMTAB) symtab = scn;
    if (sh.sh_type == SHT_DYNSYM) dynsym = scn;
    if (sh.sh_type == SHT_NOTE && s.name == ".note.gnu.build-id") {
      Elf_Data* d = elf_getdata(scn, nullptr);
      if (d && d->d_buf && d->d_size >= 16) {
        const auto* p = static_cast<const uint8_t*>(d->d_buf);
        uint32_t namesz, descsz;
        std::memcpy(&namesz, p, 4);
        std::memcpy(&descsz, p + 4, 4);
        size_t desc_at = 12 + ((namesz + 3u) & ~3u);
        if (desc_at + descsz <= d->d_size)
          for (uint32_t i = 0; i < descsz; ++i) build_id_ += fmt::format("{:02x}", p[desc_at + i]);
      }
    }
  }

  // Symbols: .symtab if present (it has local functions), else the dynamic symbols.
  if (Elf_Scn* scn = symtab ? symtab : dynsym) {
    GElf_Shdr sh;
    gelf_getshdr(scn, &sh);
    Elf_Data* d = elf_getdata(scn, nullptr);
    if (!d) return fail("symbol table unreadable: {}", elf_error());
    size_t count = sh.sh_entsize ? sh.sh_size / sh.sh_entsize : 0;
    symbols_.resize(count);
    for (size_t i = 0; i < count; ++i) {
      GElf_Sym sym;
      if (!gelf_getsym(d, static_cast<int>(i), &sym)) return fail("symbol {} unreadable (truncated file?)", i);
      ElfSymbol& out = symbols_[i];
      out.index = static_cast<uint32_t>(i);
      const char* name = elf_strptr(elf_, sh.sh_link, sym.st_name);
      out.name = name ? name : "";
      out.type = GELF_ST_TYPE(sym.st_info);
      out.bind = GELF_ST_BIND(sym.st_info);
      out.section = (sym.st_shndx != SHN_UNDEF && sym.st_shndx < SHN_LORESERVE && sym.st_shndx < shnum) ? sym.st_shndx : 0;
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
    size_t count = sh.sh_entsize ? sh.sh_size / sh.sh_entsize : 0;
    auto& out = relocs_[sh.sh_info];
    out.reserve(out.size() + count);
    for (size_t i = 0; i < count; ++i) {
      GElf_Rela r;
      if (!gelf_getrela(d, static_cast<int>(i), &r)) return fail("relocation {} unreadable (truncated file?)", i);
      uint32_t symidx = static_cast<uint32_t>(GELF_R_SYM(r.r_info));
      if (symidx >= symbols_.size()) return fail("relocation {} names symbol {} of {}", i, symidx, symbols_.size());
      out.push_back({r.r_offset, static_cast<uint32_t>(GELF_R_TYPE(r.r_info)), symidx, r.r_addend});
    }
    std::stable_sort(out.begin(), out.end(), [](const ElfReloc& a, const ElfReloc& b) { return a.offset < b.offset; });
  }
  return {};
}

const std::vector<ElfReloc>& ElfFile::relocs_for(uint32_t index) const {
  static const std::vector<ElfReloc> none;
  return index < relocs_.size() ? relocs_[index] : none;
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

#include "unwinder/elf_image.h"

#include <fcntl.h>
#include <gelf.h>
#include <libelf.h>

#include <cerrno>
#include <cstring>

#include "unwinder/scoped_fd.h"

namespace framecert {

namespace {

struct ElfHandle {
  Elf* elf = nullptr;
  ~ElfHandle() {
    if (elf) elf_end(elf);
  }
};

void read_symbols(Elf* elf, std::vector<Symbol>& out) {
  // Executable sections, to keep data symbols and assembly labels in data out.
  std::vector<bool> exec_section;
  size_t nsec = 0;
  elf_getshdrnum(elf, &nsec);
  exec_section.resize(nsec, false);
  for (Elf_Scn* scn = nullptr; (scn = elf_nextscn(elf, scn));) {
    GElf_Shdr sh;
    if (gelf_getshdr(scn, &sh) && (sh.sh_flags & SHF_EXECINSTR)) exec_section[elf_ndxscn(scn)] = true;
  }
  for (Elf_Scn* scn = nullptr; (scn = elf_nextscn(elf, scn));) {
    GElf_Shdr sh;
    if (!gelf_getshdr(scn, &sh) || (sh.sh_type != SHT_SYMTAB && sh.sh_type != SHT_DYNSYM)) continue;
    Elf_Data* data = elf_getdata(scn, nullptr);
    if (!data || sh.sh_entsize == 0) continue;
    size_t count = sh.sh_size / sh.sh_entsize;
    for (size_t i = 0; i < count; ++i) {
      GElf_Sym sym;
      if (!gelf_getsym(data, static_cast<int>(i), &sym)) continue;
      int type = GELF_ST_TYPE(sym.st_info);
      if (type != STT_FUNC && type != STT_NOTYPE && type != STT_GNU_IFUNC) continue;
      if (sym.st_shndx == SHN_UNDEF || sym.st_shndx >= exec_section.size() || !exec_section[sym.st_shndx])
        continue;
      const char* name = elf_strptr(elf, sh.sh_link, sym.st_name);
      if (!name || !*name || name[0] == '$' || std::strncmp(name, ".L", 2) == 0) continue;
      out.push_back(Symbol{sym.st_value, sym.st_size, name});
    }
  }
}

std::string read_build_id(Elf* elf) {
  for (Elf_Scn* scn = nullptr; (scn = elf_nextscn(elf, scn));) {
    GElf_Shdr sh;
    if (!gelf_getshdr(scn, &sh) || sh.sh_type != SHT_NOTE) continue;
    Elf_Data* data = elf_getdata(scn, nullptr);
    if (!data) continue;
    size_t off = 0, name_off, desc_off;
    GElf_Nhdr nh;
    while ((off = gelf_getnote(data, off, &nh, &name_off, &desc_off)) > 0) {
      if (nh.n_type == NT_GNU_BUILD_ID && nh.n_namesz == 4 &&
          std::memcmp(static_cast<const char*>(data->d_buf) + name_off, "GNU", 4) == 0) {
        const auto* d = static_cast<const uint8_t*>(data->d_buf) + desc_off;
        std::string hex;
        for (size_t i = 0; i < nh.n_descsz; ++i) hex += fmt::format("{:02x}", d[i]);
        return hex;
      }
    }
  }
  return {};
}

}  // namespace

Result<ElfImage> read_elf_image(const std::string& path) {
  elf_version(EV_CURRENT);
  ScopedFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return fail("{}: {}", path, std::strerror(errno));
  ElfHandle h;
  h.elf = elf_begin(fd.get(), ELF_C_READ_MMAP, nullptr);
  if (!h.elf || elf_kind(h.elf) != ELF_K_ELF) return fail("{}: not an ELF file", path);
  GElf_Ehdr eh;
  if (!gelf_getehdr(h.elf, &eh) || eh.e_ident[EI_CLASS] != ELFCLASS64 || eh.e_machine != EM_X86_64)
    return fail("{}: not an x86-64 ELF object", path);
  ElfImage img;
  img.path = path;
  size_t nph = 0;
  elf_getphdrnum(h.elf, &nph);
  for (size_t i = 0; i < nph; ++i) {
    GElf_Phdr ph;
    if (!gelf_getphdr(h.elf, static_cast<int>(i), &ph) || ph.p_type != PT_LOAD) continue;
    img.segments.push_back({ph.p_vaddr, ph.p_offset, ph.p_filesz, ph.p_memsz, (ph.p_flags & PF_X) != 0});
  }
  img.build_id = read_build_id(h.elf);
  std::vector<Symbol> syms;
  read_symbols(h.elf, syms);
  img.symbols = SymbolTable(std::move(syms));
  return img;
}

Result<uint64_t> load_bias(const ElfImage& image, const Mapping& m) {
  for (const LoadSegment& s : image.segments) {
    // The segment that holds the mapping's file offset; page rounding keeps vaddr - offset constant.
    uint64_t seg_start = s.offset & ~0xfffull;
    if (m.offset >= seg_start && m.offset < s.offset + std::max(s.filesz, uint64_t{1}))
      return m.start - (s.vaddr - s.offset + m.offset);
  }
  return fail("{}: no PT_LOAD segment maps file offset {:#x}", image.path, m.offset);
}

}  // namespace framecert

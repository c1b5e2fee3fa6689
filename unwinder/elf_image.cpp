#include "unwinder/elf_image.h"

#include <fcntl.h>
#include <gelf.h>
#include <libelf.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <initializer_list>
#include <set>

#include "unwinder/scoped_fd.h"

namespace framecert {

namespace {

struct ElfHandle {
  Elf* elf = nullptr;
  ~ElfHandle() {
    if (elf) elf_end(elf);
  }
};

// Every symbol of the symbol tables of `types` (SHT_SYMTAB, SHT_DYNSYM) with its name: the one walk of an
// image's symbol tables, whatever is wanted from them.
template <typename F>
void for_each_symbol(Elf* elf, std::initializer_list<uint32_t> types, F f) {
  for (Elf_Scn* scn = nullptr; (scn = elf_nextscn(elf, scn));) {
    GElf_Shdr sh;
    if (!gelf_getshdr(scn, &sh) || std::find(types.begin(), types.end(), sh.sh_type) == types.end()) continue;
    Elf_Data* data = elf_getdata(scn, nullptr);
    if (!data || sh.sh_entsize == 0) continue;
    size_t count = sh.sh_size / sh.sh_entsize;
    for (size_t i = 0; i < count; ++i) {
      GElf_Sym sym;
      if (!gelf_getsym(data, static_cast<int>(i), &sym)) continue;
      const char* name = elf_strptr(elf, sh.sh_link, sym.st_name);
      f(sym, name);
    }
  }
}

// Function symbols (and code labels) of both tables, for symbolization.
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
  for_each_symbol(elf, {SHT_SYMTAB, SHT_DYNSYM}, [&](const GElf_Sym& sym, const char* name) {
    int type = GELF_ST_TYPE(sym.st_info);
    if (type != STT_FUNC && type != STT_NOTYPE && type != STT_GNU_IFUNC) return;
    if (sym.st_shndx == SHN_UNDEF || sym.st_shndx >= exec_section.size() || !exec_section[sym.st_shndx]) return;
    if (!name || !*name || name[0] == '$' || std::strncmp(name, ".L", 2) == 0) return;
    out.push_back(Symbol{sym.st_value, sym.st_size, name});
  });
}

// The values of the defined .symtab symbols of any type named in `wanted` (the first of each name).
std::map<std::string, uint64_t> read_named(Elf* elf, const std::vector<std::string>& wanted) {
  std::map<std::string, uint64_t> out;
  if (wanted.empty()) return out;
  const std::set<std::string> names(wanted.begin(), wanted.end());
  for_each_symbol(elf, {SHT_SYMTAB}, [&](const GElf_Sym& sym, const char* name) {
    if (sym.st_shndx != SHN_UNDEF && name && names.count(name) && !out.count(name)) out[name] = sym.st_value;
  });
  return out;
}

std::string read_build_id(Elf* elf) {
  for (Elf_Scn* scn = nullptr; (scn = elf_nextscn(elf, scn));) {
    GElf_Shdr sh;
    if (!gelf_getshdr(scn, &sh) || sh.sh_type != SHT_NOTE) continue;
    Elf_Data* data = elf_getdata(scn, nullptr);
    if (!data || !data->d_buf) continue;
    std::string id = build_id_from_notes(static_cast<const uint8_t*>(data->d_buf), data->d_size);
    if (!id.empty()) return id;
  }
  return {};
}

}  // namespace

std::string build_id_from_notes(const uint8_t* notes, size_t len) {
  auto align4 = [](uint64_t v) { return (v + 3) & ~uint64_t{3}; };
  size_t off = 0;
  while (off + 12 <= len) {
    uint32_t namesz, descsz, type;
    std::memcpy(&namesz, notes + off, 4);
    std::memcpy(&descsz, notes + off + 4, 4);
    std::memcpy(&type, notes + off + 8, 4);
    uint64_t name_at = off + 12, desc_at = name_at + align4(namesz), next = desc_at + align4(descsz);
    if (next > len) break;
    if (type == NT_GNU_BUILD_ID && namesz == 4 && std::memcmp(notes + name_at, "GNU", 4) == 0) {
      std::string hex;
      for (size_t i = 0; i < descsz; ++i) hex += fmt::format("{:02x}", notes[desc_at + i]);
      return hex;
    }
    off = next;
  }
  return {};
}

Result<ElfImage> read_elf_image(const std::string& path, const std::vector<std::string>& named) {
  ScopedFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return fail("{}: {}", path, std::strerror(errno));
  auto img = read_elf_image(std::move(fd), path, named);
  if (!img) return img;
  // Opened by its own path: the producer may open it by that path too.
  img->open_path.clear();
  img->file.reset();
  return img;
}

Result<ElfImage> read_elf_image(ScopedFd fd, const std::string& path, const std::vector<std::string>& named) {
  elf_version(EV_CURRENT);
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return fail("{}: {}", path, std::strerror(errno));
  ElfHandle h;
  h.elf = elf_begin(fd.get(), ELF_C_READ_MMAP, nullptr);
  if (!h.elf || elf_kind(h.elf) != ELF_K_ELF) return fail("{}: not an ELF file", path);
  GElf_Ehdr eh;
  if (!gelf_getehdr(h.elf, &eh) || eh.e_ident[EI_CLASS] != ELFCLASS64 || eh.e_machine != EM_X86_64)
    return fail("{}: not an x86-64 ELF object", path);
  ElfImage img;
  img.path = path;
  img.dev = st.st_dev;
  img.inode = st.st_ino;
  img.size = static_cast<uint64_t>(st.st_size);
  img.mtime_ns = static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
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
  img.named = read_named(h.elf, named);
  img.open_path = fmt::format("/proc/self/fd/{}", fd.get());
  img.file = std::make_shared<const ScopedFd>(std::move(fd));
  return img;
}

Result<std::map<std::string, uint64_t>> read_symbol_values(const std::string& path,
                                                           const std::vector<std::string>& names) {
  ScopedFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return fail("{}: {}", path, std::strerror(errno));
  elf_version(EV_CURRENT);
  ElfHandle h;
  h.elf = elf_begin(fd.get(), ELF_C_READ_MMAP, nullptr);
  if (!h.elf || elf_kind(h.elf) != ELF_K_ELF) return fail("{}: not an ELF file", path);
  return read_named(h.elf, names);
}

bool add_debug_file_symbols(ElfImage& image, const std::string& dir) {
  if (image.build_id.size() < 4) return false;
  std::string path = fmt::format("{}/{}/{}.debug", dir, image.build_id.substr(0, 2), image.build_id.substr(2));
  ScopedFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return false;
  elf_version(EV_CURRENT);
  ElfHandle h;
  h.elf = elf_begin(fd.get(), ELF_C_READ_MMAP, nullptr);
  if (!h.elf || elf_kind(h.elf) != ELF_K_ELF) return false;
  if (read_build_id(h.elf) != image.build_id) return false;  // a stale or foreign file under that name
  std::vector<Symbol> syms = image.symbols.all();
  size_t before = syms.size();
  read_symbols(h.elf, syms);
  if (syms.size() == before) return false;
  image.symbols = SymbolTable(std::move(syms));
  image.debug_file = path;
  return true;
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

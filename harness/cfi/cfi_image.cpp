#include "harness/cfi/cfi_image.h"

#include <elfutils/libdw.h>
#include <fcntl.h>
#include <gelf.h>
#include <libelf.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>

#include <fmt/format.h>

namespace framecert::cfi {

namespace {

constexpr uint32_t kR_X86_64_64 = 1, kR_X86_64_32 = 10, kR_X86_64_32S = 11;

// Where an unloaded SHF_ALLOC section of a relocatable object is placed: its own 4 GiB slot in the lower
// half, so its FDEs never overlap each other or any kernel address.
uint64_t unloaded_address(size_t shndx) { return (static_cast<uint64_t>(shndx) + 1) << 32; }

struct SectionInfo {
  std::string name;
  GElf_Shdr shdr{};
};

std::vector<SectionInfo> read_sections(Elf* elf) {
  size_t shstrndx = 0, n = 0;
  elf_getshdrstrndx(elf, &shstrndx);
  elf_getshdrnum(elf, &n);
  std::vector<SectionInfo> out(n);
  for (size_t i = 1; i < n; ++i) {
    Elf_Scn* scn = elf_getscn(elf, i);
    if (!scn || !gelf_getshdr(scn, &out[i].shdr)) continue;
    const char* nm = elf_strptr(elf, shstrndx, out[i].shdr.sh_name);
    out[i].name = nm ? nm : "";
  }
  return out;
}

}  // namespace

CfiImage::~CfiImage() {
  if (eh_cfi_) dwarf_cfi_end(eh_cfi_);
  if (dwarf_) dwarf_end(dwarf_);
  if (elf_) elf_end(elf_);
  if (fd_ >= 0) ::close(fd_);
}

Result<bool> CfiImage::open_cfi() {
  // .debug_frame through a Dwarf handle (libdw finds it even when the file has no .debug_info).
  dwarf_ = dwarf_begin_elf(elf_, DWARF_C_READ, nullptr);
  if (dwarf_) debug_cfi_ = dwarf_getcfi(dwarf_);
  // .eh_frame: only for linked files. In a relocatable object its pc-relative encodings would need
  // relocating against an address .eh_frame does not have.
  GElf_Ehdr eh;
  if (!gelf_getehdr(elf_, &eh)) return fail("{}: no ELF header", name_);
  bool has_eh = false;
  for (const SectionInfo& s : read_sections(elf_))
    if (s.name == ".eh_frame" && s.shdr.sh_type == SHT_PROGBITS && s.shdr.sh_size) has_eh = true;
  if (has_eh && eh.e_type != ET_REL) eh_cfi_ = dwarf_getcfi_elf(elf_);
  if (has_eh && eh.e_type == ET_REL)
    warnings_.push_back(fmt::format("{}: .eh_frame of a relocatable object is not used", name_));
  return true;
}

Result<std::unique_ptr<CfiImage>> CfiImage::load_linked(const std::string& path, std::string name, uint64_t bias) {
  elf_version(EV_CURRENT);
  std::unique_ptr<CfiImage> img(new CfiImage());
  img->name_ = std::move(name);
  img->bias_ = bias;
  img->fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (img->fd_ < 0) return fail("{}: {}", path, std::strerror(errno));
  img->elf_ = elf_begin(img->fd_, ELF_C_READ_MMAP, nullptr);
  GElf_Ehdr eh;
  if (!img->elf_ || !gelf_getehdr(img->elf_, &eh)) return fail("{}: not an ELF file", path);
  if (eh.e_machine != EM_X86_64) return fail("{}: not x86-64", path);
  if (eh.e_type == ET_REL) return fail("{}: a relocatable object needs its section addresses", path);
  auto sections = read_sections(img->elf_);
  for (const SectionInfo& s : sections)
    if ((s.shdr.sh_flags & SHF_EXECINSTR) && (s.shdr.sh_flags & SHF_ALLOC) && s.shdr.sh_size)
      img->code_.push_back({s.shdr.sh_addr + bias, s.shdr.sh_addr + s.shdr.sh_size + bias});
  // Symbols: functions and untyped code labels (assembly SYM_CODE_START) in executable sections.
  for (size_t i = 1; i < sections.size(); ++i) {
    if (sections[i].shdr.sh_type != SHT_SYMTAB || sections[i].shdr.sh_entsize == 0) continue;
    Elf_Data* data = elf_getdata(elf_getscn(img->elf_, i), nullptr);
    if (!data) continue;
    for (size_t k = 0; k < sections[i].shdr.sh_size / sections[i].shdr.sh_entsize; ++k) {
      GElf_Sym sym;
      if (!gelf_getsym(data, static_cast<int>(k), &sym)) continue;
      int type = GELF_ST_TYPE(sym.st_info);
      if (type != STT_FUNC && type != STT_NOTYPE) continue;
      if (sym.st_shndx == SHN_UNDEF || sym.st_shndx >= sections.size()) continue;
      if (!(sections[sym.st_shndx].shdr.sh_flags & SHF_EXECINSTR)) continue;
      const char* nm = elf_strptr(img->elf_, sections[i].shdr.sh_link, sym.st_name);
      if (!nm || !*nm || nm[0] == '.' || (type == STT_NOTYPE && nm[0] == '$')) continue;
      img->symbols_.push_back({sym.st_value + bias, sym.st_size, nm});
    }
  }
  std::sort(img->symbols_.begin(), img->symbols_.end(), [](const Sym& a, const Sym& b) { return a.addr < b.addr; });
  if (auto r = img->open_cfi(); !r) return tl::unexpected(r.error());
  return img;
}

Result<std::unique_ptr<CfiImage>> CfiImage::load_relocatable(const std::string& path, std::string name,
                                                             const std::map<std::string, uint64_t>& loaded) {
  elf_version(EV_CURRENT);
  std::unique_ptr<CfiImage> img(new CfiImage());
  img->name_ = std::move(name);
  {
    std::ifstream in(path, std::ios::binary);
    if (!in) return fail("{}: cannot open", path);
    img->bytes_.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  // Read the original (unpatched) headers, relocations and symbols from a private view.
  std::vector<char> original = img->bytes_;
  Elf* src = elf_memory(original.data(), original.size());
  GElf_Ehdr eh;
  if (!src || !gelf_getehdr(src, &eh)) {
    if (src) elf_end(src);
    return fail("{}: not an ELF file", path);
  }
  struct SrcCloser {
    Elf* e;
    ~SrcCloser() { elf_end(e); }
  } closer{src};
  if (eh.e_type != ET_REL) return fail("{}: not a relocatable object", path);
  if (eh.e_machine != EM_X86_64) return fail("{}: not x86-64", path);
  auto sections = read_sections(src);
  // The run-time address of every section: loaded ones from `loaded`, other SHF_ALLOC ones at a private
  // unloaded address, non-allocated ones (.debug_frame itself: CIE pointers) at 0.
  std::vector<uint64_t> address(sections.size(), 0);
  for (size_t i = 1; i < sections.size(); ++i) {
    const SectionInfo& s = sections[i];
    if (!(s.shdr.sh_flags & SHF_ALLOC)) continue;
    // .init.* is freed once the module's init returns, but /sys/module keeps listing its old address, which
    // later modules reuse: taking it as loaded would answer for another module's code with this one's CFI.
    auto it = s.name.rfind(".init", 0) == 0 ? loaded.end() : loaded.find(s.name);
    address[i] = it != loaded.end() ? it->second : unloaded_address(i);
    if (it != loaded.end() && (s.shdr.sh_flags & SHF_EXECINSTR) && s.shdr.sh_size)
      img->code_.push_back({it->second, it->second + s.shdr.sh_size});
  }
  // Loaded code must not overlap: which section's CFI answers would be a guess.
  std::sort(img->code_.begin(), img->code_.end(), [](const CodeRange& a, const CodeRange& b) { return a.lo < b.lo; });
  for (size_t i = 1; i < img->code_.size(); ++i)
    if (img->code_[i].lo < img->code_[i - 1].hi)
      return fail("{}: loaded code sections overlap at {:#x}", path, img->code_[i].lo);
  size_t symtab = 0;
  for (size_t i = 1; i < sections.size(); ++i)
    if (sections[i].shdr.sh_type == SHT_SYMTAB) symtab = i;
  Elf_Data* symdata = symtab ? elf_getdata(elf_getscn(src, symtab), nullptr) : nullptr;
  // Symbols of loaded code.
  if (symdata && sections[symtab].shdr.sh_entsize) {
    for (size_t k = 0; k < sections[symtab].shdr.sh_size / sections[symtab].shdr.sh_entsize; ++k) {
      GElf_Sym sym;
      if (!gelf_getsym(symdata, static_cast<int>(k), &sym)) continue;
      int type = GELF_ST_TYPE(sym.st_info);
      if ((type != STT_FUNC && type != STT_NOTYPE) || sym.st_shndx == SHN_UNDEF || sym.st_shndx >= sections.size())
        continue;
      const SectionInfo& s = sections[sym.st_shndx];
      if (!(s.shdr.sh_flags & SHF_EXECINSTR) || !img->contains(address[sym.st_shndx])) continue;
      const char* nm = elf_strptr(src, sections[symtab].shdr.sh_link, sym.st_name);
      if (!nm || !*nm || nm[0] == '.') continue;
      img->symbols_.push_back({address[sym.st_shndx] + sym.st_value, sym.st_size, nm});
    }
  }
  std::sort(img->symbols_.begin(), img->symbols_.end(), [](const Sym& a, const Sym& b) { return a.addr < b.addr; });
  // Relocate .debug_frame in the copy.
  size_t frame_idx = 0;
  for (size_t i = 1; i < sections.size(); ++i)
    if (sections[i].name == ".debug_frame") frame_idx = i;
  if (frame_idx) {
    const GElf_Shdr& fsh = sections[frame_idx].shdr;
    if (fsh.sh_flags & SHF_COMPRESSED) return fail("{}: compressed .debug_frame is not supported", path);
    if (fsh.sh_type != SHT_PROGBITS || fsh.sh_offset + fsh.sh_size > img->bytes_.size())
      return fail("{}: .debug_frame outside the file", path);
    for (size_t i = 1; i < sections.size(); ++i) {
      const GElf_Shdr& rsh = sections[i].shdr;
      if (rsh.sh_info != frame_idx || rsh.sh_entsize == 0) continue;
      if (rsh.sh_type == SHT_REL) return fail("{}: SHT_REL relocations of .debug_frame are not supported", path);
      if (rsh.sh_type != SHT_RELA) continue;
      if (rsh.sh_link != symtab || !symdata) return fail("{}: .debug_frame's relocations use no symbol table", path);
      Elf_Data* rdata = elf_getdata(elf_getscn(src, i), nullptr);
      if (!rdata) return fail("{}: unreadable {}", path, sections[i].name);
      for (size_t k = 0; k < rsh.sh_size / rsh.sh_entsize; ++k) {
        GElf_Rela rela;
        GElf_Sym sym;
        if (!gelf_getrela(rdata, static_cast<int>(k), &rela) ||
            !gelf_getsym(symdata, static_cast<int>(GELF_R_SYM(rela.r_info)), &sym))
          return fail("{}: unreadable relocation {} of .debug_frame", path, k);
        uint64_t s_value;
        if (sym.st_shndx == SHN_ABS) {
          s_value = sym.st_value;
        } else if (sym.st_shndx == SHN_UNDEF || sym.st_shndx >= sections.size()) {
          return fail("{}: .debug_frame relocation {} against an undefined symbol", path, k);
        } else {
          s_value = address[sym.st_shndx] + sym.st_value;
        }
        uint64_t value = s_value + static_cast<uint64_t>(rela.r_addend);
        uint32_t type = GELF_R_TYPE(rela.r_info);
        size_t width = type == kR_X86_64_64 ? 8 : (type == kR_X86_64_32 || type == kR_X86_64_32S) ? 4 : 0;
        if (width == 0) return fail("{}: .debug_frame relocation type {} is not supported", path, type);
        if (rela.r_offset + width > fsh.sh_size)
          return fail("{}: .debug_frame relocation {} outside the section", path, k);
        if (width == 4) {
          bool fits = type == kR_X86_64_32 ? value <= 0xffffffffull
                                           : static_cast<int64_t>(value) == static_cast<int32_t>(value);
          if (!fits) return fail("{}: .debug_frame relocation {} overflows 32 bits", path, k);
          uint32_t v32 = static_cast<uint32_t>(value);
          std::memcpy(img->bytes_.data() + fsh.sh_offset + rela.r_offset, &v32, 4);
        } else {
          std::memcpy(img->bytes_.data() + fsh.sh_offset + rela.r_offset, &value, 8);
        }
      }
    }
  }
  img->elf_ = elf_memory(img->bytes_.data(), img->bytes_.size());
  if (!img->elf_) return fail("{}: cannot reopen the relocated copy", path);
  if (auto r = img->open_cfi(); !r) return tl::unexpected(r.error());
  return img;
}

bool CfiImage::contains(uint64_t pc) const {
  return std::any_of(code_.begin(), code_.end(), [pc](const CodeRange& r) { return pc >= r.lo && pc < r.hi; });
}

namespace {

std::vector<CfiOp> copy_ops(const Dwarf_Op* ops, size_t n) {
  std::vector<CfiOp> out;
  for (size_t i = 0; i < n; ++i) out.push_back(CfiOp{ops[i].atom, ops[i].number, ops[i].number2});
  return out;
}

// libdw's frame state as plain data (what cfi_unwind.cpp evaluates).
CfiRow to_row(Dwarf_Frame* frame) {
  CfiRow row;
  Dwarf_Addr start = 0, end = 0;
  row.return_address_register = dwarf_frame_info(frame, &start, &end, &row.signal_frame);
  Dwarf_Op* ops = nullptr;
  size_t nops = 0;
  if (dwarf_frame_cfa(frame, &ops, &nops) != 0)
    row.cfa_error = dwarf_errmsg(-1);
  else
    row.cfa = copy_ops(ops, nops);
  for (int r = 0; r < kNumRegs; ++r) {
    if (r == kRsp) continue;
    CfiRule& rule = row.regs[r];
    Dwarf_Op ops_mem[3];
    Dwarf_Op* rops = nullptr;
    size_t rn = 0;
    if (dwarf_frame_register(frame, r, ops_mem, &rops, &rn) != 0) {
      rule.kind = CfiRule::Kind::Unreadable;
      rule.error = dwarf_errmsg(-1);
    } else if (rn == 0) {
      rule.kind = rops == nullptr ? CfiRule::Kind::SameValue : CfiRule::Kind::Undefined;
    } else {
      rule.kind = CfiRule::Kind::Expression;
      rule.ops = copy_ops(rops, rn);
    }
  }
  return row;
}

}  // namespace

std::optional<CfiRow> CfiImage::row_at(uint64_t pc, std::string& error) const {
  Dwarf_Addr at = pc - bias_;
  std::string why;
  for (Dwarf_CFI* cfi : {debug_cfi_, eh_cfi_}) {
    if (!cfi) continue;
    Dwarf_Frame* f = nullptr;
    if (dwarf_cfi_addrframe(cfi, at, &f) == 0 && f) {
      CfiRow row = to_row(f);
      std::free(f);  // libdw's convention
      return row;
    }
    int e = dwarf_errno();
    if (!why.empty()) why += "; ";
    why += (cfi == debug_cfi_ ? ".debug_frame: " : ".eh_frame: ") + std::string(dwarf_errmsg(e));
  }
  error = why.empty() ? std::string("the image has no .debug_frame or .eh_frame") : why;
  return std::nullopt;
}

std::string CfiImage::symbolize(uint64_t shown, bool return_address) const {
  uint64_t pc = return_address ? shown - 1 : shown;
  auto it = std::upper_bound(symbols_.begin(), symbols_.end(), pc, [](uint64_t v, const Sym& s) { return v < s.addr; });
  // The closest symbol at or below pc that covers it (sized) or, for unsized labels, the closest one.
  for (int steps = 0; it != symbols_.begin() && steps < 64; ++steps) {
    --it;
    if (it->size == 0 || pc < it->addr + it->size) return fmt::format("{}+{:#x}", it->name, shown - it->addr);
    if (pc - it->addr > (1u << 20)) break;
  }
  return {};
}

const CfiImage* CfiCode::image_for(uint64_t pc, std::string* ambiguity) const {
  const CfiImage* found = nullptr;
  for (const auto& i : images_) {
    if (!i->contains(pc)) continue;
    if (found) {
      if (ambiguity) *ambiguity = fmt::format("{:#x} is code of both {} and {}", pc, found->name(), i->name());
      return nullptr;
    }
    found = i.get();
  }
  return found;
}

std::string CfiCode::symbolize(uint64_t pc, bool return_address) const {
  const CfiImage* i = image_for(return_address ? pc - 1 : pc);
  return i ? i->symbolize(pc, return_address) : std::string();
}

}  // namespace framecert::cfi

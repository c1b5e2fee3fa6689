// One ELF file's DWARF call-frame information (.debug_frame, and .eh_frame if present) placed at the
// addresses its code runs at: a linked file (vmlinux) at its link addresses plus a bias, or a relocatable
// object (a kernel module's .ko) whose .debug_frame is relocated here by the load address of each section.
//
// The relocation is applied by this file itself (libelf): the .ko's bytes are copied, every entry of the
// RELA section that targets .debug_frame is applied (R_X86_64_64 / _32 / _32S: symbol value + the load
// address of the symbol's section + addend), and libdw reads the patched copy (elf_memory). A SHF_ALLOC
// section the module did not load (.exit.text; .init.* always, since it is freed after init while
// /sys/module keeps its stale address) is placed at a private address in the lower half, far from any
// kernel pc, so its FDEs can never answer for a kernel address. Code claimed by two images is nobody's.
//
// This is the independent oracle (harness/cfi/README.md): it uses libdw's CFI and nothing of framecert's
// metadata, walker or judge. That is also why it keeps an ELF reader of its own instead of the unwinder's
// ElfImage or the validator's ElfFile (the two readers of the code under test): a truth that read the
// objects through the checked code could inherit its mistakes. Its libelf and libdw use is confined to
// cfi_image.cpp; everything else (cfi_unwind.cpp) sees the CFI rows below, plain data.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "unwinder/result.h"

typedef struct Elf Elf;
typedef struct Dwarf Dwarf;
typedef struct Dwarf_CFI_s Dwarf_CFI;

namespace framecert::cfi {

// DWARF register numbers of x86-64 (System V psABI): 0..15 the general registers, 16 the return address.
enum DwarfReg : int {
  kRax = 0,
  kRdx,
  kRcx,
  kRbx,
  kRsi,
  kRdi,
  kRbp,
  kRsp,
  kR8,
  kR9,
  kR10,
  kR11,
  kR12,
  kR13,
  kR14,
  kR15,
  kRip,
  kNumRegs
};

// One DWARF expression operation as libdw hands it out: atom DW_OP_*, its operands.
struct CfiOp {
  uint8_t atom = 0;
  uint64_t number = 0, number2 = 0;
};

// How the caller's value of one register is found.
struct CfiRule {
  enum class Kind { Undefined, SameValue, Expression, Unreadable } kind = Kind::Undefined;
  std::vector<CfiOp> ops;  // Expression: an address where the value is saved, or the value (DW_OP_stack_value)
  std::string error;       // Unreadable: libdw's reason
};

// The CFI row for one pc.
struct CfiRow {
  int return_address_register = -1;
  bool signal_frame = false;  // the caller's pc is not a return address
  std::vector<CfiOp> cfa;     // empty: see cfa_error (undefined, or unreadable)
  std::string cfa_error;
  std::array<CfiRule, kNumRegs> regs;  // kRsp's is unused: the caller's rsp is the CFA
};

struct CodeRange {
  uint64_t lo = 0, hi = 0;  // [lo, hi)
};

class CfiImage {
 public:
  // A linked ELF (ET_EXEC / ET_DYN); its code runs at link address + bias.
  static Result<std::unique_ptr<CfiImage>> load_linked(const std::string& path, std::string name, uint64_t bias = 0);
  // A relocatable ELF (ET_REL); `sections` gives the run-time address of each loaded section by name.
  static Result<std::unique_ptr<CfiImage>> load_relocatable(const std::string& path, std::string name,
                                                            const std::map<std::string, uint64_t>& sections);
  ~CfiImage();
  CfiImage(const CfiImage&) = delete;
  CfiImage& operator=(const CfiImage&) = delete;

  const std::string& name() const { return name_; }
  // Executable code of this image at run-time addresses.
  const std::vector<CodeRange>& code() const { return code_; }
  bool contains(uint64_t pc) const;
  bool has_cfi() const { return debug_cfi_ || eh_cfi_; }
  // The CFI row for `pc` (a run-time address): .debug_frame first, then .eh_frame. Nothing when neither has
  // an FDE covering it; `error` then says why.
  std::optional<CfiRow> row_at(uint64_t pc, std::string& error) const;
  // "function+0xoff" for a run-time address, or "" when no symbol covers it. A return address is looked
  // up at pc - 1 (a call that ends its function) and its offset shown from pc.
  std::string symbolize(uint64_t pc, bool return_address = false) const;
  // Warnings of loading (e.g. relocations that could not be applied).
  const std::vector<std::string>& warnings() const { return warnings_; }

 private:
  CfiImage() = default;
  Result<bool> open_cfi();

  struct Sym {
    uint64_t addr = 0, size = 0;
    std::string name;
  };
  std::string name_;
  uint64_t bias_ = 0;        // run-time = address in the (patched) file + bias
  std::vector<char> bytes_;  // the patched copy of a relocatable file (elf_ points into it)
  int fd_ = -1;
  Elf* elf_ = nullptr;
  Dwarf* dwarf_ = nullptr;
  Dwarf_CFI* debug_cfi_ = nullptr;  // owned by dwarf_
  Dwarf_CFI* eh_cfi_ = nullptr;     // dwarf_cfi_end
  std::vector<CodeRange> code_;
  std::vector<Sym> symbols_;  // sorted by addr, run-time addresses
  std::vector<std::string> warnings_;
};

// Every image of a kernel (vmlinux and its modules) or of a test: which one holds a pc.
class CfiCode {
 public:
  void add(std::unique_ptr<CfiImage> image) { images_.push_back(std::move(image)); }
  // The one image whose code holds pc; null when none does, or when several do (`ambiguity` says which).
  const CfiImage* image_for(uint64_t pc, std::string* ambiguity = nullptr) const;
  std::string symbolize(uint64_t pc, bool return_address = false) const;
  const std::vector<std::unique_ptr<CfiImage>>& images() const { return images_; }

 private:
  std::vector<std::unique_ptr<CfiImage>> images_;
};

}  // namespace framecert::cfi

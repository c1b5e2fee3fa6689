// A frozen guest's memory: its RAM file (QEMU's memory-backend-file, where file offset == guest-physical
// address) and its kernel virtual address space seen through the page tables at a given CR3.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>

#include "unwinder/address.h"
#include "unwinder/memory.h"
#include "unwinder/result.h"

namespace framecert {

// Guest-physical memory that is not a flat file: a vmcore (harness/guest/vmcore.h), whose pages are found
// through its own index and may be compressed or filtered out. A page it does not hold reads as nothing.
class PhysicalSource {
 public:
  virtual ~PhysicalSource() = default;
  virtual size_t read(uint64_t phys, void* dst, size_t len) const = 0;
  virtual uint64_t size() const = 0;  // one past the highest physical address it may hold
};

// Guest-physical RAM, mapped read-only (or read from a PhysicalSource). Physical addresses are not a Memory:
// the walker never reads them by mistake; only GuestVirtualMemory translates into them.
class GuestRam {
 public:
  static Result<GuestRam> map_file(const std::string& path);
  // Wraps bytes owned by someone else (tests, an already mapped file).
  static GuestRam from_bytes(std::span<const uint8_t> bytes);
  static GuestRam from_source(std::shared_ptr<const PhysicalSource> source);

  // A mapped file that shrank under the mapping (truncated by someone else) faults on access with SIGBUS:
  // such a read copies nothing and returns what it had copied before the fault, like an unmapped address.
  size_t read(GuestPhys addr, void* dst, size_t len) const;
  std::optional<uint64_t> read_u64(GuestPhys addr) const;
  uint64_t size() const { return source_ ? source_->size() : bytes_.size(); }
  // For a mapped file: fails if the file is now shorter than the mapping (the guest's memory is gone).
  Result<bool> check_intact() const;

 private:
  struct Mapping;
  std::shared_ptr<Mapping> mapping_;  // keeps an mmap alive; shared so GuestRam is cheap to copy
  std::span<const uint8_t> bytes_;
  std::shared_ptr<const PhysicalSource> source_;  // instead of bytes_
};

// Why a translation failed, with the level of the page-table walk (4 = PML4 ... 1 = PT).
struct TranslationFault {
  enum Kind { NonCanonical, NotPresent, TableOutsideRam } kind;
  int level = 0;
  std::string describe() const;
};

// x86-64 4-level paging (no LA57): 4K pages, 2M and 1G large pages, present bits, canonical checks.
Result<GuestPhys> translate(const GuestRam& ram, uint64_t cr3, GuestVirt va, TranslationFault* fault = nullptr);

class GuestVirtualMemory final : public Memory {
 public:
  GuestVirtualMemory(const GuestRam& ram, uint64_t cr3) : ram_(ram), cr3_(cr3) {}
  // The remote address space here is the guest's virtual one.
  size_t read(RemoteAddr addr, void* dst, size_t len) override;

 private:
  const GuestRam& ram_;
  uint64_t cr3_;
  // One-entry translation cache: stack walks read neighbouring words of the same page.
  uint64_t cached_page_ = 1;  // never a page base
  uint64_t cached_phys_ = 0;
};

}  // namespace framecert

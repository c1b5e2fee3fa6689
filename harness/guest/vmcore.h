// A Linux kernel dump (vmcore) as the guest walker's memory: QEMU's `dump-guest-memory` in ELF or kdump
// (diskdump) form, and makedumpfile's kdump-compressed files. Pages are read through libkdumpfile, which is
// loaded on first use (dlopen), as the libunwind oracle is: `framecert check`, run by Kbuild once per object,
// never pays for it. The CPUs' registers come from the dump's NT_PRSTATUS notes, read here.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "harness/guest/guest_walk.h"
#include "unwinder/memory_guest.h"
#include "unwinder/result.h"

namespace framecert::guest {

// What the dump says about the kernel it holds (VMCOREINFO), when it says it.
struct VmcoreKernel {
  std::string release;                   // linux.uts.release
  std::optional<uint64_t> phys_base;     // NUMBER(phys_base)
  std::optional<uint64_t> kaslr_offset;  // KERNELOFFSET
  std::string build_id;                  // BUILD-ID (lowercase hex; since 5.9)
};

class Vmcore final : public PhysicalSource {
 public:
  static Result<std::shared_ptr<Vmcore>> open(const std::string& path);
  ~Vmcore() override;

  size_t read(uint64_t phys, void* dst, size_t len) const override;
  uint64_t size() const override { return size_; }

  const std::string& path() const { return path_; }
  const std::string& format() const { return format_; }  // libkdumpfile's name: "elf", "diskdump"
  const VmcoreKernel& kernel() const { return kernel_; }
  // One entry per NT_PRSTATUS note, in the dump's order: the CPU's number is its note's index (QEMU writes
  // them in vCPU order, the kernel's crash notes in CPU order).
  const std::vector<CpuRegs>& cpus() const { return cpus_; }

 private:
  struct Library;
  Vmcore() = default;

  std::string path_;
  std::string format_;
  uint64_t size_ = 0;
  VmcoreKernel kernel_;
  std::vector<CpuRegs> cpus_;
  int fd_ = -1;
  void* ctx_ = nullptr;  // kdump_ctx_t
};

// The registers of x86-64 NT_PRSTATUS notes in an ELF note area (exposed for the tests).
Result<std::vector<CpuRegs>> prstatus_registers(const uint8_t* notes, size_t size);

}  // namespace framecert::guest

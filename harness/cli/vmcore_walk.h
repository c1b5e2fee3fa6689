// `framecert walk --vmcore FILE --vmlinux VMLINUX [--metadata FILE] [--modules DIR] [--json] [--frames N|all]`
// Walks every task of a kernel dump offline (QEMU's dump-guest-memory, makedumpfile's kdump-compressed files:
// harness/guest/vmcore.h) with the guest walker: the verdicts and JSON of `framecert guest-walk`, crash's
// `foreach bt` with a verdict. vmlinux's metadata: --metadata, else the metadata cache, computing it from the
// vmlinux.o beside VMLINUX when missing. Modules: every loaded module found as NAME.ko in a DIR (--modules
// repeats), with the NAME.o Kbuild left beside it (its STACK_FRAME_NON_STANDARD annotations; without it
// nothing in the module is vouched for).
// Exit: 0 every task reliable, 1 some task unreliable, 2 the dump could not be walked.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

namespace framecert::cli {

struct VmcoreWalkArgs {
  std::string vmcore, vmlinux, metadata, cache_dir;
  std::vector<std::string> module_dirs;
  bool json = false;
  size_t frames = 4;  // 0: all
};

int run_vmcore_walk(const VmcoreWalkArgs& a);

}  // namespace framecert::cli

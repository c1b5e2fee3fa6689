// ftrace's dynamic trampolines. For an ftrace_ops that is the only one on a function, x86's
// create_trampoline() (arch/x86/kernel/ftrace.c) copies ftrace_caller — or ftrace_regs_caller for an ops that
// saves registers — into module space, patches the copy's op load and its call, and appends a return and the
// ops pointer; the traced functions then call the copy. The kernel knows that code through the ops list
// (is_ftrace_trampoline(): each op's [trampoline, trampoline + trampoline_size)); so does the walk: each copy
// becomes a code image that borrows its original's metadata at the copy's offset. Anything that does not
// match (an unknown original, a list that loops, unreadable memory) stays unknown code, never guessed.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "harness/guest/kernel_layout.h"
#include "unwinder/code_map.h"
#include "unwinder/memory.h"

namespace framecert::guest {

// A function create_trampoline() copies: [start, end) is copied; [start, unpatched_end) is copied unchanged
// (the copy's op load is the first patched instruction), so the copy must repeat those bytes exactly.
struct TrampolineOriginal {
  std::string name;  // ftrace_caller, ftrace_regs_caller
  uint64_t start = 0, end = 0, unpatched_end = 0;
};

// Where the kernel keeps its ops: `ftrace_ops_list` (a pointer variable) and the list's end marker.
struct FtraceOpsList {
  uint64_t head_variable = 0;  // &ftrace_ops_list (0: the kernel has no ftrace)
  uint64_t end = 0;            // &ftrace_list_end
};

struct FtraceTrampoline {
  uint64_t start = 0;  // the copy's run-time address
  uint64_t ops = 0;    // the struct ftrace_ops that owns it
  const TrampolineOriginal* original = nullptr;
};

struct FtraceTrampolines {
  std::vector<FtraceTrampoline> found;
  std::vector<std::string> warnings;  // ops whose trampoline was left unknown, and why
};

// Reads the frozen guest's ops list (bounded: a list that loops or is unreadable ends the search with a
// warning). An ops whose trampoline matches no original is reported, not added.
FtraceTrampolines find_ftrace_trampolines(Memory& memory, const FtraceOpsLayout& layout, const FtraceOpsList& list,
                                          const std::vector<TrampolineOriginal>& originals);

// The code image of one trampoline: the original's run-time code range moved to the copy (bias = copy -
// original), its metadata, and one symbol named as the kernel names it (ftrace_trampoline).
CodeImage trampoline_image(const FtraceTrampoline& t, std::shared_ptr<const FrameTable> metadata);

}  // namespace framecert::guest

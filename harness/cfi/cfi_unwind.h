// The CFI unwind: a task's stack unwound with nothing but DWARF call-frame information (libdw), never by
// following rbp. At every frame the CFI row of the pc (pc - 1 for a return address) gives the CFA and the
// rule of each register; where there is no row, or a rule needs a register nobody knows, or memory cannot
// be read, the unwind stops and says so ("no truth at frame N: ..."): it never guesses.
//
// It ends — complete — only where the caller asked: when a frame's CFA equals `stack.end_cfa` (for a
// kernel task the address of the pt_regs at the top of its stack: the return address just below them is
// the last frame, in entry code, ret_from_fork or head_64.S, which have no CFI).
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "harness/cfi/cfi_image.h"
#include "unwinder/memory.h"

namespace framecert::cfi {

using RegSet = std::array<std::optional<uint64_t>, kNumRegs>;  // nullopt: unknown

struct CfiStart {
  uint64_t pc = 0;
  RegSet regs{};  // rsp must be known; anything else may be unknown
  // pc is a return address (a sleeping task's frame 0): its CFI row is looked up at pc - 1.
  bool pc_is_return_address = false;
};

struct CfiStack {
  uint64_t low = 0, high = 0;  // every CFA and saved slot must lie in [low, high]
  uint64_t end_cfa = 0;        // a frame with this CFA ends the stack (its return address is the last frame)
};

struct CfiFrame {
  uint64_t pc = 0;
  uint64_t sp = 0;              // rsp in this frame (for frames > 0: the CFA of the frame below)
  std::optional<uint64_t> cfa;  // this frame's CFA, when its CFI was evaluated
  std::string symbol;           // "function+0xoff" or ""
};

struct CfiTrace {
  std::vector<CfiFrame> frames;  // innermost first
  bool complete = false;
  int stopped_at = -1;  // the frame without truth (-1 when complete)
  std::string why;
};

CfiTrace cfi_unwind(Memory& mem, const CfiCode& code, const CfiStart& start, const CfiStack& stack,
                    size_t max_frames = 512);

}  // namespace framecert::cfi

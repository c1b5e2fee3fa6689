// What a walk produces: frames, each saying how it was found, and a verdict. An unreliable verdict names
// one reason from a fixed set (documented in docs/verdicts.md) and the frame where it was established.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace framecert {

enum class Reason : uint8_t {
  None = 0,                     // reliable
  NoMetadata,                   // no validator metadata covers this pc
  NoFrameState,                 // metadata covers the pc but proves no CFA rule there
  BpClobbered,                  // rbp does not hold what the metadata says it must
  MemoryUnreadable,             // a stack word could not be read
  FrameOutOfBounds,             // a frame lies (partly) outside the task's stack
  FrameNotAscending,            // a frame is not above the previous one
  FrameMisaligned,              // a frame address is not 8-byte aligned
  LoopDetected,                 // the chain points back to the same frame
  ReturnAddressNotText,         // the return address is in no executable mapping
  ReturnAddressNotAfterCall,    // no call instruction ends right before the return address
  NoFrameAtCallSite,            // the caller had no valid frame at that call: a caller may be skipped
  CallTargetMismatch,           // the direct call before the return address calls another function
  FrameSkipped,                 // a frame record between two frames links to the next: frames were skipped
  InterruptFrameMidStack,       // a register frame (signal, interrupt) sits inside the stack
  StackEndNotReached,           // the chain stopped without the recognised outermost marker
  TooDeep,                      // more frames than the walk's limit
  CrossCheckMismatch,           // the metadata-only walk found different frames
  NoRegisters,                  // the task's registers could not be obtained
  FrameSizeMismatch,            // the caller's frame is not exactly where its code puts rsp at the call
  TrampolineReturnUnrecovered,  // a tracer's trampoline replaced the return address; the original is not proven
};

std::string_view reason_name(Reason r);
std::optional<Reason> reason_from_name(std::string_view name);
// Every reason but None, in declaration order (for docs and tests).
std::vector<Reason> all_reasons();

// How a frame was found, after Breakpad's FrameTrust: the registers, the metadata's CFA rule at an exact
// instruction, or the frame-pointer chain.
enum class FrameTrust : uint8_t { Context, CfaRule, FramePointer };
std::string_view trust_name(FrameTrust t);

struct Frame {
  uint64_t pc = 0;
  uint64_t sp = 0;  // the stack pointer in this frame (the callee's CFA) — 0 if unknown
  uint64_t fp = 0;  // rbp in this frame
  FrameTrust trust = FrameTrust::Context;
  std::string object;
  std::string symbol;
  uint64_t offset = 0;
  // A return address a tracer replaced with its trampoline (ftrace's return_to_handler, the rethook
  // trampoline): what the stack slot held, its name and the slot. `pc` is then the original return address
  // recovered from the task's record of the hook (docs/verdicts.md, "Hooked return addresses"), or the
  // trampoline itself when it could not be recovered. 0: the return address was not hooked.
  uint64_t trampoline = 0;
  std::string trampoline_symbol;
  uint64_t return_slot = 0;
};

struct Verdict {
  bool reliable = false;
  Reason reason = Reason::None;
  int frame = -1;      // index of the frame where the reason was established
  std::string detail;  // one line for humans
};

struct Trace {
  std::vector<Frame> frames;
  Verdict verdict;
};

}  // namespace framecert

// Exact stack depth at the call sites of a function, computed from its code: how far below the CFA rsp and
// rbp are when each call instruction executes. The validator's CFA rule at a call in a frame-pointer
// function is "CFA = rbp + 16" — it says where the frame record is, not how big the frame is — so without
// this a forged saved rbp that points past a frame (and the skipped record erased) goes unnoticed. With
// it, the callee's CFA (rsp right before the call) must be exactly rbp - (sp_off - bp_off).
//
// The analysis follows every path from the function's entry (direct branches and fall-through, like the
// validator), tracks rsp and rbp relative to the CFA through push/pop, add/sub/lea of rsp, mov %rsp,%rbp,
// leave; it gives up on the whole function (no depths, so no check) on anything it cannot follow exactly:
// an indirect jump, any other write to rsp, two paths meeting at different depths, undecodable bytes.
// Giving up only loses a check; it never makes a trace reliable.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <unordered_map>

#include "unwinder/memory.h"

namespace framecert {

struct CallDepth {
  int32_t sp_off = 0;  // CFA - rsp just before the call executes (= CFA - the callee's CFA)
  int32_t bp_off = 0;  // CFA - rbp at the call
};

struct FunctionDepths {
  bool ok = false;                       // false: the analysis gave up on this function
  std::map<uint64_t, CallDepth> calls;   // by return address (the end of the call instruction)
};

// Analyses the function [start, start+size) whose code is read from `text`.
FunctionDepths analyse_function_depths(Memory& text, uint64_t start, uint64_t size);

// Per-address-space cache (the code does not change while the target is frozen).
class FrameDepthCache {
 public:
  std::shared_ptr<const FunctionDepths> get(Memory& text, uint64_t start, uint64_t size);

 private:
  std::mutex mu_;
  std::unordered_map<uint64_t, std::shared_ptr<const FunctionDepths>> by_start_;
};

}  // namespace framecert

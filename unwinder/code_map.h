// The code of the unwound address space: each executable range with the object it maps, its load bias,
// its symbols and (when available) the validator's frame metadata. The walker asks it every question it
// has about an address: is it text, what does the metadata say here, which function is it in.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "unwinder/frame_table.h"
#include "unwinder/symbolizer.h"

namespace framecert {

struct CodeImage {
  std::string path;    // the object ("[vdso]" and the like for anonymous code)
  uint64_t start = 0;  // run-time executable range [start, end)
  uint64_t end = 0;
  uint64_t bias = 0;                           // run-time address = link-time address + bias
  std::shared_ptr<const FrameTable> metadata;  // null: nothing proven about this code
  std::shared_ptr<const SymbolTable> symbols;  // may be null
  std::string metadata_error;                  // why metadata is missing, for reports
  // Code copied at run time from the metadata's addresses (an ftrace trampoline): its frame rows hold at the
  // copy's offsets, but the copier re-targets direct calls and jumps, so the metadata's targets do not.
  bool copied = false;
};

struct SymbolizedPc {
  std::string object;
  std::string symbol;   // empty when unknown
  uint64_t offset = 0;  // pc - symbol start
};

// A function's run-time extent, from the metadata (preferred: what the validator checked) or symbols.
struct FunctionExtent {
  uint64_t start = 0;
  uint64_t size = 0;
  std::string name;
  bool cold_part = false;  // a .cold fragment: its "start" is not an entry point
};

class CodeMap {
 public:
  void add(CodeImage image);
  // The one image whose range holds `address`; nullptr for an address no image holds, and for one that two
  // images claim (a stale range overlapping live code): whose metadata holds there is unknown, so none does.
  const CodeImage* find(uint64_t address) const;

  // Metadata queries at run-time addresses; nullopt when the image has no metadata or no section covers it.
  std::optional<FrameState> state_at(const CodeImage& img, uint64_t pc) const;
  std::optional<CallSite> call_site_at(const CodeImage& img, uint64_t return_address) const;
  // Where the direct call `call` (a call site of `img`) lands, at run time; nullopt when the metadata does
  // not know (indirect, patched at run time, unresolved).
  std::optional<uint64_t> call_target(const CodeImage& img, const CallSite& call) const;
  // The `syscall` instruction that ends at `pc` (a task stopped in a system call), at run time.
  std::optional<uint64_t> syscall_before(const CodeImage& img, uint64_t pc) const;
  std::optional<FunctionExtent> function_at(uint64_t pc) const;
  // Where the proven tail calls (metadata::TailCallRecord) of the function containing `pc` jump, at run time.
  std::vector<uint64_t> tail_call_targets(uint64_t pc) const;
  // The self slots (metadata::SelfSlotRecord) of the function containing `pc`.
  std::vector<SelfSlot> self_slots(uint64_t pc) const;

  // `pc` of a caller frame is a return address: look up pc-1 so a call at a function's very end (to a
  // noreturn function) is attributed to the caller, but report the offset of pc itself.
  SymbolizedPc symbolize(uint64_t pc, bool is_return_address) const;

  const std::vector<CodeImage>& images() const { return images_; }

 private:
  std::vector<CodeImage> images_;  // sorted by start
  struct Range {
    uint64_t start, end;
  };
  std::vector<Range> contested_;  // claimed by more than one image
};

}  // namespace framecert

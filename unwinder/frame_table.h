// Frame metadata in memory: what the validator proved about each instruction of an object, in the shape
// the unwinder queries it. Serialized by write_frame_table() / parsed by parse_frame_table() in the format
// of metadata_format.h (docs/metadata.md).
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "unwinder/metadata_format.h"
#include "unwinder/result.h"

namespace framecert {

using metadata::CallTargetKind;
using metadata::CfaBase;

struct FrameState {
  CfaBase cfa_base = CfaBase::Undefined;
  int32_t cfa_offset = 0;
  int16_t bp_offset = 0;  // valid with kBpSaved
  uint8_t flags = 0;
  bool operator==(const FrameState&) const = default;
  bool has(uint8_t flag) const { return (flags & flag) != 0; }
};

struct FrameRowEntry {
  uint64_t offset = 0;
  FrameState state;
  bool operator==(const FrameRowEntry&) const = default;
};

// A direct call's target as the validator resolved it (metadata::CallTargetKind). Resolve it to an
// address with FrameTable::call_target().
struct CallTarget {
  CallTargetKind kind = CallTargetKind::Unknown;
  uint32_t ref = 0;    // Section: section index; Symbol: index into FrameTable::target_symbols
  uint64_t value = 0;  // Address: link-time address; Section: offset
  bool operator==(const CallTarget&) const = default;
};

struct CallSite {
  uint64_t return_offset = 0;
  uint8_t flags = 0;
  int32_t sp_depth = 0;  // with kCallSpDepth: CFA - rsp at the call
  int32_t bp_depth = 0;  // with kCallBpDepth: CFA - rbp at the call
  CallTarget target;
  bool operator==(const CallSite&) const = default;
  bool has(uint8_t flag) const { return (flags & flag) != 0; }
};

// A `syscall` instruction (metadata::SyscallSiteRecord): never a call site.
struct SyscallSite {
  uint64_t offset = 0;         // the instruction
  uint64_t return_offset = 0;  // the instruction after it
  bool operator==(const SyscallSite&) const = default;
};

// A proven tail call (metadata::TailCallRecord): the jump at `offset` goes to `target`'s entry.
struct TailCall {
  uint64_t offset = 0;
  CallTarget target;
  bool operator==(const TailCall&) const = default;
};

// A self slot (metadata::SelfSlotRecord): the store at `offset` keeps the function's own frame or return
// address at `base` + slot_offset.
struct SelfSlot {
  uint64_t offset = 0;
  int32_t slot_offset = 0;
  metadata::SlotKind kind = metadata::SlotKind::FrameAddress;
  metadata::SlotBase base = metadata::SlotBase::Cfa;
  bool operator==(const SelfSlot&) const = default;
};

struct FrameSection {
  std::string name;
  uint64_t address = 0;
  uint64_t size = 0;
  std::vector<FrameRowEntry> rows;    // sorted by offset, each state holds until the next row
  std::vector<CallSite> calls;        // sorted by return_offset
  std::vector<SyscallSite> syscalls;  // sorted by return_offset
  std::vector<TailCall> tail_calls;   // sorted by offset
  std::vector<SelfSlot> self_slots;   // sorted by offset
  bool operator==(const FrameSection&) const = default;
};

struct FunctionEntry {
  std::string name;
  uint32_t section = 0;
  uint64_t offset = 0;
  uint64_t size = 0;
  uint32_t flags = 0;
  std::string finding;
  std::string parent;
  bool operator==(const FunctionEntry&) const = default;
  bool has(uint32_t flag) const { return (flags & flag) != 0; }
};

// Where an address falls: a section and the offset inside it.
struct SectionOffset {
  uint32_t section = 0;
  uint64_t offset = 0;
};

class FrameTable {
 public:
  std::string object_name;
  std::string build_id;
  bool linked = false;  // addresses are virtual addresses (see metadata::kFileLinked)
  std::vector<FrameSection> sections;
  std::vector<FunctionEntry> functions;     // sorted by (section, offset)
  std::vector<std::string> target_symbols;  // names of CallTargetKind::Symbol targets

  bool operator==(const FrameTable&) const = default;

  // Locates a virtual address (linked images only; in a .o every section starts at 0).
  std::optional<SectionOffset> locate(uint64_t address) const;
  // The frame state at an instruction; nullopt if outside every described section.
  std::optional<FrameState> state_at(SectionOffset where) const;
  // The call site whose return address is `where`; nullopt if no call instruction ends there.
  std::optional<CallSite> call_site(SectionOffset where) const;
  // The function containing `where`, or nullptr.
  const FunctionEntry* function_at(SectionOffset where) const;
  // The link-time address a direct call lands at; nullopt when the target is unknown, a symbol not yet
  // resolved, or a section not placed at an address (a relocatable object's own table).
  std::optional<uint64_t> call_target(const CallSite& call) const { return target_address(call.target); }
  std::optional<uint64_t> target_address(const CallTarget& target) const;
  // The link-time addresses the proven tail calls of the function containing `where` jump to.
  std::vector<uint64_t> tail_call_targets(SectionOffset where) const;
  // The self slots of the function containing `where` (its stores, wherever they are in it).
  std::vector<SelfSlot> self_slots(SectionOffset where) const;
  // The syscall instruction that ends at `where` (a task in a system call has its rip there).
  std::optional<SyscallSite> syscall_before(SectionOffset where) const;
  // Turns CallTargetKind::Symbol targets into addresses where `address_of` knows the name (a relocatable
  // object placed at load addresses: the symbols it calls in the kernel).
  void resolve_symbol_targets(const std::function<std::optional<uint64_t>(const std::string&)>& address_of);

  // Convenience for linked images: the same queries by virtual address.
  std::optional<FrameState> state_at_address(uint64_t address) const;
  std::optional<CallSite> call_site_at_address(uint64_t return_address) const;
  const FunctionEntry* function_at_address(uint64_t address) const;
  std::optional<SyscallSite> syscall_before_address(uint64_t return_address) const;

  size_t row_count() const;
  size_t call_count() const;
};

std::vector<uint8_t> serialize_frame_table(const FrameTable& table);
Result<FrameTable> parse_frame_table(std::span<const uint8_t> bytes);
Result<void> write_frame_table(const FrameTable& table, const std::string& path);
Result<FrameTable> read_frame_table(const std::string& path);

// Human-readable text of a state, e.g. "cfa=rbp+16 rbp=frame(cfa-16)", used by `framecert dump`.
std::string describe_state(const FrameState& s);

}  // namespace framecert

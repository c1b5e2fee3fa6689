// On-disk layout of framecert frame metadata, version 4 (documented in docs/metadata.md).
// The unwinder owns this format (it consumes it); the validator produces it. All integers little-endian,
// every record naturally aligned, arrays in the order given by the header. Nothing here is C++-specific:
// a reader in any language can follow docs/metadata.md.
#pragma once

#include <cstdint>

namespace framecert::metadata {

inline constexpr char kMagic[8] = {'F', 'C', 'M', 'E', 'T', 'A', '\r', '\n'};
// 2: call sites carry the exact stack depth and the direct call target; a syscall-site table; the arrays
// reordered so every record is naturally aligned. 3: a table of proven tail calls (sibling calls).
// 4: a table of self slots (a function's own frame or return address kept in its frame).
// Older files are refused (caches regenerate them).
inline constexpr uint32_t kVersion = 4;

// File header: 64 bytes.
struct FileHeader {
  char magic[8];
  uint32_t version;
  uint32_t header_size;  // sizeof(FileHeader); lets a future version grow the header
  uint64_t file_size;    // whole file, for truncation checks
  uint32_t checksum;     // CRC-32 (zlib) of the whole file with this field read as 0
  uint32_t flags;        // kFileLinked
  uint32_t section_count;
  uint32_t row_count;
  uint32_t call_count;
  uint32_t function_count;
  uint32_t string_size;      // bytes of the string table (NUL-terminated strings)
  uint32_t object_name;      // string: the object the metadata describes
  uint32_t build_id;         // string: hex build-id, or empty
  uint32_t syscall_count;    // SyscallSiteRecords
  uint32_t tail_call_count;  // TailCallRecords
  uint32_t self_slot_count;  // SelfSlotRecords
};
static_assert(sizeof(FileHeader) == 72);

// The object was a linked image (executable, shared object, vmlinux): section addresses are virtual
// addresses. Otherwise (relocatable .o) every section starts at address 0 and is addressed by index.
inline constexpr uint32_t kFileLinked = 1u << 0;

// One executable section: 40 bytes. Its rows and call sites are contiguous slices of the global arrays.
struct SectionRecord {
  uint32_t name;  // string
  uint32_t reserved;
  uint64_t address;  // sh_addr
  uint64_t size;
  uint32_t first_row;
  uint32_t row_count;
  uint32_t first_call;
  uint32_t call_count;
};
static_assert(sizeof(SectionRecord) == 40);

enum class CfaBase : uint8_t {
  Undefined = 0,   // no proven stack state here (unreached code, or the analysis lost track)
  Sp = 1,          // CFA = rsp + cfa_offset
  Bp = 2,          // CFA = rbp + cfa_offset
  SpIndirect = 3,  // CFA = [rsp] + cfa_offset (stack swizzle)
  Other = 4,       // CFA in another register (DRAP realignment): not followed by the unwinder
};

// Row flags: what the frame pointer holds at this instruction.
inline constexpr uint8_t kBpIsFrame = 1u << 0;    // rbp == CFA-16 and [rbp] holds the caller's rbp
inline constexpr uint8_t kBpSaved = 1u << 1;      // the caller's rbp is saved at CFA + bp_offset
inline constexpr uint8_t kBpUnchanged = 1u << 2;  // rbp still holds the caller's rbp
inline constexpr uint8_t kBpZero = 1u << 3;       // rbp is known to be 0 (outermost-frame marker)
inline constexpr uint8_t kEndOfStack = 1u << 4;   // annotated end of stack (UNWIND_HINT_END_OF_STACK)
inline constexpr uint8_t kRegsFrame = 1u << 5;    // the stack holds a full register frame (pt_regs) at CFA

// The frame state from `offset` up to the next row of the same section: 12 bytes.
struct FrameRow {
  uint32_t offset;  // section offset
  int32_t cfa_offset;
  int16_t bp_offset;  // with kBpSaved: the caller's rbp is at CFA + bp_offset
  uint8_t cfa_base;   // CfaBase
  uint8_t flags;      // kBp*, kEndOfStack, kRegsFrame
};
static_assert(sizeof(FrameRow) == 12);

// Call-site flags.
inline constexpr uint8_t kCallFrameValid = 1u << 0;  // the caller had a valid frame (objtool's rule)
inline constexpr uint8_t kCallBpZero = 1u << 1;      // rbp was known 0 at the call: the caller is outermost
inline constexpr uint8_t kCallIndirect = 1u << 2;
inline constexpr uint8_t kCallNoReturn = 1u << 3;  // the callee never returns
inline constexpr uint8_t kCallSpDepth = 1u << 4;   // sp_depth is exact on every path to the call
inline constexpr uint8_t kCallBpDepth = 1u << 5;   // bp_depth is exact on every path to the call
inline constexpr uint8_t kCallFlagsKnown = 0x3f;

// Where a direct call goes, as far as the validator knows it without run-time patching.
enum class CallTargetKind : uint8_t {
  Unknown = 0,  // indirect, patched at run time (ftrace, static calls, alternatives), or not resolvable
  Address = 1,  // `target` is the link-time address (linked tables; add the load bias)
  Section = 2,  // `target_ref` is a section record, `target` an offset in it (meaningful once placed)
  Symbol = 3,   // `target_ref` is a string: a symbol undefined in the object; the call lands at its start
};

// One call instruction, keyed by its return address: 32 bytes.
struct CallSiteRecord {
  uint32_t return_offset;  // section offset of the instruction after the call
  uint8_t flags;
  uint8_t target_kind;  // CallTargetKind
  uint16_t reserved;
  int32_t sp_depth;     // with kCallSpDepth: CFA - rsp as the call executes (the callee's CFA is CFA - sp_depth)
  int32_t bp_depth;     // with kCallBpDepth: CFA - rbp at the call
  uint32_t target_ref;  // CallTargetKind::Section: section index; ::Symbol: string
  uint32_t reserved2;
  uint64_t target;  // CallTargetKind::Address: address; ::Section: offset
};
static_assert(sizeof(CallSiteRecord) == 32);

// A `syscall` instruction: a task stopped in a system call has rip right after it, where the validator
// proves nothing (objtool ends a path at `syscall`); the state at the instruction itself still holds,
// since `syscall` leaves rsp and rbp alone. Never a call site: nothing returns to it by `ret`. 12 bytes,
// sorted by (section, return_offset).
struct SyscallSiteRecord {
  uint32_t section;        // index of the section record
  uint32_t offset;         // section offset of the syscall instruction
  uint32_t return_offset;  // section offset of the instruction after it (where rip points)
};
static_assert(sizeof(SyscallSiteRecord) == 12);

// A sibling call (a jump that leaves its function for another function's entry) that the validator proved
// leaves with the caller's frame torn down: the function jumped to returns straight to this function's
// caller, so a return address after a call to this function may lead to a frame running in it. 24 bytes,
// sorted by (section, offset).
struct TailCallRecord {
  uint32_t section;     // index of the section record
  uint32_t offset;      // section offset of the jump instruction
  uint8_t target_kind;  // CallTargetKind, as in CallSiteRecord
  uint8_t reserved[3];
  uint32_t target_ref;
  uint64_t target;
};
static_assert(sizeof(TailCallRecord) == 24);

// What a self slot holds.
enum class SlotKind : uint8_t {
  FrameAddress = 1,   // the function's own frame address (rbp = CFA - 16): __builtin_frame_address(0)
  ReturnAddress = 2,  // the function's own return address (the word at CFA - 8): _RET_IP_
};

// Where a self slot lies.
enum class SlotBase : uint8_t {
  Cfa = 0,     // at CFA + offset (a store through rbp)
  CallSp = 1,  // at rsp + offset as the function's calls execute, i.e. the callee's CFA + offset (a store
               // through rsp after a realignment or an alloca, where only rsp locates the slot; meaningful
               // at the calls made with rsp where it was at the store)
};

// A store that keeps the function's own frame address or return address in its frame (validator/
// self_slots.h: proven only along straight-line code from where rbp is the frame). The skipped-frame scans
// take such a value below a frame for a trace of a skipped frame record unless the validator proved the
// slot is the function's own. 16 bytes, sorted by (section, offset).
struct SelfSlotRecord {
  uint32_t section;     // index of the section record
  uint32_t offset;      // section offset of the store instruction
  int32_t slot_offset;  // from the base
  uint8_t kind;         // SlotKind
  uint8_t base;         // SlotBase
  uint8_t reserved[2];
};
static_assert(sizeof(SelfSlotRecord) == 16);

// Function flags.
inline constexpr uint32_t kFuncCertified = 1u << 0;    // every path validated, no finding
inline constexpr uint32_t kFuncNonStandard = 1u << 1;  // STACK_FRAME_NON_STANDARD or otherwise skipped
inline constexpr uint32_t kFuncCold = 1u << 2;         // a .cold part; `parent` names the function
inline constexpr uint32_t kFuncNoReturn = 1u << 3;     // inferred never to return

// One function symbol: 40 bytes.
struct FunctionRecord {
  uint32_t name;     // string
  uint32_t section;  // index into the section records
  uint64_t offset;   // section offset
  uint64_t size;
  uint32_t flags;
  uint32_t finding;  // string: the first finding's text when not certified, else empty
  uint32_t parent;   // string: the parent function of a .cold part, else empty
  uint32_t reserved;
};
static_assert(sizeof(FunctionRecord) == 40);

}  // namespace framecert::metadata

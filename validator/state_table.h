// The distinct stack states the checker records, each stored once in a compact encoding. A CfiState is
// ~300 bytes; an object whose every instruction has its own state (a run of pushes, a long stack probe)
// would otherwise cost that much per instruction (docs/design.md, "Memory"). Only registers that differ
// from the empty state are stored, as variable-length integers, so a typical state takes 5-20 bytes.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "validator/cfi_state.h"

namespace framecert {

class StateTable {
 public:
  static constexpr int32_t kMaxStates = 1 << 30;  // the checker packs ids in 30 bits
  // Decoded states, recently asked for. Decoding on every lookup would cost more than the checking:
  // consecutive instructions mostly share a state, and a few states are asked for again and again. A small
  // direct-mapped cache (18 KiB) answers most questions without decoding.
  class Cache {
   private:
    friend class StateTable;
    struct Slot {
      int32_t id = -1;
      CfiState state;
    };
    std::array<Slot, 64> slots_{};
  };
  // The id of `s`, adding it when it is new. Ids are dense, from 0, in order of first appearance.
  int32_t intern(const CfiState& s);
  // The state with id `id` (decoded: a copy).
  CfiState operator[](int32_t id) const { return at(id); }
  // The same without the copy (a CfiState is ~300 bytes; the passes over every instruction ask for one
  // each): a reference into the table's cache, valid only until the next lookup in this table.
  const CfiState& at(int32_t id) const { return at(id, cache_); }
  // The same through a cache of the caller's: one per thread reading the table while another uses at().
  const CfiState& at(int32_t id, Cache& cache) const;
  size_t size() const { return ends_.size(); }

 private:
  std::string_view encoding(int32_t id) const;
  void grow();

  mutable Cache cache_;
  Cache::Slot last_interned_;  // runs of instructions intern the same state: answered without hashing

  std::string bytes_;           // every state's encoding, back to back (at most 4 GiB)
  std::vector<uint32_t> ends_;  // per id: where its encoding ends in bytes_
  std::vector<int32_t> slots_;  // open-addressing hash table of ids (-1: empty), at most 3/4 full
  std::string scratch_;
};

}  // namespace framecert

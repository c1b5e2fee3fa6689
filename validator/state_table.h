// The distinct stack states the checker records, each stored once in a compact encoding. A CfiState is
// ~300 bytes; an object whose every instruction has its own state (a run of pushes, a long stack probe)
// would otherwise cost that much per instruction (docs/design.md, "Memory"). Only registers that differ
// from the empty state are stored, as variable-length integers, so a typical state takes 5-20 bytes.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "validator/cfi_state.h"

namespace framecert {

class StateTable {
 public:
  static constexpr int32_t kMaxStates = 1 << 30;  // the checker packs ids in 30 bits
  // The id of `s`, adding it when it is new. Ids are dense, from 0, in order of first appearance.
  int32_t intern(const CfiState& s);
  // The state with id `id` (decoded: a copy).
  CfiState operator[](int32_t id) const { return at(id); }
  // The same without the copy (a CfiState is ~300 bytes; the passes over every instruction ask for one
  // each): a reference into the decode cache, valid only until the next lookup in this table.
  const CfiState& at(int32_t id) const;
  // The state with id `id` decoded without the cache: safe from several threads at once (at() is not).
  CfiState decoded(int32_t id) const;

  // Lookups like at() through a decode cache of the reader's own: one per thread reading the table at once.
  class Reader {
   public:
    explicit Reader(const StateTable& table) : table_(table) {
      for (auto& slot : cache_) slot.first = -1;
    }
    const CfiState& at(int32_t id);

   private:
    const StateTable& table_;
    std::array<std::pair<int32_t, CfiState>, 64> cache_{};
  };
  size_t size() const { return ends_.size(); }

 private:
  std::string_view encoding(int32_t id) const;
  void grow();

  // Decoding on every lookup would cost more than the checking: consecutive instructions mostly share a
  // state, and a few states are asked for again and again. A small direct-mapped cache of decoded states
  // (18 KiB), and the last state interned, answer most questions without decoding or hashing.
  static constexpr size_t kCacheSlots = 64;
  struct CachedState {
    int32_t id = -1;
    CfiState state;
  };
  mutable std::array<CachedState, kCacheSlots> cache_{};
  CachedState last_interned_;

  std::string bytes_;           // every state's encoding, back to back (at most 4 GiB)
  std::vector<uint32_t> ends_;  // per id: where its encoding ends in bytes_
  std::vector<int32_t> slots_;  // open-addressing hash table of ids (-1: empty), at most 3/4 full
  std::string scratch_;
};

}  // namespace framecert

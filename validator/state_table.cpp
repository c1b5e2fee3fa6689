#include "validator/state_table.h"

#include <cstdint>
#include <functional>
#include <stdexcept>
#include <string_view>

namespace framecert {

namespace {

void put(std::string& out, int64_t v) {
  uint64_t z = (static_cast<uint64_t>(v) << 1) ^ static_cast<uint64_t>(v >> 63);  // zigzag: small negatives stay short
  while (z >= 0x80) {
    out.push_back(static_cast<char>(0x80 | (z & 0x7f)));
    z >>= 7;
  }
  out.push_back(static_cast<char>(z));
}

int64_t get(std::string_view in, size_t& pos) {
  uint64_t z = 0;
  for (int shift = 0;; shift += 7) {
    const auto b = static_cast<uint8_t>(in.at(pos++));
    z |= static_cast<uint64_t>(b & 0x7f) << shift;
    if (!(b & 0x80)) break;
  }
  return static_cast<int64_t>(z >> 1) ^ -static_cast<int64_t>(z & 1);
}

// The registers that differ from the empty CfiReg: a mask, then base and offset of each.
void put_regs(std::string& out, const std::array<CfiReg, cfi::kNumRegs>& regs) {
  uint32_t mask = 0;
  for (int r = 0; r < cfi::kNumRegs; ++r)
    if (regs[r] != CfiReg{}) mask |= 1u << r;
  put(out, mask);
  for (int r = 0; r < cfi::kNumRegs; ++r)
    if (mask >> r & 1) {
      put(out, regs[r].base);
      put(out, regs[r].offset);
    }
}

void get_regs(std::string_view in, size_t& pos, std::array<CfiReg, cfi::kNumRegs>& regs) {
  const auto mask = static_cast<uint32_t>(get(in, pos));
  for (int r = 0; r < cfi::kNumRegs; ++r)
    if (mask >> r & 1) {
      regs[r].base = static_cast<int>(get(in, pos));
      regs[r].offset = static_cast<int>(get(in, pos));
    }
}

// Equal states have equal encodings and different states different ones: every field is written.
void encode(const CfiState& s, std::string& out) {
  out.clear();
  put(out, s.cfa.base);
  put(out, s.cfa.offset);
  put(out, s.stack_size);
  put(out, s.drap_reg);
  put(out, s.drap_offset);
  put(out, s.type);
  put(out,
      (s.bp_scratch ? 1 : 0) | (s.drap ? 2 : 0) | (s.end ? 4 : 0) | (s.bp_zero ? 8 : 0) | (s.force_undefined ? 16 : 0));
  put_regs(out, s.regs);
  put_regs(out, s.vals);
}

CfiState decode(std::string_view in) {
  CfiState s;
  size_t pos = 0;
  s.cfa.base = static_cast<int>(get(in, pos));
  s.cfa.offset = static_cast<int>(get(in, pos));
  s.stack_size = static_cast<int>(get(in, pos));
  s.drap_reg = static_cast<int>(get(in, pos));
  s.drap_offset = static_cast<int>(get(in, pos));
  s.type = static_cast<uint8_t>(get(in, pos));
  const int64_t flags = get(in, pos);
  s.bp_scratch = flags & 1;
  s.drap = flags & 2;
  s.end = flags & 4;
  s.bp_zero = flags & 8;
  s.force_undefined = flags & 16;
  get_regs(in, pos, s.regs);
  get_regs(in, pos, s.vals);
  return s;
}

size_t hash_of(std::string_view encoded) { return std::hash<std::string_view>{}(encoded); }

}  // namespace

std::string_view StateTable::encoding(int32_t id) const {
  const uint32_t begin = id == 0 ? 0 : ends_[id - 1];
  return std::string_view(bytes_).substr(begin, ends_[id] - begin);
}

void StateTable::grow() {
  std::vector<int32_t> old = std::move(slots_);
  slots_.assign(old.empty() ? 64 : old.size() * 2, -1);
  const size_t mask = slots_.size() - 1;
  for (int32_t id : old)
    if (id >= 0) {
      size_t k = hash_of(encoding(id)) & mask;
      while (slots_[k] >= 0) k = (k + 1) & mask;
      slots_[k] = id;
    }
}

int32_t StateTable::intern(const CfiState& s) {
  if (last_interned_.id >= 0 && last_interned_.state == s) return last_interned_.id;
  encode(s, scratch_);
  if ((ends_.size() + 1) * 4 > slots_.size() * 3) grow();
  const size_t mask = slots_.size() - 1;
  for (size_t k = hash_of(scratch_) & mask;; k = (k + 1) & mask) {
    if (slots_[k] < 0) {
      if (ends_.size() >= static_cast<size_t>(kMaxStates) || bytes_.size() + scratch_.size() > UINT32_MAX)
        throw std::length_error("too many distinct stack states");
      bytes_ += scratch_;
      ends_.push_back(static_cast<uint32_t>(bytes_.size()));
      slots_[k] = static_cast<int32_t>(ends_.size() - 1);
      last_interned_ = {slots_[k], s};
      return slots_[k];
    }
    if (encoding(slots_[k]) == scratch_) {
      last_interned_ = {slots_[k], s};
      return slots_[k];
    }
  }
}

const CfiState& StateTable::at(int32_t id, Cache& cache) const {
  Cache::Slot& slot = cache.slots_[static_cast<size_t>(id) % cache.slots_.size()];
  if (slot.id != id) slot = {id, decode(encoding(id))};
  return slot.state;
}

}  // namespace framecert

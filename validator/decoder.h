// Decodes x86-64 machine code into the arch-neutral Insn model. This is the only place Zydis is used.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <vector>

#include "validator/insn.h"

namespace framecert {

class Decoder {
 public:
  Decoder();
  ~Decoder();
  Decoder(const Decoder&) = delete;
  Decoder& operator=(const Decoder&) = delete;

  // Decodes the instruction starting at `code[0]`, which sits at section offset `offset`. `code` holds the
  // bytes up to the end of the section. Returns nullopt when the bytes are not a valid 64-bit instruction
  // (or the section ends inside it). Thread-safe: a Decoder may be shared by worker threads.
  std::optional<DecodedInsn> decode(std::span<const uint8_t> code, uint32_t offset) const;
  // How many instructions decode() will find among those that start in [begin, limit) (the last may run past
  // `limit`), stopping at the first undecodable one: a cheap pass (lengths only, no operands) so that the
  // instruction table is allocated once, exactly. Notes the offset of every `every`-th one (0: none): where
  // decoding may start on another thread and still find the instructions one linear decode finds.
  struct CountRun {
    size_t count = 0;
    uint64_t end = 0;          // the offset after the last instruction counted
    bool undecodable = false;  // stopped at bytes that are no instruction (at `end`)
    std::vector<uint64_t> starts;
  };
  CountRun count_run(std::span<const uint8_t> code, uint64_t begin, uint64_t limit, size_t every) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace framecert

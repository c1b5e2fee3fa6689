// Decodes x86-64 machine code into the arch-neutral Insn model. This is the only place Zydis is used.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>

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
  std::optional<Insn> decode(std::span<const uint8_t> code, uint64_t offset) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace framecert

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
  std::optional<DecodedInsn> decode(std::span<const uint8_t> code, uint32_t offset) const;
  // How many instructions decode() will find from code[0] on, stopping at the first undecodable one: a
  // cheap pass (lengths only, no operands) so that the instruction table is allocated once, exactly.
  size_t count(std::span<const uint8_t> code) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace framecert

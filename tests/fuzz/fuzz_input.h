// Reads a fuzzer's input as a stream of little-endian integers; past the end every read is 0, so a
// target never has to check lengths. Bytes are consumed strictly in order (each read is sequenced).
#pragma once

#include <cstddef>
#include <cstdint>

namespace framecert::fuzz {

struct Reader {
  const uint8_t* p;
  size_t n;
  uint8_t u8() {
    if (n == 0) return 0;
    --n;
    return *p++;
  }
  uint64_t uint(int bytes) {
    uint64_t v = 0;
    for (int i = 0; i < bytes; ++i) v |= static_cast<uint64_t>(u8()) << (8 * i);
    return v;
  }
  uint16_t u16() { return static_cast<uint16_t>(uint(2)); }
  uint64_t u64() { return uint(8); }
};

}  // namespace framecert::fuzz

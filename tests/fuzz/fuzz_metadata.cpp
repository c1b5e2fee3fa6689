// libFuzzer target: arbitrary bytes -> parse_frame_table(). Where they parse, serializing the table and
// parsing that again must give the same table, and the lookups on addresses derived from the table (and
// from the input) must not crash. Each input is also parsed a second time with its header's file_size
// and checksum repaired, so mutations reach the parser behind the checksum.
#include <zlib.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <span>
#include <vector>

#include "unwinder/frame_table.h"

namespace {

using namespace framecert;

void probe(const FrameTable& t, uint64_t address) {
  if (auto where = t.locate(address)) {
    (void)t.state_at(*where);
    (void)t.call_site(*where);
    (void)t.function_at(*where);
  }
  (void)t.state_at_address(address);
  (void)t.call_site_at_address(address);
  (void)t.function_at_address(address);
  for (uint32_t s = 0; s < t.sections.size() + 1 && s < 64; ++s) {
    SectionOffset where{s, address};
    (void)t.state_at(where);
    (void)t.call_site(where);
    (void)t.function_at(where);
  }
}

void exercise(const FrameTable& t, uint64_t extra) {
  auto bytes = serialize_frame_table(t);
  auto again = parse_frame_table(bytes);
  if (!again) std::abort();  // what we wrote we must read back
  if (!(*again == t)) std::abort();
  (void)t.row_count();
  (void)t.call_count();
  size_t budget = 256;  // bounded work per input
  for (const FrameSection& s : t.sections) {
    for (uint64_t a : {s.address, s.address + s.size - 1, s.address + s.size, s.address - 1}) probe(t, a);
    for (const FrameRowEntry& r : s.rows) {
      if (budget-- == 0) return;
      probe(t, s.address + r.offset);
      probe(t, r.offset);
      (void)describe_state(r.state);
    }
    for (const CallSite& c : s.calls) {
      if (budget-- == 0) return;
      probe(t, s.address + c.return_offset);
      probe(t, c.return_offset - 1);
    }
  }
  for (const FunctionEntry& f : t.functions) {
    if (budget-- == 0) return;
    probe(t, f.offset);
    probe(t, f.offset + f.size);
  }
  probe(t, extra);
  probe(t, 0);
  probe(t, ~0ull);
}

void run(std::span<const uint8_t> bytes) {
  uint64_t extra = 0;
  if (bytes.size() >= 8) std::memcpy(&extra, bytes.data() + bytes.size() - 8, 8);
  auto t = parse_frame_table(bytes);
  if (t) exercise(*t, extra);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  run({data, size});
  if (size < sizeof(metadata::FileHeader)) return 0;
  std::vector<uint8_t> fixed(data, data + size);
  metadata::FileHeader h;
  std::memcpy(&h, fixed.data(), sizeof h);
  h.file_size = size;
  h.checksum = 0;
  std::memcpy(fixed.data(), &h, sizeof h);
  uLong crc = crc32(0L, Z_NULL, 0);
  crc = crc32(crc, fixed.data(), static_cast<uInt>(fixed.size()));
  h.checksum = static_cast<uint32_t>(crc);
  std::memcpy(fixed.data(), &h, sizeof h);
  run(fixed);
  return 0;
}

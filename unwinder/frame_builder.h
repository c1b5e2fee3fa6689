// Appends frames with their symbols; shared by both walkers.
#pragma once

#include "unwinder/code_map.h"
#include "unwinder/trace.h"

namespace framecert {

inline void push_frame(Trace& t, const CodeMap& code, uint64_t pc, uint64_t sp, uint64_t fp, FrameTrust trust) {
  Frame f{pc, sp, fp, trust, {}, {}, 0, 0, {}, 0};
  SymbolizedPc s = code.symbolize(pc, /*is_return_address=*/!t.frames.empty());
  f.object = std::move(s.object);
  f.symbol = std::move(s.symbol);
  f.offset = s.offset;
  t.frames.push_back(std::move(f));
}

}  // namespace framecert

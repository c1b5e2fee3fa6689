// The JSON shape of a trace's frames, shared by `framecert walk` and `framecert guest-walk`
// (docs/design.md: {"pc", "symbol", "offset"} plus how each frame was found).
#pragma once

#include <cstdint>
#include <string>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "unwinder/trace.h"

namespace framecert::cli {

inline std::string hex(uint64_t v) { return fmt::format("{:#x}", v); }

inline nlohmann::json frame_json(const Frame& f) {
  return {{"pc", hex(f.pc)},
          {"symbol", f.symbol.empty() ? nlohmann::json(nullptr) : nlohmann::json(f.symbol)},
          {"offset", f.offset},
          {"object", f.object},
          {"trust", std::string(trust_name(f.trust))},
          {"sp", hex(f.sp)},
          {"fp", hex(f.fp)}};
}

}  // namespace framecert::cli

// Turns the checker's per-instruction stack states, and what rbp holds (rbp_flow.h), into the frame
// metadata the unwinder reads.
#pragma once

#include <cstdint>
#include <vector>

#include "unwinder/frame_table.h"
#include "validator/checker.h"
#include "validator/decoded_object.h"

namespace framecert {

// `bp`: rbp_values(obj, result).
FrameTable build_frame_table(const DecodedObject& obj, const CheckResult& result, const std::vector<uint8_t>& bp);

}  // namespace framecert

// What the rbp *register* holds at every instruction — the caller's value, this function's frame, zero, or
// something unknown — as a forward data-flow pass over the paths the checker followed. objtool tracks only
// where rbp is *saved*; a frame it calls valid is useless to a frame-pointer unwinder if rbp was overwritten
// before a call. The metadata builder records the result per instruction and call site; the frame-pointer
// check (frame_pointer_check.h) reports the calls it makes unsafe.
#pragma once

#include <cstdint>
#include <vector>

#include "validator/checker.h"
#include "validator/decoded_object.h"

namespace framecert {

inline constexpr uint8_t kBpUnset = 0xff;  // an instruction no path reached

// Per instruction (before it executes): a BpValue as uint8_t, or kBpUnset. `threads` >= 2: the flows of two
// halves of the functions at once; the result is the one a single thread gives.
std::vector<uint8_t> rbp_values(const DecodedObject& obj, const CheckResult& result, unsigned threads = 1);

}  // namespace framecert

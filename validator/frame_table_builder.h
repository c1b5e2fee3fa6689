// Turns the checker's per-instruction stack states into the frame metadata the unwinder reads.
// Beyond objtool's state it runs one more data-flow pass: what the rbp *register* holds (the caller's
// value, this function's frame, zero, or something unknown), because a frame that objtool calls valid is
// useless to an unwinder if rbp was overwritten before the call.
#pragma once

#include "unwinder/frame_table.h"
#include "validator/checker.h"
#include "validator/decoded_object.h"

namespace framecert {

FrameTable build_frame_table(const DecodedObject& obj, const CheckResult& result);

}  // namespace framecert

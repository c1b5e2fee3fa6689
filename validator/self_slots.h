// Frame slots that hold the function's own frame address or its own return address: `mov %rbp,d(%rbp)`
// (`__builtin_frame_address(0)` kept in a local) and `mov 8(%rbp),%reg ... mov %reg,d(%rbp)` (`_RET_IP_`
// kept in a local). The unwinder's skipped-frame scans look for exactly those two values in the frame
// below a claimed caller frame as traces of a frame record the chain jumped over; a slot the validator
// proved to be the function's own copy is no such trace (unwinder/reliability.h, SelfSlots).
//
// The values are followed only along straight-line code: an instruction the pass carries a register's
// value into must be reached from the instruction before it alone (no jump, switch case or alternative
// lands there), and any write to the register, any call and any hint ends what is known. A function with
// an indirect jump whose destinations are unknown gets no slots. A slot missed only keeps a false
// "frame-skipped"; a slot recorded where the value is not the function's own could hide a real trace, so
// every rule here errs towards recording nothing.
#pragma once

#include <cstdint>
#include <vector>

#include "unwinder/metadata_format.h"
#include "validator/checker.h"
#include "validator/decoded_object.h"

namespace framecert {

struct SelfSlotStore {
  int32_t insn = 0;         // the store instruction
  int32_t slot_offset = 0;  // the slot is at `base` + slot_offset
  metadata::SlotKind kind = metadata::SlotKind::FrameAddress;
  metadata::SlotBase base = metadata::SlotBase::Cfa;
};

// In instruction order. `bp`: rbp's value before each instruction (rbp_flow.h).
std::vector<SelfSlotStore> find_self_slots(const DecodedObject& obj, const CheckResult& r,
                                           const std::vector<uint8_t>& bp);

}  // namespace framecert

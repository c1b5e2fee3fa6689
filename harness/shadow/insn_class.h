// The shadow-stack plugin's own x86-64 instruction classifier: is this a near call, a near ret, or anything
// else? It is deliberately tiny and independent of the Zydis decoder framecert's validator uses: the ground
// truth must not share code with what it checks, or a decoder bug would show up on both sides and cancel out.
#pragma once

#include <cstddef>
#include <cstdint>

namespace framecert::shadow {

enum class InsnKind {
  kOther,
  kNearCall,  // E8 rel32; FF /2 (any ModRM form): pushes the return address, then jumps
  kNearRet,   // C3; C2 imm16: pops the return address
};

// Far calls and rets (FF /3, 9A, CA, CB, `lretq`), iret, syscall/sysret and the rest are kOther: they switch
// or build stacks in ways the near-call bookkeeping does not model. The bytes are those of one instruction
// (as QEMU hands them over); only the prefixes, the opcode and for FF the ModRM byte are looked at, and an
// encoding cut short before them is kOther.
InsnKind classify_insn(const uint8_t* bytes, size_t size);

}  // namespace framecert::shadow

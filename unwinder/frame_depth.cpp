#include "unwinder/frame_depth.h"

#include <Zydis/Zydis.h>

#include <array>
#include <vector>

namespace framecert {

namespace {

constexpr size_t kMaxInstructions = 20000;  // a function this large is not analysed
constexpr int32_t kUnknown = INT32_MIN;     // rbp not at a known depth

struct State {
  int32_t sp = 8;  // CFA - rsp: 8 at the entry (the return address)
  int32_t bp = kUnknown;
  bool operator==(const State&) const = default;
};

bool is_reg(const ZydisDecodedOperand& op, ZydisRegister r) {
  return op.type == ZYDIS_OPERAND_TYPE_REGISTER && op.reg.value == r;
}

bool writes_reg(const ZydisDecodedInstruction& zi, const ZydisDecodedOperand* ops, ZydisRegister full) {
  for (uint8_t i = 0; i < zi.operand_count; ++i) {
    const ZydisDecodedOperand& op = ops[i];
    if (op.type != ZYDIS_OPERAND_TYPE_REGISTER || !(op.actions & ZYDIS_OPERAND_ACTION_MASK_WRITE)) continue;
    if (ZydisRegisterGetLargestEnclosing(ZYDIS_MACHINE_MODE_LONG_64, op.reg.value) == full) return true;
  }
  return false;
}

// The immediate of `op` as a signed value, or nullopt if it is not an immediate.
std::optional<int64_t> imm_of(const ZydisDecodedOperand& op) {
  if (op.type != ZYDIS_OPERAND_TYPE_IMMEDIATE) return std::nullopt;
  return op.imm.is_signed ? op.imm.value.s : static_cast<int64_t>(op.imm.value.u);
}

}  // namespace

FunctionDepths analyse_function_depths(Memory& text, uint64_t start, uint64_t size) {
  FunctionDepths out;
  if (size == 0 || size > (1u << 20)) return out;  // no function is a MiB; a bogus symbol size
  const uint64_t end = start + size;
  ZydisDecoder dec;
  if (!ZYAN_SUCCESS(ZydisDecoderInit(&dec, ZYDIS_MACHINE_MODE_LONG_64, ZYDIS_STACK_WIDTH_64))) return out;
  std::vector<uint8_t> code(size);
  if (text.read(RemoteAddr(start), code.data(), size) != size) return out;

  std::unordered_map<uint64_t, State> seen{{start, State{}}};
  std::vector<std::pair<uint64_t, State>> work{{start, State{}}};
  size_t decoded = 0;
  // Queue `addr` with `s`; false when another path reached it at a different depth.
  auto reach = [&](uint64_t addr, State s) {
    auto [it, inserted] = seen.emplace(addr, s);
    if (inserted) {
      work.emplace_back(addr, s);
      return true;
    }
    return it->second == s;
  };
  while (!work.empty()) {
    auto [addr, s] = work.back();
    work.pop_back();
    for (;;) {
      if (addr < start || addr >= end) break;  // fell off the function (after a noreturn call): nothing here
      if (++decoded > kMaxInstructions) return out;
      ZydisDecodedInstruction zi;
      std::array<ZydisDecodedOperand, ZYDIS_MAX_OPERAND_COUNT> ops;
      if (!ZYAN_SUCCESS(ZydisDecoderDecodeFull(&dec, code.data() + (addr - start), end - addr, &zi, ops.data())))
        return out;
      const uint64_t next = addr + zi.length;
      const ZydisDecodedOperand& op0 = ops[0];
      const ZydisDecodedOperand& op1 = ops[1];
      State after = s;
      bool falls_through = true;
      switch (zi.mnemonic) {
        case ZYDIS_MNEMONIC_RET:
        case ZYDIS_MNEMONIC_UD2:
        case ZYDIS_MNEMONIC_HLT:
        case ZYDIS_MNEMONIC_INT3:
          falls_through = false;
          break;
        case ZYDIS_MNEMONIC_JMP: {
          if (op0.type != ZYDIS_OPERAND_TYPE_IMMEDIATE || !op0.imm.is_relative) return out;  // indirect jump
          uint64_t target = next + static_cast<uint64_t>(op0.imm.value.s);
          if (target >= start && target < end && !reach(target, s)) return out;
          falls_through = false;  // outside: a tail call, the path leaves the function
          break;
        }
        case ZYDIS_MNEMONIC_CALL:
          if (op0.type == ZYDIS_OPERAND_TYPE_IMMEDIATE && op0.imm.is_relative) {
            uint64_t target = next + static_cast<uint64_t>(op0.imm.value.s);
            if (target == next) {  // call 1f; 1: pop %reg — reading rip: a push, not a call
              after.sp += 8;
              break;
            }
            // A call into the middle of this very function (RSB stuffing) is not followed; a call to its
            // entry is plain recursion.
            if (target > start && target < end) return out;
          }
          out.calls[next] = CallDepth{s.sp, s.bp};
          break;  // the callee returns with rsp where it was
        case ZYDIS_MNEMONIC_PUSH:
        case ZYDIS_MNEMONIC_PUSHFQ:
          after.sp += zi.operand_width / 8;
          break;
        case ZYDIS_MNEMONIC_POP:
        case ZYDIS_MNEMONIC_POPFQ:
          if (is_reg(op0, ZYDIS_REGISTER_RSP)) return out;
          after.sp -= zi.operand_width / 8;
          if (writes_reg(zi, ops.data(), ZYDIS_REGISTER_RBP)) after.bp = kUnknown;
          break;
        case ZYDIS_MNEMONIC_LEAVE:  // mov %rbp,%rsp; pop %rbp
          if (s.bp == kUnknown) return out;
          after.sp = s.bp - 8;
          after.bp = kUnknown;
          break;
        case ZYDIS_MNEMONIC_SUB:
        case ZYDIS_MNEMONIC_ADD:
          if (is_reg(op0, ZYDIS_REGISTER_RSP)) {
            auto imm = imm_of(op1);
            if (!imm) return out;  // e.g. sub %rax,%rsp (alloca): depth unknown from here
            after.sp += static_cast<int32_t>(zi.mnemonic == ZYDIS_MNEMONIC_SUB ? *imm : -*imm);
          } else if (writes_reg(zi, ops.data(), ZYDIS_REGISTER_RBP)) {
            after.bp = kUnknown;
          }
          break;
        case ZYDIS_MNEMONIC_LEA:
          if (is_reg(op0, ZYDIS_REGISTER_RSP)) {
            if (op1.mem.index != ZYDIS_REGISTER_NONE) return out;
            if (op1.mem.base == ZYDIS_REGISTER_RSP) {
              after.sp = s.sp - static_cast<int32_t>(op1.mem.disp.value);
            } else if (op1.mem.base == ZYDIS_REGISTER_RBP && s.bp != kUnknown) {
              after.sp = s.bp - static_cast<int32_t>(op1.mem.disp.value);
            } else {
              return out;
            }
          } else if (writes_reg(zi, ops.data(), ZYDIS_REGISTER_RBP)) {
            after.bp = kUnknown;
          }
          break;
        case ZYDIS_MNEMONIC_MOV:
          if (is_reg(op0, ZYDIS_REGISTER_RBP) && is_reg(op1, ZYDIS_REGISTER_RSP)) {
            after.bp = s.sp;
          } else if (is_reg(op0, ZYDIS_REGISTER_RSP) && is_reg(op1, ZYDIS_REGISTER_RBP)) {
            if (s.bp == kUnknown) return out;
            after.sp = s.bp;
          } else if (is_reg(op0, ZYDIS_REGISTER_RSP)) {
            return out;
          } else if (writes_reg(zi, ops.data(), ZYDIS_REGISTER_RBP)) {
            after.bp = kUnknown;
          }
          break;
        default:
          if (zi.meta.category == ZYDIS_CATEGORY_COND_BR) {
            if (op0.type != ZYDIS_OPERAND_TYPE_IMMEDIATE || !op0.imm.is_relative) return out;
            uint64_t target = next + static_cast<uint64_t>(op0.imm.value.s);
            if (target >= start && target < end && !reach(target, s)) return out;
            break;
          }
          if (zi.meta.category == ZYDIS_CATEGORY_UNCOND_BR || zi.meta.category == ZYDIS_CATEGORY_RET ||
              zi.mnemonic == ZYDIS_MNEMONIC_ENTER)
            return out;
          // Anything else that moves rsp (xchg, and, cmov, a far call...) is not followed.
          if (writes_reg(zi, ops.data(), ZYDIS_REGISTER_RSP)) return out;
          if (writes_reg(zi, ops.data(), ZYDIS_REGISTER_RBP)) after.bp = kUnknown;
          break;
      }
      if (after.sp < 8) return out;  // rsp above the CFA: not code this analysis understands
      if (!falls_through) break;
      // Fall-through: stop where another path already went (checking the depths agree).
      auto it = seen.find(next);
      if (it != seen.end()) {
        if (!(it->second == after)) return out;
        break;
      }
      seen.emplace(next, after);
      addr = next;
      s = after;
    }
  }
  out.ok = true;
  return out;
}

std::shared_ptr<const FunctionDepths> FrameDepthCache::get(Memory& text, uint64_t start, uint64_t size) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = by_start_.find(start);
    if (it != by_start_.end()) return it->second;
  }
  auto d = std::make_shared<const FunctionDepths>(analyse_function_depths(text, start, size));
  std::lock_guard<std::mutex> lock(mu_);
  return by_start_.emplace(start, d).first->second;
}

}  // namespace framecert

#include "unwinder/trace.h"

#include <array>
#include <utility>

namespace framecert {

namespace {
constexpr std::array<std::pair<Reason, std::string_view>, 21> kNames{{
    {Reason::None, "none"},
    {Reason::NoMetadata, "no-metadata"},
    {Reason::NoFrameState, "no-frame-state"},
    {Reason::BpClobbered, "bp-clobbered"},
    {Reason::MemoryUnreadable, "memory-unreadable"},
    {Reason::FrameOutOfBounds, "frame-out-of-bounds"},
    {Reason::FrameNotAscending, "frame-not-ascending"},
    {Reason::FrameMisaligned, "frame-misaligned"},
    {Reason::LoopDetected, "loop-detected"},
    {Reason::ReturnAddressNotText, "return-address-not-text"},
    {Reason::ReturnAddressNotAfterCall, "return-address-not-after-call"},
    {Reason::NoFrameAtCallSite, "no-frame-at-call-site"},
    {Reason::CallTargetMismatch, "call-target-mismatch"},
    {Reason::FrameSkipped, "frame-skipped"},
    {Reason::InterruptFrameMidStack, "interrupt-frame-mid-stack"},
    {Reason::StackEndNotReached, "stack-end-not-reached"},
    {Reason::TooDeep, "too-deep"},
    {Reason::CrossCheckMismatch, "cross-check-mismatch"},
    {Reason::NoRegisters, "no-registers"},
    {Reason::FrameSizeMismatch, "frame-size-mismatch"},
    {Reason::TrampolineReturnUnrecovered, "trampoline-return-unrecovered"},
}};
}  // namespace

std::string_view reason_name(Reason r) {
  for (const auto& [reason, name] : kNames)
    if (reason == r) return name;
  return "unknown";
}

std::optional<Reason> reason_from_name(std::string_view name) {
  for (const auto& [reason, n] : kNames)
    if (n == name) return reason;
  return std::nullopt;
}

std::vector<Reason> all_reasons() {
  std::vector<Reason> out;
  for (const auto& [reason, name] : kNames)
    if (reason != Reason::None) out.push_back(reason);
  return out;
}

std::string_view trust_name(FrameTrust t) {
  switch (t) {
    case FrameTrust::Context:
      return "context";
    case FrameTrust::CfaRule:
      return "cfa-rule";
    case FrameTrust::FramePointer:
      return "frame-pointer";
  }
  return "?";
}

}  // namespace framecert

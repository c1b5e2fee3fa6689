// Fault injection: copy the stacks of a frozen process, corrupt random words, walk the copies. The
// assertion is always the same: no crash, no hang, and every trace called reliable is the true trace.
#pragma once

#include <map>
#include <random>
#include <string>
#include <vector>

#include "unwinder/memory_fake.h"
#include "unwinder/memory_ptrace.h"
#include "unwinder/process_walk.h"

namespace framecert::testing {

struct ThreadSnapshot {
  pid_t tid = 0;
  Regs regs;
  StackBounds bounds;
  uint64_t copied_low = 0, copied_high = 0;  // the stack words copied (and corruptible)
  Trace truth;
};

struct Snapshot {
  CodeMap code;
  FakeMemory memory;  // text of every small image + the copied stacks
  std::vector<ThreadSnapshot> threads;
};

// Freezes `pid`, walks it, and copies each reliably-walked thread's live stack and the text.
inline Result<Snapshot> snapshot_process(pid_t pid, const MetadataProvider& metadata) {
  Snapshot snap;
  std::string error;
  ProcessWalkOptions o;
  o.while_frozen = [&](const FrozenProcess&, const CodeMap& code, const ProcessReport& report) {
    ProcessMemory mem(pid);
    snap.code = code;
    for (const CodeImage& img : code.images()) {
      if (img.end - img.start > (8u << 20)) continue;
      std::vector<uint8_t> bytes(img.end - img.start);
      size_t n = mem.read(RemoteAddr(img.start), bytes.data(), bytes.size());
      snap.memory.map_bytes(img.start, bytes.data(), n);
    }
    for (const ThreadReport& t : report.threads) {
      if (!t.unwind.trace.verdict.reliable || !t.regs || !t.bounds) continue;
      ThreadSnapshot ts{t.tid, *t.regs, *t.bounds, 0, 0, {}};
      uint64_t top = t.regs->rsp;
      for (const Frame& f : t.unwind.trace.frames) top = std::max({top, f.sp, f.fp});
      ts.copied_low = t.regs->rsp & ~uint64_t{7};
      ts.copied_high = std::min(t.bounds->high, top + 64);
      std::vector<uint8_t> bytes(ts.copied_high - ts.copied_low);
      if (mem.read(RemoteAddr(ts.copied_low), bytes.data(), bytes.size()) != bytes.size()) continue;
      snap.memory.map_bytes(ts.copied_low, bytes.data(), bytes.size());
      ts.truth = t.unwind.trace;
      snap.threads.push_back(std::move(ts));
    }
  };
  auto r = walk_process(pid, metadata, o);
  if (!r) return tl::unexpected(r.error());
  // The copy must walk exactly like the live process did.
  for (ThreadSnapshot& t : snap.threads) {
    Unwind u = unwind(WalkContext{snap.memory, snap.code, t.bounds, {}}, t.regs);
    if (!u.trace.verdict.reliable || u.trace.frames.size() != t.truth.frames.size())
      return fail("thread {}: the snapshot does not walk like the live stack ({})", t.tid, u.trace.verdict.detail);
  }
  return snap;
}

enum class Corruption { Random, BitFlip, Zero, SmallDelta, CopyWord, StackPointer, TextPointer, kCount };

inline const char* corruption_name(Corruption c) {
  switch (c) {
    case Corruption::Random:
      return "random";
    case Corruption::BitFlip:
      return "bit-flip";
    case Corruption::Zero:
      return "zero";
    case Corruption::SmallDelta:
      return "small-delta";
    case Corruption::CopyWord:
      return "copy-word";
    case Corruption::StackPointer:
      return "stack-pointer";
    case Corruption::TextPointer:
      return "text-pointer";
    default:
      return "?";
  }
}

struct FaultStats {
  size_t trials = 0, reliable_same = 0, unreliable = 0, unchanged_words = 0;
  std::vector<std::string> false_reliables;  // descriptions; must stay empty
  std::map<std::string, size_t> reasons;
};

inline FaultStats run_fault_trials(Snapshot& snap, size_t trials, uint64_t seed, WalkOptions options = {}) {
  FaultStats st;
  std::mt19937_64 rng(seed);
  if (snap.threads.empty()) return st;
  const CodeImage& text = snap.code.images().front();
  for (size_t trial = 0; trial < trials; ++trial) {
    ThreadSnapshot& t = snap.threads[rng() % snap.threads.size()];
    uint64_t words = (t.copied_high - t.copied_low) / 8;
    int count = 1 + static_cast<int>(rng() % 3);
    std::vector<std::pair<uint64_t, uint64_t>> saved;  // (address, original) to restore afterwards
    std::string what;
    for (int c = 0; c < count; ++c) {
      uint64_t addr = t.copied_low + 8 * (rng() % words);
      uint64_t orig = *snap.memory.read_u64(RemoteAddr(addr));
      auto kind = static_cast<Corruption>(rng() % static_cast<int>(Corruption::kCount));
      uint64_t v = orig;
      switch (kind) {
        case Corruption::Random:
          v = rng();
          break;
        case Corruption::BitFlip:
          v = orig ^ (uint64_t{1} << (rng() % 64));
          break;
        case Corruption::Zero:
          v = 0;
          break;
        case Corruption::SmallDelta:
          v = orig + (static_cast<int64_t>(rng() % 9) - 4) * 8;
          break;
        case Corruption::CopyWord:
          v = *snap.memory.read_u64(RemoteAddr(t.copied_low + 8 * (rng() % words)));
          break;
        case Corruption::StackPointer:
          v = t.copied_low + 8 * (rng() % words);
          break;
        case Corruption::TextPointer:
          v = text.start + rng() % (text.end - text.start);
          break;
        default:
          break;
      }
      saved.emplace_back(addr, orig);
      snap.memory.write_u64(addr, v);
      what += fmt::format(" [{:#x}] {:#x}->{:#x} ({})", addr, orig, v, corruption_name(kind));
      if (v == orig) ++st.unchanged_words;
    }
    Unwind u = unwind(WalkContext{snap.memory, snap.code, t.bounds, options}, t.regs);
    ++st.trials;
    if (u.trace.verdict.reliable) {
      bool same = u.trace.frames.size() == t.truth.frames.size();
      for (size_t i = 0; same && i < u.trace.frames.size(); ++i) same = u.trace.frames[i].pc == t.truth.frames[i].pc;
      if (same) {
        ++st.reliable_same;
      } else {
        // The frames from just before the first difference, both traces (a 1000-deep chain stays short).
        size_t first = 0;
        while (first < u.trace.frames.size() && first < t.truth.frames.size() &&
               u.trace.frames[first].pc == t.truth.frames[first].pc &&
               u.trace.frames[first].sp == t.truth.frames[first].sp)
          ++first;
        auto show = [&](const Trace& tr) {
          std::string out;
          for (size_t i = first > 2 ? first - 2 : 0; i < tr.frames.size() && i < first + 4; ++i) {
            const Frame& f = tr.frames[i];
            out += fmt::format("\n      #{} {:#x} sp={:#x} fp={:#x} {}+{:#x}", i, f.pc, f.sp, f.fp, f.symbol, f.offset);
          }
          return out;
        };
        std::string frames = fmt::format("\n    walked ({} frames):{}\n    true ({} frames):{}", u.trace.frames.size(),
                                         show(u.trace), t.truth.frames.size(), show(t.truth));
        st.false_reliables.push_back(fmt::format("thread {} trial {}:{}{}", t.tid, trial, what, frames));
      }
    } else {
      ++st.unreliable;
      ++st.reasons[std::string(reason_name(u.trace.verdict.reason))];
    }
    for (auto it = saved.rbegin(); it != saved.rend(); ++it) snap.memory.write_u64(it->first, it->second);
  }
  return st;
}

}  // namespace framecert::testing

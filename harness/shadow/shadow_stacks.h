// Shadow call stacks: the ground truth framecert's kernel stack walks are checked against. For every region of
// stack memory (a kernel task stack is one 16 KiB, 16 KiB-aligned region) it keeps the slots of the calls that
// have not returned yet, with the return address each call pushed. It sees only two events, both keyed by the
// stack slot the instruction touched:
//   on_call(S, ra) — a near call stored its return address ra at slot S;
//   on_ret(S)      — a near ret loaded its return address from slot S.
// Nothing here knows about QEMU (harness/shadow/plugin.cpp feeds it), so it is tested on synthetic sequences.
#pragma once

#include <array>
#include <cstdint>
#include <mutex>
#include <unordered_map>
#include <vector>

namespace framecert::shadow {

// Kernel addresses (and so kernel stack slots) are in the upper canonical half.
inline constexpr uint64_t kKernelBase = 0xffff800000000000ull;

struct Entry {
  uint64_t slot = 0;            // where the call stored the return address
  uint64_t return_address = 0;  // what it stored: the call's address plus its length
  bool operator==(const Entry&) const = default;
};

struct Counters {
  uint64_t calls = 0;
  uint64_t rets = 0;
  uint64_t unmatched = 0;  // rets that found no entry at exactly their slot (nor, later, through resync)
  uint64_t dropped = 0;    // entries removed without their ret (abandoned frames, overwritten slots)
  uint64_t resynced = 0;   // unmatched rets whose target named an entry above their slot (see resync)
  bool operator==(const Counters&) const = default;
};

struct Snapshot {
  std::vector<Entry> entries;  // sorted by slot, ascending
  Counters counters;
};

class ShadowStacks {
 public:
  // region_size must be a power of two (>= 16); slots in the same aligned block of that size are one stack.
  explicit ShadowStacks(uint64_t region_size = 16384);
  ShadowStacks(const ShadowStacks&) = delete;
  ShadowStacks& operator=(const ShadowStacks&) = delete;

  // Both are safe to call from any number of threads (QEMU's MTTCG runs one host thread per vCPU).
  //
  // A call storing at S: every entry of the region at or below S belongs to frames that are gone (the stack
  // pointer has come back above them without their rets: longjmp-like exits, a `call` used as a push,
  // a switch to a fresh stack), so they are dropped; then (S, ra) is recorded.
  void on_call(uint64_t slot, uint64_t return_address);
  // A ret loading from S drops every entry below S (abandoned frames) and the entry at S, if any (the one it
  // returns through). Whether the value loaded is still what the call stored is not checked: a return address
  // rewritten in place (ftrace's graph tracer, kretprobes) leaves the entry naming the real caller.
  // Returns whether an entry sat at exactly S (the ret matched its call).
  bool on_ret(uint64_t slot);
  // An unmatched ret from S went to `target` (the next code its vCPU ran). Where an entry above S in the
  // same region has exactly that return address, the ret returned through it: code that moved its own
  // return address down the stack with plain stores before returning (the kernel's error_entry and
  // paranoid_entry save the registers under it) pops the frame its call made, from another slot. That entry
  // and every entry below it are dropped. The nearest such entry is taken (recursion leaves the same return
  // address at several slots). No entry with that address: nothing happens (a ret into a trampoline, or the
  // vCPU took an interrupt first and `target` is entry code).
  void resync(uint64_t slot, uint64_t target);

  Snapshot snapshot() const;  // a consistent view: every stripe is locked while it is taken
  Counters counters() const;  // the same counters without copying the entries

  uint64_t region_size() const { return uint64_t{1} << region_shift_; }

 private:
  // Entries of one region, ordered by decreasing slot: the newest call (the lowest slot, since stacks grow
  // down) is at the back, so both events only ever pop from and push to the back — amortized O(1).
  using Region = std::vector<Entry>;

  // Calls and rets arrive ~10 M times per boot from every vCPU thread. One global mutex would serialize the
  // vCPUs; instead the regions are spread over stripes, each with its own lock, map and counters, so two vCPUs
  // contend only when their stacks hash to the same stripe. The map is node-based, so a Region* stays valid
  // across rehashes: `last` caches the most recent region (consecutive events mostly hit the same stack).
  struct alignas(64) Stripe {
    mutable std::mutex mu;
    std::unordered_map<uint64_t, Region> regions;
    uint64_t last_key = 0;
    Region* last = nullptr;
    Counters counters;
  };
  static constexpr unsigned kStripeBits = 6;  // 64 stripes

  Stripe& stripe_for(uint64_t key) const;
  static Region& region_in(Stripe& s, uint64_t key);

  unsigned region_shift_;
  mutable std::array<Stripe, size_t{1} << kStripeBits> stripes_;
};

}  // namespace framecert::shadow

// Admits a memory callback only while the instruction it was registered for is executing on that vCPU.
//
// Why: QEMU 7.2 keeps a per-vCPU pointer to the memory callbacks of the last instrumented instruction and
// runs them for memory accesses made from helpers (atomic read-modify-writes such as `lock cmpxchg`, exception
// and interrupt delivery, iret) until another instrumented instruction replaces it. A call or ret ends its
// translation block with a jump that skips the pointer's reset, so without this gate `spin_lock` right after
// a call reports the lock word as that call's push (a fake shadow entry at the lock's address), and after a
// ret as its pop (dropping live entries when the lock sits on the stack). Measured on the framecert guest:
// about 3% of all rets and some calls were such stale reports before the gate.
//
// How: an execution callback at the start of every call and ret opens the vCPU's gate with a token (the kind
// and the instruction's own userdata); the instruction's own push or pop, which follows before anything else
// can run on that vCPU, is admitted and closes it; every later report carrying that token is refused.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>

namespace framecert::shadow {

class AccessGate {
 public:
  enum class Kind : uint8_t { kNone, kCall, kRet };
  static constexpr unsigned kMaxVcpus = 1024;  // QEMU's x86 limit; a vCPU beyond it is never admitted

  AccessGate() : vcpus_(new Vcpu[kMaxVcpus]) {}

  // The instruction begins (its execution callback). Only the thread running `vcpu` calls open and admit
  // for it, so the token needs no synchronization.
  void open(unsigned vcpu, Kind kind, uint64_t token) {
    if (vcpu >= kMaxVcpus) return;
    vcpus_[vcpu].kind = kind;
    vcpus_[vcpu].token = token;
  }

  // The instruction's memory callback, already filtered to the access direction it wants.
  bool admit(unsigned vcpu, Kind kind, uint64_t token) {
    if (vcpu >= kMaxVcpus) return false;
    Vcpu& v = vcpus_[vcpu];
    if (v.kind == kind && v.token == token) {
      v.kind = Kind::kNone;
      return true;
    }
    // Single writer per counter: a plain load and store, no locked instruction; readers may lag a little.
    v.refused.store(v.refused.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    return false;
  }

  // Stale reports refused so far, all vCPUs.
  uint64_t refused() const {
    uint64_t total = 0;
    for (unsigned i = 0; i < kMaxVcpus; ++i) total += vcpus_[i].refused.load(std::memory_order_relaxed);
    return total;
  }

 private:
  struct alignas(64) Vcpu {  // one cache line each: vCPU threads never share a line
    uint64_t token = 0;
    Kind kind = Kind::kNone;
    std::atomic<uint64_t> refused{0};
  };
  std::unique_ptr<Vcpu[]> vcpus_;
};

}  // namespace framecert::shadow

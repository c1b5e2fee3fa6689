// AccessGate: a call's or ret's memory report is admitted once, while that instruction executes on that vCPU;
// stale replays are refused and counted.
#include "harness/shadow/access_gate.h"

#include <gtest/gtest.h>

#include <thread>
#include <vector>

namespace framecert::shadow {
namespace {

using Kind = AccessGate::Kind;

TEST(AccessGate, AdmitsTheInstructionsOwnAccessOnce) {
  AccessGate gate;
  EXPECT_FALSE(gate.admit(0, Kind::kCall, 0x1005));  // nothing executing yet
  gate.open(0, Kind::kCall, 0x1005);
  EXPECT_TRUE(gate.admit(0, Kind::kCall, 0x1005));   // the push
  EXPECT_FALSE(gate.admit(0, Kind::kCall, 0x1005));  // a `lock cmpxchg` in the callee, replayed to the call
  gate.open(0, Kind::kRet, 0x2000);
  EXPECT_FALSE(gate.admit(0, Kind::kCall, 0x1005));  // an older call's callbacks while a ret runs
  EXPECT_TRUE(gate.admit(0, Kind::kRet, 0x2000));
  EXPECT_FALSE(gate.admit(0, Kind::kRet, 0x2000));
  EXPECT_EQ(gate.refused(), 4u);
}

TEST(AccessGate, KindAndTokenMustBothMatch) {
  AccessGate gate;
  // `call foo; ret`: the call's return address is the ret's own address, the same token value.
  gate.open(1, Kind::kRet, 0x1005);
  EXPECT_FALSE(gate.admit(1, Kind::kCall, 0x1005));
  EXPECT_FALSE(gate.admit(1, Kind::kRet, 0x1006));
  EXPECT_TRUE(gate.admit(1, Kind::kRet, 0x1005));
}

TEST(AccessGate, VcpusAreIndependent) {
  AccessGate gate;
  gate.open(0, Kind::kCall, 0x1005);
  gate.open(1, Kind::kCall, 0x3005);
  EXPECT_FALSE(gate.admit(1, Kind::kCall, 0x1005));
  EXPECT_TRUE(gate.admit(0, Kind::kCall, 0x1005));
  EXPECT_TRUE(gate.admit(1, Kind::kCall, 0x3005));
  gate.open(AccessGate::kMaxVcpus, Kind::kCall, 0x1005);  // out of range: ignored, never admitted
  EXPECT_FALSE(gate.admit(AccessGate::kMaxVcpus, Kind::kCall, 0x1005));
}

TEST(AccessGate, ConcurrentVcpusAndAReader) {
  constexpr unsigned kThreads = 4, kRounds = 100000;
  AccessGate gate;
  std::vector<std::thread> vcpus;
  for (unsigned t = 0; t < kThreads; ++t) {
    vcpus.emplace_back([&gate, t] {
      for (unsigned i = 0; i < kRounds; ++i) {
        gate.open(t, Kind::kCall, i + 1);
        EXPECT_TRUE(gate.admit(t, Kind::kCall, i + 1));
        EXPECT_FALSE(gate.admit(t, Kind::kCall, i + 1));
      }
    });
  }
  uint64_t last = 0;
  for (unsigned i = 0; i < 100; ++i) {
    const uint64_t now = gate.refused();
    EXPECT_GE(now, last);
    last = now;
  }
  for (auto& v : vcpus) v.join();
  EXPECT_EQ(gate.refused(), uint64_t{kThreads} * kRounds);
}

}  // namespace
}  // namespace framecert::shadow

// Walk every thread of a process with 100 threads x 50 frames (tests/programs/fc_deep_threads): framecert
// (both walkers + judge) and libunwind-ptrace side by side in one freeze, time per frame.
// Usage: walk_bench [THREADS] [DEPTH] [ROUNDS]
#include <cstdio>
#include <cstdlib>

#include "tests/unwinder/process_util.h"
#include "unwinder/process_walk.h"

int main(int argc, char** argv) {
  using namespace framecert;
  std::string threads = argc > 1 ? argv[1] : "100", depth = argc > 2 ? argv[2] : "50";
  int rounds = argc > 3 ? std::atoi(argv[3]) : 5;
  testing::Child child(std::string(FRAMECERT_PROGRAMS_DIR) + "/fc_deep_threads", {threads, depth});
  if (!child.ready()) return 2;
  std::shared_ptr<MetadataCache> cache;
  MetadataProvider provider = testing::validator_metadata(cache);
  ProcessWalkOptions o;
  o.oracle_libunwind = true;
  walk_process(child.pid(), provider, o);  // warm: metadata computed, caches filled
  std::printf("%-8s %-8s %-6s %-12s %-10s %-12s %-12s %-10s %-12s %-10s\n", "threads", "depth", "round", "fc frames",
              "fc ms", "fc us/frame", "lu frames", "lu ms", "lu us/frame", "frozen ms");
  for (int r = 0; r < rounds; ++r) {
    auto rep = walk_process(child.pid(), provider, o);
    if (!rep) {
      std::fprintf(stderr, "%s\n", rep.error().c_str());
      return 2;
    }
    std::printf("%-8zu %-8s %-6d %-12zu %-10.2f %-12.3f %-12zu %-10.2f %-12.3f %-10.2f\n", rep->threads.size(),
                depth.c_str(), r, rep->frames, rep->walk_ms, 1000 * rep->walk_ms / rep->frames, rep->oracle_frames,
                rep->oracle_ms, 1000 * rep->oracle_ms / std::max<size_t>(1, rep->oracle_frames), rep->total_frozen_ms);
  }
  return 0;
}

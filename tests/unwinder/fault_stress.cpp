// The long fault-injection run: `fault_stress [TRIALS] [SEED] [frame-sizes|no-frame-sizes] [PROGRAM]`
// (default 10000 trials, fs_threads; PROGRAM is one of tests/programs, e.g. the one-thread fc_frame_locals).
// Freezes a fresh PROGRAM, snapshots its stacks, and walks TRIALS corrupted copies. Exit 1 on any false
// reliable. `no-frame-sizes` turns the exact frame-size check off, as for code whose frame sizes cannot be
// proven (alloca, switch tables): what is left then is the skipped-frame scans.
#include <cstdio>
#include <cstdlib>

#include "tests/unwinder/fault_injection.h"
#include "tests/unwinder/process_util.h"

int main(int argc, char** argv) {
  using namespace framecert::testing;
  size_t trials = argc > 1 ? std::strtoull(argv[1], nullptr, 10) : 10000;
  uint64_t seed = argc > 2 ? std::strtoull(argv[2], nullptr, 10) : 1;
  const std::string program = argc > 4 ? argv[4] : "fs_threads";
  const bool fs_threads = program == "fs_threads";
  Child child(std::string(FRAMECERT_PROGRAMS_DIR) + "/" + program);
  if (!child.ready() || !(fs_threads ? child.wait_parked(5, 6) : child.wait_parked(1, 1))) {
    std::fprintf(stderr, "%s did not start\n", program.c_str());
    return 2;
  }
  std::shared_ptr<framecert::MetadataCache> cache;
  auto snap = snapshot_process(child.pid(), validator_metadata(cache));
  if (!snap) {
    std::fprintf(stderr, "%s\n", snap.error().c_str());
    return 2;
  }
  auto t0 = std::chrono::steady_clock::now();
  framecert::WalkOptions options;
  options.check_frame_sizes = !(argc > 3 && std::string(argv[3]) == "no-frame-sizes");
  FaultStats st = run_fault_trials(*snap, trials, seed, options);
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("trials %zu (%zu threads, seed %llu%s) in %.2f s\n", st.trials, snap->threads.size(),
              static_cast<unsigned long long>(seed), options.check_frame_sizes ? "" : ", no frame sizes", s);
  std::printf("  reliable and equal to the true trace: %zu\n", st.reliable_same);
  std::printf("  unreliable: %zu\n", st.unreliable);
  for (const auto& [reason, n] : st.reasons) std::printf("    %-32s %zu\n", reason.c_str(), n);
  std::printf("  FALSE RELIABLE: %zu\n", st.false_reliables.size());
  for (const auto& f : st.false_reliables) std::printf("    %s\n", f.c_str());
  return st.false_reliables.empty() ? 0 : 1;
}

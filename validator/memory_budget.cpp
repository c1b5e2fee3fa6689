#include "validator/memory_budget.h"

#include <sys/resource.h>

#include <algorithm>
#include <fstream>
#include <string>

namespace framecert {

namespace {

// A field of a /proc file in kB ("MemAvailable:   123456 kB"), as bytes; 0 when absent.
uint64_t proc_kb(const char* path, const std::string& field) {
  std::ifstream in(path);
  std::string name;
  uint64_t kb = 0;
  while (in >> name) {
    if (name == field + ":" && in >> kb) return kb * 1024;
    in.ignore(4096, '\n');
  }
  return 0;
}

// What is left under a resource limit, beyond what the process uses now (the /proc/self/status field
// `in_use`, read only when there is a limit); 0 when unlimited.
uint64_t left_under(int resource, const char* in_use) {
  struct rlimit r;
  if (getrlimit(resource, &r) != 0 || r.rlim_cur == RLIM_INFINITY) return 0;
  const uint64_t used = proc_kb("/proc/self/status", in_use);
  return r.rlim_cur > used ? r.rlim_cur - used : 1;
}

// The least of what the resource limits leave (0: no limit), and of `system` when it is known (non-zero).
uint64_t least_left(uint64_t system) {
  uint64_t best = system;
  for (uint64_t left : {left_under(RLIMIT_AS, "VmSize"), left_under(RLIMIT_DATA, "VmData")})
    if (left != 0) best = best == 0 ? left : std::min(best, left);
  return best;
}

}  // namespace

uint64_t available_memory() { return least_left(proc_kb("/proc/meminfo", "MemAvailable")); }

Result<void> fits_in_this_process(uint64_t instructions) {
  const bool small = instructions <= kAlwaysAffordable / kBytesPerInstruction;
  return fits_in_memory(instructions, small ? least_left(0) : available_memory());
}

Result<void> fits_in_memory(uint64_t instructions, uint64_t available) {
  const uint64_t need = instructions * kBytesPerInstruction;
  if (available == 0 || need <= available) return {};
  constexpr double kMiB = 1024.0 * 1024.0;
  return fail(
      "{} instructions: checking them needs about {:.0f} MiB ({} bytes each), more than the {:.0f} MiB "
      "this process can use",
      instructions, static_cast<double>(need) / kMiB, kBytesPerInstruction, static_cast<double>(available) / kMiB);
}

}  // namespace framecert

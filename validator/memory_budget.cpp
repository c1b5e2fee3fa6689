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

// What is left under a resource limit, given what the process uses now; 0 when unlimited.
uint64_t left_under(int resource, uint64_t in_use) {
  struct rlimit r;
  if (getrlimit(resource, &r) != 0 || r.rlim_cur == RLIM_INFINITY) return 0;
  return r.rlim_cur > in_use ? r.rlim_cur - in_use : 1;
}

}  // namespace

uint64_t available_memory() {
  uint64_t best = proc_kb("/proc/meminfo", "MemAvailable");
  for (uint64_t left : {left_under(RLIMIT_AS, proc_kb("/proc/self/status", "VmSize")),
                        left_under(RLIMIT_DATA, proc_kb("/proc/self/status", "VmData"))})
    if (left != 0) best = best == 0 ? left : std::min(best, left);
  return best;
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

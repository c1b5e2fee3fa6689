#include "harness/shadow/protocol.h"

#include <cinttypes>
#include <cstdio>

namespace framecert::shadow {

std::string format_snapshot(const Snapshot& snap, bool with_entries, uint64_t stale) {
  std::string out = "framecert-shadow 1\n";
  char line[96];
  if (with_entries) {
    out.reserve(out.size() + snap.entries.size() * 42 + 128);
    for (const Entry& e : snap.entries) {
      // %#x would print a zero without its 0x; the prefix is spelled out so every value parses the same way.
      const int n = std::snprintf(line, sizeof line, "e 0x%" PRIx64 " 0x%" PRIx64 "\n", e.slot, e.return_address);
      out.append(line, static_cast<size_t>(n));
    }
  }
  const std::pair<const char*, uint64_t> stats[] = {
      {"calls", snap.counters.calls},     {"rets", snap.counters.rets},         {"unmatched", snap.counters.unmatched},
      {"dropped", snap.counters.dropped}, {"resynced", snap.counters.resynced}, {"stale", stale}};
  for (const auto& [name, value] : stats) {
    const int n = std::snprintf(line, sizeof line, "s %s %" PRIu64 "\n", name, value);
    out.append(line, static_cast<size_t>(n));
  }
  out += "end\n";
  return out;
}

std::string respond(const ShadowStacks& stacks, std::string_view request, uint64_t stale) {
  const auto blank = [](char c) { return c == ' ' || c == '\t' || c == '\r'; };
  while (!request.empty() && blank(request.front())) request.remove_prefix(1);
  while (!request.empty() && blank(request.back())) request.remove_suffix(1);
  if (request == "snapshot") return format_snapshot(stacks.snapshot(), true, stale);
  if (request == "stats") {
    Snapshot counts_only;
    counts_only.counters = stacks.counters();
    return format_snapshot(counts_only, false, stale);
  }
  return "error unknown command\n";
}

}  // namespace framecert::shadow

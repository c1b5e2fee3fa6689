#include "harness/guest/ftrace_trampolines.h"

#include <set>

#include <fmt/format.h>

namespace framecert::guest {

namespace {

// More ops than any kernel registers: a longer list is taken for a loop in a damaged or changing list.
constexpr int kMaxOps = 4096;

bool same_bytes(Memory& memory, uint64_t a, uint64_t b, uint64_t len) {
  std::vector<uint8_t> x(len), y(len);
  return memory.read_fully(RemoteAddr(a), x.data(), len) && memory.read_fully(RemoteAddr(b), y.data(), len) && x == y;
}

}  // namespace

FtraceTrampolines find_ftrace_trampolines(Memory& memory, const FtraceOpsLayout& layout, const FtraceOpsList& list,
                                          const std::vector<TrampolineOriginal>& originals) {
  FtraceTrampolines out;
  if (!layout.present || list.head_variable == 0) return out;
  auto op = memory.read_u64(RemoteAddr(list.head_variable));
  std::set<uint64_t> seen;
  for (int n = 0; op && *op != 0 && *op != list.end; ++n, op = memory.read_u64(RemoteAddr(*op + layout.next))) {
    if (n == kMaxOps || !seen.insert(*op).second) {
      out.warnings.push_back(fmt::format("ftrace ops list loops at {:#x}: later trampolines unknown", *op));
      return out;
    }
    auto tramp = memory.read_u64(RemoteAddr(*op + layout.trampoline));
    uint64_t size = 0;
    const bool size_read =
        memory.read_fully(RemoteAddr(*op + layout.trampoline_size), &size, layout.trampoline_size_bytes).has_value();
    if (!tramp || !size_read) {
      out.warnings.push_back(fmt::format("ftrace ops {:#x} unreadable: its trampoline (if any) unknown", *op));
      continue;
    }
    if (*tramp == 0 || size == 0) continue;  // the ops runs from ftrace_caller itself
    const TrampolineOriginal* match = nullptr;
    int matches = 0;
    for (const TrampolineOriginal& o : originals)
      if (o.start && o.end - o.start <= size && o.unpatched_end > o.start && o.unpatched_end <= o.end &&
          same_bytes(memory, *tramp, o.start, o.unpatched_end - o.start)) {
        match = &o;
        ++matches;
      }
    if (matches != 1) {
      out.warnings.push_back(
          fmt::format("ftrace ops {:#x}: trampoline at {:#x} ({} bytes) is a copy of {} known original: left unknown",
                      *op, *tramp, size, matches ? "more than one" : "no"));
      continue;
    }
    out.found.push_back(FtraceTrampoline{*tramp, *op, match});
  }
  if (!op) out.warnings.push_back(fmt::format("ftrace ops list unreadable: {}", op.error().describe()));
  return out;
}

CodeImage trampoline_image(const FtraceTrampoline& t, std::shared_ptr<const FrameTable> metadata) {
  const TrampolineOriginal& o = *t.original;
  const uint64_t size = o.end - o.start;
  auto symbols = std::make_shared<SymbolTable>(std::vector<Symbol>{Symbol{o.start, size, "ftrace_trampoline"}});
  CodeImage image{"[ftrace trampoline]", t.start,           t.start + size, t.start - o.start,
                  std::move(metadata),   std::move(symbols)};
  image.copied = true;
  return image;
}

}  // namespace framecert::guest

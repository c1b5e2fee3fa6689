// `offline_capture OUTDIR`: (re)generates the offline golden cases of fs_threads (offline_case.h). Starts a
// fresh fs_threads, freezes it, and writes OUTDIR/fs_threads/{fs_threads.elf, fs_threads.fcmeta} and one
// case per thread (named after the thread's start function), plus `t1_top-forged-skip`: t1's stack with
// t1_leaf's saved rbp redirected past t1_mid to t1_top's frame and t1_mid's record erased (the coordinated
// forgery only exact frame sizes catch). Run by tests/unwinder/offline/generate.sh.
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "tests/unwinder/offline_case.h"
#include "tests/unwinder/process_util.h"
#include "unwinder/memory_ptrace.h"
#include "unwinder/process_walk.h"
#include "unwinder/unwind.h"

namespace fs = std::filesystem;
using namespace framecert;
using namespace framecert::testing;

namespace {

struct Captured {
  std::string name;
  Regs regs;
  StackBounds bounds;
  uint64_t low = 0;
  std::vector<uint8_t> stack;
  Trace trace;
};

bool write_file(const fs::path& p, const void* data, size_t n) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(static_cast<const char*>(data), static_cast<std::streamsize>(n));
  return static_cast<bool>(out);
}

// Walks the saved copy exactly as the replay test will, and writes the case.
bool write_case(const fs::path& dir, const Captured& c, const CodeMap& code, FakeMemory& text,
                const std::string& comment) {
  FakeMemory mem = text;
  mem.map_bytes(c.low, c.stack.data(), c.stack.size());
  Unwind u = unwind(WalkContext{mem, code, c.bounds, {}}, c.regs);
  fs::create_directories(dir);
  std::string txt = format_offline_case(c.regs, c.bounds, c.low, u.trace, comment);
  std::printf("%s: %s\n", dir.filename().c_str(),
              u.trace.verdict.reliable ? "reliable" : std::string(reason_name(u.trace.verdict.reason)).c_str());
  return write_file(dir / "case.txt", txt.data(), txt.size()) &&
         write_file(dir / "stack.bin", c.stack.data(), c.stack.size());
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: offline_capture OUTDIR\n");
    return 2;
  }
  const std::string program = std::string(FRAMECERT_PROGRAMS_DIR) + "/fs_threads";
  const fs::path out = fs::path(argv[1]) / "fs_threads";
  Child child(program);
  if (!child.ready() || !child.wait_parked(5, 6)) {
    std::fprintf(stderr, "fs_threads did not start\n");
    return 1;
  }
  std::shared_ptr<MetadataCache> cache;
  MetadataProvider provider = validator_metadata(cache);
  std::shared_ptr<const FrameTable> table;
  std::vector<Captured> threads;
  ProcessWalkOptions o;
  o.while_frozen = [&](const FrozenProcess&, const CodeMap& code, const ProcessReport& report) {
    for (const CodeImage& img : code.images())
      if (img.path == fs::canonical(program).string()) table = img.metadata;
    ProcessMemory mem(child.pid());
    for (const ThreadReport& t : report.threads) {
      if (!t.regs || !t.bounds || t.unwind.trace.frames.empty()) continue;
      Captured c;
      const Trace& tr = t.unwind.trace;
      c.name = tr.frames.size() >= 2 ? tr.frames[tr.frames.size() - 2].symbol : tr.frames[0].symbol;
      c.regs = *t.regs;
      c.bounds = *t.bounds;
      uint64_t top = t.regs->rsp;
      for (const Frame& f : tr.frames) top = std::max({top, f.sp, f.fp});
      c.low = t.regs->rsp & ~uint64_t{7};
      uint64_t high = std::min(t.bounds->high, top + 64);
      c.stack.resize(high - c.low);
      if (mem.read(RemoteAddr(c.low), c.stack.data(), c.stack.size()) != c.stack.size()) continue;
      c.trace = tr;
      threads.push_back(std::move(c));
    }
  };
  auto r = walk_process(child.pid(), provider, o);
  if (!r || !table) {
    std::fprintf(stderr, "walk failed: %s\n", r ? "no metadata for fs_threads" : r.error().c_str());
    return 1;
  }
  fs::remove_all(out);
  fs::create_directories(out);
  fs::copy_file(program, out / "fs_threads.elf");
  if (auto w = write_frame_table(*table, (out / "fs_threads.fcmeta").string()); !w) {
    std::fprintf(stderr, "%s\n", w.error().c_str());
    return 1;
  }
  FakeMemory text;
  auto code = offline_code_map((out / "fs_threads.elf").string(), table, text);
  if (!code) {
    std::fprintf(stderr, "%s\n", code.error().c_str());
    return 1;
  }
  for (const Captured& c : threads) {
    if (c.name == "rec" || c.name == "t4_top") continue;  // the 1000-deep chain: 32 KiB for nothing new
    if (!write_case(out / c.name, c, *code, text, "fs_threads thread " + c.name + ", captured live")) return 1;
    if (c.name != "t1_top") continue;
    // fs_pause, park, t1_leaf, t1_mid, t1_top, fs_thread_entry: frame k's fp is the record holding frame
    // k+1's return address.
    if (c.trace.frames.size() != 6) return 1;
    Captured f = c;
    auto put = [&](uint64_t addr, uint64_t v) { std::memcpy(f.stack.data() + (addr - f.low), &v, 8); };
    put(c.trace.frames[2].fp, c.trace.frames[4].fp);  // t1_leaf's saved rbp -> t1_top's frame
    put(c.trace.frames[3].fp, 0);                     // t1_mid's record erased
    put(c.trace.frames[3].fp + 8, 0);
    if (!write_case(out / "t1_top-forged-skip", f, *code, text,
                    "t1's stack, t1_leaf's saved rbp redirected to t1_top's frame, t1_mid's record zeroed"))
      return 1;
  }
  return 0;
}

// Offline golden cases (after libunwindstack's tests/files/offline): a frozen thread saved as files — its
// registers, stack bounds, the stack bytes, and the trace and verdict expected — next to the object it ran
// (a small static program, kept with its symbols) and that object's validator metadata. Replaying a case
// needs no process, no ptrace and no validator: tests/unwinder/offline_test.cpp walks every case.
//
// Layout: tests/unwinder/offline/<program>/{<program>.elf, <program>.fcmeta, <case>/case.txt, <case>/stack.bin}
// case.txt, one item per line ('#' starts a comment):
//   regs RIP RSP RBP SYSCALL_NR        (hex, hex, hex, decimal; -1 when not in a system call)
//   bounds LOW HIGH                    the thread's stack bounds
//   stack ADDRESS                      where stack.bin's first byte was
//   verdict reliable | verdict unreliable REASON FRAME
//   frame PC SYMBOL OFFSET TRUST       the expected frames, innermost first (SYMBOL '?' when unknown)
// Regenerate with tests/unwinder/offline/generate.sh (after checking the new expectations by hand).
#pragma once

#include <fstream>
#include <iterator>
#include <sstream>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "unwinder/code_map.h"
#include "unwinder/elf_image.h"
#include "unwinder/memory_fake.h"
#include "unwinder/regs.h"
#include "unwinder/stack_bounds.h"
#include "unwinder/trace.h"

namespace framecert::testing {

struct OfflineFrame {
  uint64_t pc = 0;
  std::string symbol;
  uint64_t offset = 0;
  std::string trust;
};

struct OfflineCase {
  Regs regs;
  StackBounds bounds;
  uint64_t stack_address = 0;
  std::vector<uint8_t> stack;
  bool reliable = false;
  std::string reason = "none";
  int reason_frame = -1;
  std::vector<OfflineFrame> frames;
};

inline Result<std::vector<uint8_t>> read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return fail("cannot open {}", path);
  return std::vector<uint8_t>((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

inline Result<OfflineCase> read_offline_case(const std::string& dir) {
  std::ifstream in(dir + "/case.txt");
  if (!in) return fail("cannot open {}/case.txt", dir);
  OfflineCase c;
  std::string line;
  int n = 0;
  while (std::getline(in, line)) {
    ++n;
    if (auto h = line.find('#'); h != std::string::npos) line.resize(h);
    std::istringstream s(line);
    std::string key;
    if (!(s >> key)) continue;
    s >> std::hex;
    bool ok = true;
    if (key == "regs") {
      ok = static_cast<bool>(s >> c.regs.rip >> c.regs.rsp >> c.regs.rbp >> std::dec >> c.regs.syscall_nr);
    } else if (key == "bounds") {
      ok = static_cast<bool>(s >> c.bounds.low >> c.bounds.high);
    } else if (key == "stack") {
      ok = static_cast<bool>(s >> c.stack_address);
    } else if (key == "verdict") {
      std::string what;
      ok = static_cast<bool>(s >> what);
      c.reliable = what == "reliable";
      if (ok && !c.reliable) ok = static_cast<bool>(s >> c.reason >> std::dec >> c.reason_frame);
    } else if (key == "frame") {
      OfflineFrame f;
      ok = static_cast<bool>(s >> f.pc >> f.symbol >> f.offset >> f.trust);
      if (f.symbol == "?") f.symbol.clear();
      c.frames.push_back(f);
    } else {
      ok = false;
    }
    if (!ok) return fail("{}/case.txt:{}: cannot parse '{}'", dir, n, line);
  }
  auto bytes = read_bytes(dir + "/stack.bin");
  if (!bytes) return tl::unexpected(bytes.error());
  c.stack = std::move(*bytes);
  return c;
}

inline std::string format_offline_case(const Regs& r, const StackBounds& b, uint64_t stack_address, const Trace& t,
                                       const std::string& comment) {
  std::string out = "# " + comment + "\n";
  out += fmt::format("regs {:#x} {:#x} {:#x} {}\n", r.rip, r.rsp, r.rbp, r.syscall_nr);
  out += fmt::format("bounds {:#x} {:#x}\n", b.low, b.high);
  out += fmt::format("stack {:#x}\n", stack_address);
  if (t.verdict.reliable) {
    out += "verdict reliable\n";
  } else {
    out += fmt::format("verdict unreliable {} {}  # {}\n", reason_name(t.verdict.reason), t.verdict.frame,
                       t.verdict.detail);
  }
  for (const Frame& f : t.frames)
    out += fmt::format("frame {:#x} {} {:#x} {}\n", f.pc, f.symbol.empty() ? "?" : f.symbol, f.offset,
                       trust_name(f.trust));
  return out;
}

// The code of a static, non-PIE program as the walker sees it: its executable segments at their link-time
// addresses (bias 0), its symbols and its metadata.
inline Result<CodeMap> offline_code_map(const std::string& elf_path, std::shared_ptr<const FrameTable> metadata,
                                        FakeMemory& memory) {
  auto img = read_elf_image(elf_path);
  if (!img) return tl::unexpected(img.error());
  auto file = read_bytes(elf_path);
  if (!file) return tl::unexpected(file.error());
  CodeMap code;
  auto symbols = std::make_shared<SymbolTable>(img->symbols);
  for (const LoadSegment& seg : img->segments) {
    if (!seg.executable) continue;
    if (seg.offset + seg.filesz > file->size()) return fail("{}: segment past the end of the file", elf_path);
    memory.map_bytes(seg.vaddr, file->data() + seg.offset, seg.filesz);
    code.add(CodeImage{img->path, seg.vaddr, seg.vaddr + seg.filesz, 0, metadata, symbols, {}});
  }
  return code;
}

}  // namespace framecert::testing

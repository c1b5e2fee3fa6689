// TEMPORARY (issue 16): compares the validator's recorded call-site depths with unwinder/frame_depth's
// analysis of the linked code, before frame_depth is deleted. Usage:
//   depth_compare IMAGE...                       (linked images: validated here)
//   depth_compare --placed METADATA IMAGE        (metadata already at IMAGE's addresses, e.g. vmlinux)
#include <cstdio>
#include <string>

#include <elf.h>

#include "unwinder/frame_depth.h"
#include "unwinder/frame_table.h"
#include "unwinder/memory_fake.h"
#include "validator/elf_file.h"
#include "validator/link_addresses.h"
#include "validator/validator.h"

using namespace framecert;

struct Counts {
  size_t agree = 0, checker_unknown = 0, disagree = 0, checker_only = 0, fd_gave_up_calls = 0, no_site = 0;
  void add(const Counts& o) {
    agree += o.agree; checker_unknown += o.checker_unknown; disagree += o.disagree; checker_only += o.checker_only;
    fd_gave_up_calls += o.fd_gave_up_calls; no_site += o.no_site;
  }
};

Counts compare(const FrameTable& t, const std::string& image_path, bool verbose) {
  Counts c;
  auto elf = ElfFile::open(image_path);
  if (!elf) { std::fprintf(stderr, "%s\n", elf.error().c_str()); return c; }
  FakeMemory mem;
  for (const ElfSection& s : (*elf)->sections())
    if ((s.flags & SHF_EXECINSTR) && !s.bytes.empty()) mem.map_bytes(s.address, s.bytes.data(), s.bytes.size());
  constexpr int32_t kU = INT32_MIN;
  for (const FunctionEntry& f : t.functions) {
    if (f.has(metadata::kFuncCold) || f.size == 0) continue;
    const FrameSection& sec = t.sections[f.section];
    const uint64_t start = sec.address + f.offset;
    FunctionDepths fd = analyse_function_depths(mem, start, f.size);
    for (const CallSite& cs : sec.calls) {
      if (cs.return_offset <= f.offset || cs.return_offset > f.offset + f.size) continue;
      const uint64_t ret = sec.address + cs.return_offset;
      const bool ck_sp = cs.has(metadata::kCallSpDepth), ck_bp = cs.has(metadata::kCallBpDepth);
      auto it = fd.ok ? fd.calls.find(ret) : fd.calls.end();
      if (!fd.ok || it == fd.calls.end()) {
        if (!fd.ok) ++c.fd_gave_up_calls;
        if (ck_sp || ck_bp) ++c.checker_only;
        continue;
      }
      const CallDepth& d = it->second;
      bool dis = false, unk = false;
      if (d.sp_off != kU) { if (!ck_sp) unk = true; else if (cs.sp_depth != d.sp_off) dis = true; }
      if (d.bp_off != kU) { if (!ck_bp) unk = true; else if (cs.bp_depth != d.bp_off) dis = true; }
      // The checker knowing a component frame_depth does not is allowed (reported as checker_only).
      if ((d.sp_off == kU && ck_sp) || (d.bp_off == kU && ck_bp)) ++c.checker_only;
      if (dis) {
        ++c.disagree;
        std::printf("DISAGREE %s %s+%#lx ret=%#lx fd sp=%d bp=%d checker sp=%s%d bp=%s%d\n", image_path.c_str(),
                    f.name.c_str(), static_cast<unsigned long>(ret - start), static_cast<unsigned long>(ret), d.sp_off,
                    d.bp_off, ck_sp ? "" : "?", cs.sp_depth, ck_bp ? "" : "?", cs.bp_depth);
      } else if (unk) {
        ++c.checker_unknown;
        if (verbose) std::printf("UNKNOWN %s %s ret=%#lx fd sp=%d bp=%d\n", image_path.c_str(), f.name.c_str(),
                                 static_cast<unsigned long>(ret), d.sp_off, d.bp_off);
      } else {
        ++c.agree;
      }
    }
    for (const auto& [ret, d] : fd.ok ? fd.calls : std::map<uint64_t, CallDepth>{})
      if (!t.call_site_at_address(ret)) ++c.no_site;
  }
  return c;
}

void print(const char* what, const Counts& c) {
  std::printf("%s: agree=%zu checker-unknown=%zu disagree=%zu | checker-only=%zu calls-in-fd-gave-up=%zu fd-call-without-site=%zu\n",
              what, c.agree, c.checker_unknown, c.disagree, c.checker_only, c.fd_gave_up_calls, c.no_site);
}

int main(int argc, char** argv) {
  const bool verbose = std::getenv("VERBOSE") != nullptr;
  if (argc == 4 && std::string(argv[1]) == "--placed") {
    auto t = read_frame_table(argv[2]);
    if (!t) { std::fprintf(stderr, "%s\n", t.error().c_str()); return 2; }
    print(argv[3], compare(*t, argv[3], verbose));
    return 0;
  }
  if (argc == 4 && std::string(argv[1]) == "--link") {  // --link vmlinux.o vmlinux
    auto r = check_object(argv[2], CheckOptions{});
    if (!r) { std::fprintf(stderr, "%s\n", r.error().c_str()); return 2; }
    auto placed = place_at_link_addresses(r->metadata, argv[2], argv[3], nullptr);
    if (!placed) { std::fprintf(stderr, "%s\n", placed.error().c_str()); return 2; }
    print(argv[3], compare(*placed, argv[3], verbose));
    return 0;
  }
  Counts total;
  for (int i = 1; i < argc; ++i) {
    auto r = check_object(argv[i], CheckOptions{});
    if (!r || !r->metadata.linked) { std::fprintf(stderr, "skip %s\n", argv[i]); continue; }
    Counts c = compare(r->metadata, argv[i], verbose);
    if (verbose) print(argv[i], c);
    total.add(c);
  }
  print("TOTAL", total);
  return 0;
}

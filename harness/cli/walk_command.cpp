// `framecert walk --pid PID [--json] [--metadata FILE]... [--oracle libunwind] [--max-depth N]`
// (`framecert walk --vmcore FILE ...`: a kernel dump, harness/cli/vmcore_walk.h)
// Freezes every thread of a live process, walks each by frame pointers with the validator's metadata, and
// detaches, leaving the process running. Exit: 0 every thread reliable, 1 some thread unreliable, 2 the
// process could not be walked, 3 an independent walker disagrees with a trace called reliable (a suspected
// false reliable — printed loudly).
#include <unistd.h>

#include <cstdio>
#include <optional>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "harness/cli/commands.h"
#include "harness/cli/metadata_producer.h"
#include "harness/cli/trace_json.h"
#include "harness/cli/vmcore_walk.h"
#include "unwinder/metadata_cache.h"
#include "unwinder/process_walk.h"
#include "validator/validator.h"

namespace framecert::cli {

namespace {

// The report's schema and version (docs/schemas/walk.schema.json; docs/design.md, "Command-line contracts").
constexpr const char* kWalkSchema = "framecert-walk/1";

struct WalkArgs {
  int pid = 0;
  VmcoreWalkArgs vmcore;
  std::string frames = "4";
  bool json = false;
  std::vector<std::string> metadata;
  std::string oracle;
  std::string cache_dir;
  size_t max_depth = 4096;
  bool no_call_target_check = false;
};

nlohmann::json report_json(const ProcessReport& r) {
  nlohmann::json threads = nlohmann::json::array();
  for (const ThreadReport& t : r.threads) {
    nlohmann::json j = {{"tid", t.tid}, {"name", t.name}};
    add_unwind_json(j, t.unwind);
    if (t.oracle_check) {
      nlohmann::json pcs = nlohmann::json::array();
      for (uint64_t pc : t.oracle->pcs) pcs.push_back(hex(pc));
      j["oracle"] = {{"name", "libunwind"},
                     {"agrees", t.oracle_check->agree},
                     {"detail", t.oracle_check->detail},
                     {"frames", pcs}};
    }
    if (t.bounds) j["stack"] = {hex(t.bounds->low), hex(t.bounds->high)};
    threads.push_back(std::move(j));
  }
  return {{"schema", kWalkSchema},
          {"pid", r.pid},
          {"threads", threads},
          {"timing_ms", {{"freeze", r.freeze_ms}, {"walk", r.walk_ms}, {"frozen_total", r.total_frozen_ms}}}};
}

void print_trace(const Trace& t, const char* indent) {
  for (size_t i = 0; i < t.frames.size(); ++i) {
    const Frame& f = t.frames[i];
    std::string where = f.symbol.empty() ? "??" : fmt::format("{}+{:#x}", f.symbol, f.offset);
    // A hooked return address shows the trampoline the stack held beside the recovered caller.
    std::string hook = f.trampoline ? fmt::format(" (via {} at {:#x})", f.trampoline_symbol, f.return_slot) : "";
    std::fprintf(stdout, "%s#%-3zu %#14llx %-40s [%s] %s%s\n", indent, i, static_cast<unsigned long long>(f.pc),
                 where.c_str(), std::string(trust_name(f.trust)).c_str(), f.object.c_str(), hook.c_str());
  }
}

void print_report(const ProcessReport& r) {
  size_t reliable = 0;
  for (const ThreadReport& t : r.threads) reliable += t.unwind.trace.verdict.reliable;
  std::printf("pid %d: %zu threads, %zu reliable (frozen %.2f ms)\n", r.pid, r.threads.size(), reliable,
              r.total_frozen_ms);
  for (const ThreadReport& t : r.threads) {
    const Verdict& v = t.unwind.trace.verdict;
    if (v.reliable) {
      std::printf("\nthread %d (%s): reliable\n", t.tid, t.name.c_str());
    } else {
      std::printf("\nthread %d (%s): UNRELIABLE %s at frame %d: %s\n", t.tid, t.name.c_str(),
                  std::string(reason_name(v.reason)).c_str(), v.frame, v.detail.c_str());
    }
    print_trace(t.unwind.trace, "  ");
    const Unwind& u = t.unwind;
    if (u.cross_check.agree) {
      std::printf("  cross-check (CFA rules): agrees\n");
    } else {
      std::printf(
          "  cross-check (CFA rules): %s%s%s\n", u.cfa_trace.verdict.reliable ? "reliable, " : "",
          u.cfa_trace.verdict.reliable
              ? ""
              : fmt::format("{} at frame {}, ", reason_name(u.cfa_trace.verdict.reason), u.cfa_trace.verdict.frame)
                    .c_str(),
          u.cross_check.detail.c_str());
      if (!v.reliable && u.cfa_trace.frames.size() > 1) print_trace(u.cfa_trace, "    ");
    }
    if (t.oracle_check) {
      if (t.oracle_check->agree) {
        std::printf("  oracle (libunwind): agrees\n");
      } else if (t.suspect()) {
        std::printf("  !!! ORACLE DISAGREES ON A RELIABLE TRACE (suspected false reliable): %s\n",
                    t.oracle_check->detail.c_str());
      } else {
        std::printf("  oracle (libunwind): differs: %s\n", t.oracle_check->detail.c_str());
      }
    }
  }
}

int run_walk(const WalkArgs& a) {
  if (!a.vmcore.vmcore.empty()) {
    VmcoreWalkArgs v = a.vmcore;
    v.json = a.json;
    v.cache_dir = a.cache_dir;
    if (a.metadata.size() > 1) {
      std::fprintf(stderr, "framecert walk: --vmcore takes one --metadata (vmlinux's)\n");
      return 2;
    }
    if (!a.metadata.empty()) v.metadata = a.metadata[0];
    v.frames = a.frames == "all" ? 0 : static_cast<size_t>(std::stoul(a.frames));
    return run_vmcore_walk(v);
  }
  if (a.pid <= 0) {
    std::fprintf(stderr, "framecert walk: give --pid PID (a live process) or --vmcore FILE (a kernel dump)\n");
    return 2;
  }
  MetadataCache cache(a.cache_dir, producer_tag(), [](const std::string& path) { return validator_metadata(path); });
  for (const std::string& m : a.metadata) {
    if (auto r = cache.add_override(m); !r) {
      std::fprintf(stderr, "framecert walk: %s\n", r.error().c_str());
      return 2;
    }
  }
  MetadataProvider provider = [&cache](const ElfImage& img, std::string& error) -> std::shared_ptr<const FrameTable> {
    auto t = cache.get(img);
    if (!t) {
      error = t.error();
      return nullptr;
    }
    return *t;
  };
  ProcessWalkOptions options;
  options.walk.max_depth = a.max_depth;
  options.walk.check_call_targets = !a.no_call_target_check;
  options.oracle_libunwind = a.oracle == "libunwind";
  auto report = walk_process(a.pid, provider, options);
  if (!report) {
    std::fprintf(stderr, "framecert walk: %s\n", report.error().c_str());
    return 2;
  }
  if (a.json) {
    std::printf("%s\n", report_json(*report).dump(1).c_str());
  } else {
    print_report(*report);
  }
  int rc = 0;
  for (const ThreadReport& t : report->threads) {
    if (t.suspect()) {
      std::fprintf(stderr, "framecert walk: thread %d: libunwind disagrees with a reliable trace: %s\n", t.tid,
                   t.oracle_check->detail.c_str());
      rc = 3;
    } else if (!t.unwind.trace.verdict.reliable && rc == 0) {
      rc = 1;
    }
  }
  return rc;
}

}  // namespace

void add_walk_command(CLI::App& app, int& exit_code) {
  auto args = std::make_shared<WalkArgs>();
  CLI::App* cmd = app.add_subcommand(
      "walk",
      "Freeze a live process, walk every thread by frame pointers, judge each trace, detach (or, with --vmcore,\n"
      "walk every task of a kernel dump).\n"
      "Exit: 0 all reliable, 1 some unreliable, 2 cannot walk, 3 an oracle disagrees with a reliable trace");
  auto* pid = cmd->add_option("--pid", args->pid, "process to walk");
  auto* vmcore = cmd->add_option("--vmcore", args->vmcore.vmcore,
                                 "instead of a process: every task of a kernel dump (ELF or kdump-compressed)");
  pid->excludes(vmcore);
  cmd->add_option("--vmlinux", args->vmcore.vmlinux, "with --vmcore: the dumped kernel's vmlinux (with DWARF)")
      ->needs(vmcore);
  cmd->add_option("--modules", args->vmcore.module_dirs,
                  "with --vmcore: a directory of loaded modules' NAME.ko and NAME.o (repeatable)")
      ->needs(vmcore);
  cmd->add_option("--frames", args->frames, "with --vmcore: frames per task in the text (N, or all: every frame)")
      ->needs(vmcore)
      ->check(CLI::IsMember({"all"}) | CLI::PositiveNumber);
  cmd->add_flag("--json", args->json, "JSON on stdout (docs: docs/design.md, docs/verdicts.md)");
  cmd->add_option("--metadata", args->metadata,
                  "metadata file to use instead of computing it (matched to objects by build-id, then name)");
  cmd->add_option("--oracle", args->oracle, "also unwind with an independent walker and compare")
      ->check(CLI::IsMember({"libunwind"}));
  cmd->add_option("--cache-dir", args->cache_dir,
                  "metadata cache (default ${XDG_CACHE_HOME:-~/.cache}/framecert/metadata)");
  cmd->add_option("--max-depth", args->max_depth, "frames before a trace is called too-deep");
  cmd->add_flag("--no-call-target-check", args->no_call_target_check,
                "skip the direct-call-target check (accept sibling calls through frames)");
  cmd->callback([args, &exit_code] { exit_code = run_walk(*args); });
}

}  // namespace framecert::cli

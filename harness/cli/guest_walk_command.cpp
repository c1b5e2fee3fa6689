// `framecert guest-walk --config CONFIG.json (--regs REGS.json | --serve) [--json]`
// Walks every task of a frozen Linux guest (harness/guest). CONFIG names the RAM file (or a dump of it:
// "vmcore" instead of "ram"), vmlinux, its metadata and loaded modules (metadata, .ko, section addresses);
// REGS gives each vCPU's registers (a dump's own, when CONFIG names a vmcore and REGS is not given):
//   {"cpus": [{"cpu": 0, "rip": "0x...", "rsp": "0x...", "rbp": "0x...", "cs": "0x10", "cr3": "0x..."}]}
// With --serve, everything is loaded first, `{"ready": ...}` is printed, and each line read from stdin is a
// REGS request answered with one line of JSON: the harness freezes the guest only after `ready`, so the
// freeze-to-verdict time is the walk itself. A request with "verdicts_first": true is answered by two lines:
// {"verdicts": [[task, pid, reliable, reason], ...]}, then the report. Exit: 0 walked (whatever the verdicts), 2
// unusable input.
#include <chrono>
#include <cstdio>
#include <map>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "harness/cli/commands.h"
#include "harness/cli/guest_report.h"
#include "harness/cli/guest_request.h"
#include "harness/cli/trace_json.h"
#include "harness/guest/guest_walk.h"
#include "harness/guest/vmcore.h"

namespace framecert::cli {

namespace {

using nlohmann::json;
using namespace framecert::guest;

struct GuestWalkArgs {
  std::string config;
  std::string regs;
  bool serve = false;
  bool json = false;
};

Result<GuestConfig> parse_config(const json& j) {
  try {
    GuestConfig c;
    if (j.contains("vmcore")) {
      c.vmcore = j.at("vmcore").get<std::string>();
    } else {
      c.ram = j.at("ram").get<std::string>();
    }
    c.vmlinux = j.at("vmlinux").get<std::string>();
    c.metadata = j.at("metadata").get<std::string>();
    for (const json& m : j.value("modules", json::array())) {
      ModuleConfig mc;
      mc.name = m.at("name").get<std::string>();
      mc.object = m.at("object").get<std::string>();
      mc.metadata = m.at("metadata").get<std::string>();
      for (auto& [name, addr] : m.at("sections").items()) mc.sections[name] = json_number(addr);
      for (const json& o : m.value("objects", json::array())) mc.objects.push_back(o.get<std::string>());
      c.modules.push_back(std::move(mc));
    }
    return c;
  } catch (const std::exception& e) {
    return fail("config: {}", e.what());
  }
}

Result<std::vector<CpuRegs>> parse_regs(const json& j) {
  try {
    std::vector<CpuRegs> out;
    for (const json& c : j.at("cpus")) {
      CpuRegs r;
      r.cpu = c.at("cpu").get<int>();
      r.rip = json_number(c.at("rip"));
      r.rsp = json_number(c.at("rsp"));
      r.rbp = json_number(c.at("rbp"));
      r.cs = json_number(c.at("cs"));
      r.cr3 = c.contains("cr3") ? json_number(c.at("cr3")) : 0;
      out.push_back(r);
    }
    return out;
  } catch (const std::exception& e) {
    return fail("registers: {}", e.what());
  }
}

double read_every_stack_ms(const WalkReport& rep, GuestWalker& walker) {
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<uint8_t> stack(walker.layout().thread_size);
  size_t read = 0;
  for (const TaskReport& r : rep.tasks)
    if (r.task.stack) read += walker.memory().read(RemoteAddr(r.task.stack), stack.data(), stack.size());
  const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  return read ? ms : 0;
}

int run(const GuestWalkArgs& a) {
  auto t0 = std::chrono::steady_clock::now();
  auto cj = read_json_file(a.config);
  if (!cj) {
    fmt::print(stderr, "framecert: {}\n", cj.error());
    return 2;
  }
  auto config = parse_config(*cj);
  if (!config) {
    fmt::print(stderr, "framecert: {}\n", config.error());
    return 2;
  }
  auto walker = GuestWalker::prepare(*config);
  if (!walker) {
    fmt::print(stderr, "framecert: {}\n", walker.error());
    return 2;
  }
  double prepare_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  auto answer = [&](const json& request, bool as_json) -> int {
    auto regs = parse_regs(request);
    if (!regs) {
      if (as_json)
        fmt::print("{}\n", json{{"error", regs.error()}}.dump());
      else
        fmt::print(stderr, "framecert: {}\n", regs.error());
      return 2;
    }
    auto rep = (*walker)->walk(*regs);
    if (!rep) {
      if (as_json)
        fmt::print("{}\n", json{{"error", rep.error()}}.dump());
      else
        fmt::print(stderr, "framecert: guest walk: {}\n", rep.error());
      return 2;
    }
    if (as_json && request.value("verdicts_first", false)) {
      // Every task's verdict, in a line of its own before the report: what a live-patch switch waits for, a
      // few KiB instead of the report's frames (the harness checks that the report repeats them).
      json verdicts = json::array();
      for (const TaskReport& r : rep->tasks) {
        const Verdict& v = r.unwind.trace.verdict;
        verdicts.push_back(
            {hex(r.task.address), r.task.pid, v.reliable, v.reliable ? json(nullptr) : json(reason_name(v.reason))});
      }
      fmt::print("{}\n", json{{"verdicts", verdicts}}.dump());
      std::fflush(stdout);
    }
    if (as_json) {
      json j = guest_report_json(*rep, (*walker)->code());
      j["summary"]["prepare_ms"] = prepare_ms;
      // The floor of any walk from outside (bench/guest/run.py): reading every task's whole stack from guest
      // memory, after the walk and on request only (never part of the freeze-to-verdict path).
      if (request.value("measure_stack_reads", false))
        j["summary"]["read_stacks_ms"] = read_every_stack_ms(*rep, **walker);
      j["kernel_cr3"] = hex((*walker)->kernel_cr3());
      j["thread_size"] = (*walker)->layout().thread_size;
      fmt::print("{}\n", j.dump());
    } else {
      print_guest_table(*rep, 4);
    }
    std::fflush(stdout);
    return 0;
  };
  if (a.serve) return serve_requests(prepare_ms, [&](const json& req) { answer(req, true); });
  if (a.regs.empty() && (*walker)->vmcore()) return answer(regs_json((*walker)->vmcore()->cpus()), a.json);
  auto req = one_shot_request(a.regs);
  if (!req) {
    fmt::print(stderr, "framecert: {}\n", req.error());
    return 2;
  }
  return answer(*req, a.json);
}

}  // namespace

void add_guest_walk_command(CLI::App& app, int& exit_code) {
  auto args = std::make_shared<GuestWalkArgs>();
  auto* cmd =
      app.add_subcommand("guest-walk", "Walk every task of a frozen Linux guest (see scripts/framecert-guest walk)");
  cmd->add_option("--config", args->config, "JSON: ram (or vmcore), vmlinux, metadata, modules")->required();
  cmd->add_option("--regs", args->regs, "JSON: each vCPU's registers");
  cmd->add_flag("--serve", args->serve, "Load, print {\"ready\"}, then answer one register request per stdin line");
  cmd->add_flag("--json", args->json, "JSON output");
  cmd->callback([args, &exit_code] { exit_code = run(*args); });
}

}  // namespace framecert::cli

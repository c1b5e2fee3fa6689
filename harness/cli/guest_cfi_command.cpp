// `framecert guest-cfi --config CONFIG.json (--regs REGS.json | --serve)`
// The CFI oracle (harness/cfi): every task of a frozen Linux guest unwound by DWARF call-frame information
// alone — vmlinux's .debug_frame and each module's, relocated to its sections' load addresses — never by
// frame pointers. It takes guest-walk's config and register requests unchanged (the config's metadata and
// objects are ignored) and answers each with one line of JSON:
//   {"tasks": [{"task": "0x…", "pid": N, "comm": "…", "running": bool, "vcpu": N,
//               "frames": [{"pc": "0x…", "cfa": "0x…"|null, "sp": "0x…", "symbol": "f+0x…"|null}],
//               "complete": bool, "stopped_at": N|null, "why": "…"}],
//    "summary": {"tasks": N, "complete": N, "incomplete": N, "no_cfi": N, "walk_ms": T, "prepare_ms": T},
//    "warnings": [...]}
// frames are innermost first; `cfa` is that frame's own CFA (where its return address ends: cfa - 8), null
// where it was not evaluated (the last frame); `sp` is rsp in that frame. complete=true only when the unwind
// reached the frame record below the pt_regs at the top of the stack (or there are no kernel frames: user
// mode, a freed stack); otherwise `why` says "no truth at frame N: …". Exit: 0, or 2 on unusable input.
#include <chrono>
#include <cstdio>
#include <map>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "harness/cfi/guest_cfi.h"
#include "harness/cli/commands.h"
#include "harness/cli/guest_request.h"
#include "harness/cli/trace_json.h"

namespace framecert::cli {

namespace {

using nlohmann::json;
using namespace framecert::cfi;

struct GuestCfiArgs {
  std::string config;
  std::string regs;
  bool serve = false;
};

Result<CfiGuestConfig> parse_cfi_config(const json& j) {
  try {
    CfiGuestConfig c;
    c.ram = j.at("ram").get<std::string>();
    c.vmlinux = j.at("vmlinux").get<std::string>();
    for (const json& m : j.value("modules", json::array())) {
      CfiModuleConfig mc;
      mc.name = m.at("name").get<std::string>();
      mc.object = m.at("object").get<std::string>();
      for (auto& [name, addr] : m.at("sections").items()) mc.sections[name] = json_number(addr);
      c.modules.push_back(std::move(mc));
    }
    return c;
  } catch (const std::exception& e) {
    return fail("config: {}", e.what());
  }
}

Result<std::vector<CfiCpuRegs>> parse_cfi_regs(const json& j) {
  try {
    std::vector<CfiCpuRegs> out;
    for (const json& c : j.at("cpus")) {
      CfiCpuRegs r;
      r.cpu = c.at("cpu").get<int>();
      r.rip = json_number(c.at("rip"));
      r.rsp = json_number(c.at("rsp"));
      r.rbp = json_number(c.at("rbp"));
      r.cs = json_number(c.at("cs"));
      out.push_back(r);
    }
    return out;
  } catch (const std::exception& e) {
    return fail("registers: {}", e.what());
  }
}

json cfi_report_json(const CfiGuestReport& rep, double prepare_ms) {
  json tasks = json::array();
  int complete = 0, no_cfi = 0;
  for (const CfiTaskReport& r : rep.tasks) {
    if (r.trace.complete) ++complete;
    if (r.trace.why.find("no CFI") != std::string::npos) ++no_cfi;
    json j = {{"task", hex(r.task.address)},
              {"pid", r.task.pid},
              {"comm", r.task.comm},
              {"running", r.running},
              {"vcpu", r.vcpu}};
    add_cfi_trace_json(j, r.trace);
    tasks.push_back(std::move(j));
  }
  json summary = {{"tasks", rep.tasks.size()},
                  {"complete", complete},
                  {"incomplete", static_cast<int>(rep.tasks.size()) - complete},
                  {"no_cfi", no_cfi},
                  {"walk_ms", rep.walk_ms},
                  {"prepare_ms", prepare_ms}};
  return {{"tasks", tasks}, {"summary", summary}, {"warnings", rep.warnings}};
}

int run_guest_cfi(const GuestCfiArgs& a) {
  auto t0 = std::chrono::steady_clock::now();
  auto cj = read_json_file(a.config);
  if (!cj) {
    fmt::print(stderr, "framecert: {}\n", cj.error());
    return 2;
  }
  auto config = parse_cfi_config(*cj);
  if (!config) {
    fmt::print(stderr, "framecert: {}\n", config.error());
    return 2;
  }
  auto oracle = GuestCfi::prepare(*config);
  if (!oracle) {
    fmt::print(stderr, "framecert: {}\n", oracle.error());
    return 2;
  }
  double prepare_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  auto answer = [&](const json& request) -> int {
    auto regs = parse_cfi_regs(request);
    if (!regs) {
      fmt::print("{}\n", json{{"error", regs.error()}}.dump());
      std::fflush(stdout);
      return 2;
    }
    auto rep = (*oracle)->unwind(*regs);
    if (!rep) {
      fmt::print("{}\n", json{{"error", rep.error()}}.dump());
      std::fflush(stdout);
      return 2;
    }
    fmt::print("{}\n", cfi_report_json(*rep, prepare_ms).dump());
    std::fflush(stdout);
    return 0;
  };
  if (a.serve) return serve_requests(prepare_ms, [&](const json& req) { answer(req); });
  auto req = one_shot_request(a.regs);
  if (!req) {
    fmt::print(stderr, "framecert: {}\n", req.error());
    return 2;
  }
  return answer(*req);
}

}  // namespace

void add_guest_cfi_command(CLI::App& app, int& exit_code) {
  auto args = std::make_shared<GuestCfiArgs>();
  auto* cmd =
      app.add_subcommand("guest-cfi", "Unwind every task of a frozen Linux guest by DWARF CFI alone (an oracle)");
  cmd->add_option("--config", args->config, "JSON: ram, vmlinux, modules (guest-walk's config)")->required();
  cmd->add_option("--regs", args->regs, "JSON: each vCPU's registers");
  cmd->add_flag("--serve", args->serve, "Load, print {\"ready\"}, then answer one register request per stdin line");
  cmd->callback([args, &exit_code] { exit_code = run_guest_cfi(*args); });
}

}  // namespace framecert::cli

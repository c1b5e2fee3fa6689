#include "harness/cli/guest_report.h"

#include <map>

#include <fmt/format.h>

#include "harness/cli/trace_json.h"
#include "unwinder/reliability.h"

namespace framecert::cli {

using nlohmann::json;
using namespace framecert::guest;

// The registers a dump recorded, as a request would give them.
json regs_json(const std::vector<CpuRegs>& cpus) {
  json out = json::array();
  for (const CpuRegs& r : cpus)
    out.push_back({{"cpu", r.cpu}, {"rip", r.rip}, {"rsp", r.rsp}, {"rbp", r.rbp}, {"cs", r.cs}});
  return {{"cpus", out}};
}

json guest_report_json(const WalkReport& rep, const CodeMap& code) {
  json tasks = json::array();
  std::map<std::string, int> by_reason;
  int reliable = 0;
  for (const TaskReport& r : rep.tasks) {
    const GuestTask& t = r.task;
    json j = {{"pid", t.pid},
              {"tgid", t.tgid},
              {"ppid", t.ppid},
              {"comm", t.comm},
              {"state", t.state},
              {"cpu", t.cpu},
              {"running", r.running},
              {"vcpu", r.vcpu},
              {"user_mode", r.user_mode},
              {"on_cpu", t.on_cpu},
              {"kthread", t.kthread()},
              {"idle", t.idle},
              {"task", hex(t.address)},
              {"stack", hex(t.stack)},
              {"thread_sp", hex(t.thread_sp)},
              {"switches", t.switches},
              {"note", r.note},
              {"patch_state", t.patch_state ? json(*t.patch_state) : json(nullptr)}};
    add_unwind_json(j, r.unwind, TraceJsonOptions{&code, true});
    if (r.unwind.trace.verdict.reliable) {
      ++reliable;
    } else {
      ++by_reason[std::string(reason_name(r.unwind.trace.verdict.reason))];
    }
    tasks.push_back(std::move(j));
  }
  json summary = {{"tasks", rep.tasks.size()},
                  {"reliable", reliable},
                  {"unreliable", static_cast<int>(rep.tasks.size()) - reliable},
                  {"by_reason", by_reason},
                  {"enumerate_ms", rep.enumerate_ms},
                  {"walk_ms", rep.walk_ms}};
  json tramps = json::array();
  for (const guest::FtraceTrampoline& t : rep.ftrace_trampolines)
    tramps.push_back({{"start", hex(t.start)},
                      {"end", hex(t.start + t.original->end - t.original->start)},
                      {"copy_of", t.original->name},
                      {"ops", hex(t.ops)}});
  return {{"schema", kGuestWalkSchema},     {"tasks", tasks},           {"summary", summary},
          {"online_cpus", rep.online_cpus}, {"warnings", rep.warnings}, {"ftrace_trampolines", tramps}};
}

std::string task_state_letter(uint32_t state) {
  constexpr uint32_t kTaskReport = 0x7f, kTaskIdle = 0x402;  // TASK_REPORT; TASK_UNINTERRUPTIBLE | TASK_NOLOAD
  if ((state & kTaskIdle) == kTaskIdle) return "I";
  const uint32_t bits = state & kTaskReport;
  if (bits == 0) return "R";
  int high = 31 - __builtin_clz(bits);
  return std::string(1, "SDTtXZP"[high]);
}

namespace {
std::string frame_name(const Frame& f) {
  return f.symbol.empty() ? hex(f.pc) : fmt::format("{}+{:#x}", f.symbol, f.offset);
}
}  // namespace

void print_guest_table(const WalkReport& rep, size_t frames) {
  fmt::print("{:>6} {:<16} {:>5} {:>4} {:<26} {}\n", "PID", "COMM", "STATE", "CPU", "VERDICT",
             frames == 0 ? "" : "frames");
  for (const TaskReport& r : rep.tasks) {
    const Verdict& v = r.unwind.trace.verdict;
    const std::vector<Frame>& fs = r.unwind.trace.frames;
    std::string top;
    for (size_t i = 0; frames != 0 && i < fs.size() && i < frames; ++i) top += (i ? " < " : "") + frame_name(fs[i]);
    if (frames != 0 && fs.size() > frames) top += fmt::format(" < ... ({} more)", fs.size() - frames);
    fmt::print("{:>6} {:<16} {:>5} {:>3}{} {:<26} {}\n", r.task.pid, r.task.comm, task_state_letter(r.task.state),
               r.task.cpu, r.running ? "*" : " ", v.reliable ? "reliable" : std::string(reason_name(v.reason)), top);
    if (frames != 0) continue;
    if (!v.reliable) fmt::print("        {} at frame {}: {}\n", reason_name(v.reason), v.frame, v.detail);
    for (size_t i = 0; i < fs.size(); ++i)
      fmt::print("        #{:<3} {:#018x} {:<48} {}\n", i, fs[i].pc, frame_name(fs[i]), fs[i].object);
  }
}

}  // namespace framecert::cli

// Prints the guest walk's JSON report (harness/cli/guest_report.cpp, the writer `framecert guest-walk` and
// `framecert walk --vmcore` share) for a hand-built walk, so a unit test can check the real writer's output
// against docs/schemas/guest-walk.schema.json without a guest (tests/harness/test_schemas_unit.py).
//
// The walk covers every shape the writer has: a reliable sleeping kthread whose return address a tracer hooked
// and whose metadata-only walk agrees (its frames left out), a running task stopped in user mode, an unreliable
// task whose metadata-only walk disagrees (its frames written), a return address right after a function's
// last call (`call_at_end`), no livepatch state and a livepatch state, an ftrace trampoline and a warning.
#include <cstdio>

#include <nlohmann/json.hpp>

#include "harness/cli/guest_report.h"
#include "harness/cli/trace_json.h"

using namespace framecert;

namespace {

constexpr uint64_t kText = 0xffffffff81000000;
constexpr uint64_t kStack = 0xffffc90000010000;

Frame frame(uint64_t pc, uint64_t sp, const char* symbol, uint64_t offset, FrameTrust trust) {
  Frame f;
  f.pc = pc;
  f.sp = sp;
  f.fp = sp - 16;
  f.trust = trust;
  f.object = "vmlinux";
  f.symbol = symbol;
  f.offset = offset;
  return f;
}

}  // namespace

int main() {
  // Two functions back to back: a return address at b's start is right after a's last call.
  CodeMap code;
  CodeImage image;
  image.path = "vmlinux";
  image.start = kText;
  image.end = kText + 0x1000;
  image.symbols = std::make_shared<const SymbolTable>(
      std::vector<Symbol>{{kText, 0x20, "a"}, {kText + 0x20, 0x20, "b"}, {kText + 0x40, 0x40, "schedule"}});
  code.add(image);

  guest::WalkReport rep;
  rep.online_cpus = {0, 1};
  rep.warnings = {"module fcpatch: no metadata (no fcpatch.o beside fcpatch.ko)"};
  rep.enumerate_ms = 1.25;
  rep.walk_ms = 3.5;
  static const guest::TrampolineOriginal original{"ftrace_caller", kText + 0x100, kText + 0x180, kText + 0x110};
  rep.ftrace_trampolines.push_back({0xffffffffa0001000, 0xffff888000200000, &original});

  guest::TaskReport sleeper;
  sleeper.task.address = 0xffff888000100000;
  sleeper.task.pid = 42;
  sleeper.task.tgid = 42;
  sleeper.task.ppid = 2;
  sleeper.task.comm = "fc_chain";
  sleeper.task.state = 0x402;
  sleeper.task.cpu = 1;
  sleeper.task.flags = guest::kPfKthread;
  sleeper.task.stack = kStack;
  sleeper.task.thread_sp = kStack + 0x3e00;
  sleeper.task.patch_state = 1;
  sleeper.task.switches = 17;
  Trace& t = sleeper.unwind.trace;
  t.frames = {frame(kText + 0x45, kStack + 0x3e40, "schedule", 5, FrameTrust::Context),
              frame(kText + 0x20, kStack + 0x3e80, "a", 0x20, FrameTrust::FramePointer),
              frame(kText + 0x30, kStack + 0x3ec0, "b", 0x10, FrameTrust::FramePointer)};
  t.frames[2].trampoline = 0xffffffff81e00000;
  t.frames[2].trampoline_symbol = "return_to_handler";
  t.frames[2].return_slot = kStack + 0x3eb8;
  t.verdict.reliable = true;
  sleeper.unwind.cfa_trace = t;
  sleeper.unwind.cfa_trace.frames[1].trust = FrameTrust::CfaRule;
  sleeper.unwind.cross_check.agree = true;
  rep.tasks.push_back(sleeper);

  guest::TaskReport user;
  user.task.address = 0xffff888000140000;
  user.task.pid = 77;
  user.task.tgid = 77;
  user.task.ppid = 1;
  user.task.comm = "sh";
  user.task.cpu = 0;
  user.task.on_cpu = 1;
  user.task.stack = kStack + 0x8000;
  user.running = true;
  user.vcpu = 0;
  user.user_mode = true;
  user.unwind.trace.verdict.reliable = true;
  user.unwind.cfa_trace.verdict.reliable = true;
  user.unwind.cross_check.agree = true;
  rep.tasks.push_back(user);

  guest::TaskReport broken;
  broken.task.address = 0xffff888000180000;
  broken.task.pid = 39;
  broken.task.tgid = 39;
  broken.task.ppid = 2;
  broken.task.comm = "fc_asm_noframe";
  broken.task.state = 1;
  broken.task.flags = guest::kPfKthread;
  broken.task.stack = kStack + 0x10000;
  broken.task.thread_sp = kStack + 0x13e00;
  broken.note = "has not run yet";
  broken.unwind.trace.frames = {frame(kText + 0x45, kStack + 0x13e40, "schedule", 5, FrameTrust::Context)};
  broken.unwind.trace.verdict = {false, Reason::NoFrameAtCallSite, 0, "a called b without a frame"};
  broken.unwind.cfa_trace.frames = {frame(kText + 0x45, kStack + 0x13e40, "schedule", 5, FrameTrust::Context),
                                    frame(0x1234, kStack + 0x13e80, "", 0, FrameTrust::CfaRule)};
  broken.unwind.cfa_trace.frames[1].object = "";
  broken.unwind.cfa_trace.verdict = {false, Reason::ReturnAddressNotText, 1, "0x1234 is not text"};
  broken.unwind.cross_check = {false, 1, "frame 1 differs"};
  rep.tasks.push_back(broken);

  // What `framecert guest-walk --json` and `framecert walk --vmcore --json` add to the shared report.
  nlohmann::json j = cli::guest_report_json(rep, code);
  j["summary"]["prepare_ms"] = 812.5;
  j["kernel_cr3"] = cli::hex(0x1a0c000);
  j["thread_size"] = 16384;
  std::printf("%s\n", j.dump(1).c_str());
  return 0;
}

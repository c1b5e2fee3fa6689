// framecert's shadow-stack plugin for qemu-system-x86_64 (TCG, plugin API version 1):
//
//   -plugin file=libframecert_shadow.so,sock=PATH[,region=16384][,user=0|1]
//
// At translation time every near call and near ret (insn_class.h) gets an execution callback and a memory
// callback. A call's memory callback takes its store — the return address going onto the stack — and records
// (slot, call address + length); a ret's takes its load and retires the slot. The execution callback arms a
// per-vCPU gate so that only the instruction's own access counts (QEMU 7.2 replays stale memory callbacks:
// access_gate.h). The bookkeeping is ShadowStacks; the current state is served on the unix socket PATH
// (protocol.h) from a background thread. See README.md.
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>

#include "harness/shadow/access_gate.h"
#include "harness/shadow/insn_class.h"
#include "harness/shadow/protocol.h"
#include "harness/shadow/qemu_plugin_api.h"
#include "harness/shadow/server.h"
#include "harness/shadow/shadow_stacks.h"

// The build hides every symbol (-fvisibility=hidden); these two are what QEMU looks up.
#define FRAMECERT_PLUGIN_EXPORT __attribute__((visibility("default")))

extern "C" {
FRAMECERT_PLUGIN_EXPORT int qemu_plugin_version = 1;
FRAMECERT_PLUGIN_EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t* info, int argc, char** argv);
}

namespace {

using framecert::shadow::AccessGate;
using framecert::shadow::classify_insn;
using framecert::shadow::ControlServer;
using framecert::shadow::InsnKind;
using framecert::shadow::kKernelBase;
using framecert::shadow::ShadowStacks;

// Set once in qemu_plugin_install, before any callback is registered, and never freed: QEMU does not stop its
// vCPU threads before running exit handlers, so a callback may still arrive while the process goes down, and
// it must find the objects alive. (The server, in contrast, is stopped at exit to remove the socket file.)
ShadowStacks* g_stacks = nullptr;
AccessGate* g_gate = nullptr;
ControlServer* g_server = nullptr;
bool g_track_user = false;

bool tracked(uint64_t address) { return g_track_user || address >= kKernelBase; }

// Per vCPU: the slot of its last ret that matched no entry, until the next block it runs tells where that ret
// went (ShadowStacks::resync). Only the vCPU's own thread reads and writes its line.
struct alignas(64) PendingRet {
  uint64_t slot = 0;
};
PendingRet* g_pending = nullptr;

// Every call and ret has an execution callback (opens the gate, access_gate.h) and a memory callback. The
// memory callbacks are registered with QEMU_PLUGIN_MEM_RW and filtered here: registering for one direction
// only was measured to lose callbacks (pops and rets went missing), and `call *mem` also loads its target,
// which is not the push. Userdata: a call's return address, a ret's own address.
void on_call_start(unsigned int vcpu, void* userdata) {
  g_gate->open(vcpu, AccessGate::Kind::kCall, reinterpret_cast<uintptr_t>(userdata));
}

void on_ret_start(unsigned int vcpu, void* userdata) {
  g_gate->open(vcpu, AccessGate::Kind::kRet, reinterpret_cast<uintptr_t>(userdata));
}

void on_call_access(unsigned int vcpu, qemu_plugin_meminfo_t info, uint64_t vaddr, void* userdata) {
  if (!qemu_plugin_mem_is_store(info)) return;
  const uint64_t return_address = reinterpret_cast<uintptr_t>(userdata);
  if (!g_gate->admit(vcpu, AccessGate::Kind::kCall, return_address) || !tracked(vaddr)) return;
  g_stacks->on_call(vaddr, return_address);
}

void on_ret_access(unsigned int vcpu, qemu_plugin_meminfo_t info, uint64_t vaddr, void* userdata) {
  if (qemu_plugin_mem_is_store(info)) return;
  if (!g_gate->admit(vcpu, AccessGate::Kind::kRet, reinterpret_cast<uintptr_t>(userdata)) || !tracked(vaddr)) {
    return;
  }
  if (!g_stacks->on_ret(vaddr) && vcpu < AccessGate::kMaxVcpus) g_pending[vcpu].slot = vaddr;
}

// The start of every kernel block: if this vCPU's last ret was unmatched, this block is where it returned to.
void on_block_start(unsigned int vcpu, void* userdata) {
  if (vcpu >= AccessGate::kMaxVcpus || g_pending[vcpu].slot == 0) return;
  g_stacks->resync(g_pending[vcpu].slot, reinterpret_cast<uintptr_t>(userdata));
  g_pending[vcpu].slot = 0;
}

void on_translate(qemu_plugin_id_t, struct qemu_plugin_tb* tb) {
  const size_t n = qemu_plugin_tb_n_insns(tb);
  if (tracked(qemu_plugin_tb_vaddr(tb))) {
    qemu_plugin_register_vcpu_tb_exec_cb(tb, on_block_start, QEMU_PLUGIN_CB_NO_REGS,
                                         reinterpret_cast<void*>(static_cast<uintptr_t>(qemu_plugin_tb_vaddr(tb))));
  }
  for (size_t i = 0; i < n; ++i) {
    struct qemu_plugin_insn* insn = qemu_plugin_tb_get_insn(tb, i);
    const uint64_t pc = qemu_plugin_insn_vaddr(insn);
    // Kernel code runs at kernel addresses and calls on kernel stacks; skipping user code when only kernel
    // slots are wanted saves the guest's user-space calls a callback each.
    if (!tracked(pc)) continue;
    const size_t size = qemu_plugin_insn_size(insn);
    // The userdata are plain values in the pointer: blocks are retranslated often, and nothing has to be
    // allocated (or ever freed) per translation.
    switch (classify_insn(static_cast<const uint8_t*>(qemu_plugin_insn_data(insn)), size)) {
      case InsnKind::kNearCall: {
        void* return_address = reinterpret_cast<void*>(static_cast<uintptr_t>(pc + size));
        qemu_plugin_register_vcpu_insn_exec_cb(insn, on_call_start, QEMU_PLUGIN_CB_NO_REGS, return_address);
        qemu_plugin_register_vcpu_mem_cb(insn, on_call_access, QEMU_PLUGIN_CB_NO_REGS, QEMU_PLUGIN_MEM_RW,
                                         return_address);
        break;
      }
      case InsnKind::kNearRet: {
        void* self = reinterpret_cast<void*>(static_cast<uintptr_t>(pc));
        qemu_plugin_register_vcpu_insn_exec_cb(insn, on_ret_start, QEMU_PLUGIN_CB_NO_REGS, self);
        qemu_plugin_register_vcpu_mem_cb(insn, on_ret_access, QEMU_PLUGIN_CB_NO_REGS, QEMU_PLUGIN_MEM_RW, self);
        break;
      }
      case InsnKind::kOther:
        break;
    }
  }
}

void on_qemu_exit(qemu_plugin_id_t, void*) {
  // Joins the server thread and removes the socket file; the thread never outlives this, so it cannot keep
  // QEMU from exiting.
  if (g_server != nullptr) g_server->stop();
}

// qemu_plugin_outs() reaches the terminal only under `-d plugin` in system emulation; a refusal to start must
// be seen, so it goes to stderr.
int refuse(const std::string& why) {
  std::fprintf(stderr, "framecert-shadow: %s\n", why.c_str());
  return -1;
}

struct Options {
  std::string sock;
  uint64_t region = 16384;
  bool user = false;
};

// Returns an empty string on success, else the complaint.
std::string parse_options(int argc, char** argv, Options* opts) {
  for (int i = 0; i < argc; ++i) {
    const std::string_view arg = argv[i];
    const size_t eq = arg.find('=');
    if (eq == std::string_view::npos) return "argument '" + std::string(arg) + "' is not key=value";
    const std::string_view key = arg.substr(0, eq);
    const std::string value(arg.substr(eq + 1));
    if (key == "sock") {
      opts->sock = value;
    } else if (key == "region") {
      char* end = nullptr;
      errno = 0;
      const unsigned long long v = std::strtoull(value.c_str(), &end, 0);
      if (value.empty() || *end != '\0' || errno != 0 || v < 16 || v > (1ull << 30) || (v & (v - 1)) != 0) {
        return "region=" + value + ": want a power of two between 16 and 2^30 (kernel task stacks: 16384)";
      }
      opts->region = v;
    } else if (key == "user") {
      if (value != "0" && value != "1") return "user=" + value + ": want 0 or 1";
      opts->user = value == "1";
    } else {
      return "unknown argument '" + std::string(key) + "' (known: sock, region, user)";
    }
  }
  if (opts->sock.empty()) return "missing sock=PATH (the unix socket to serve shadow stacks on)";
  return {};
}

}  // namespace

int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t* info, int argc, char** argv) {
  if (info != nullptr && info->target_name != nullptr && std::strcmp(info->target_name, "x86_64") != 0) {
    return refuse(std::string("only x86_64 guests are supported, not ") + info->target_name);
  }
  Options opts;
  if (std::string complaint = parse_options(argc, argv, &opts); !complaint.empty()) return refuse(complaint);

  g_track_user = opts.user;
  g_stacks = new ShadowStacks(opts.region);
  g_gate = new AccessGate();
  g_pending = new PendingRet[AccessGate::kMaxVcpus];
  std::string error;
  const auto handler = [](std::string_view request) {
    return framecert::shadow::respond(*g_stacks, request, g_gate->refused());
  };
  std::unique_ptr<ControlServer> server = ControlServer::start(opts.sock, handler, &error);
  if (!server) return refuse(error);
  g_server = server.release();

  qemu_plugin_register_atexit_cb(id, on_qemu_exit, nullptr);
  qemu_plugin_register_vcpu_tb_trans_cb(id, on_translate);
  return 0;
}

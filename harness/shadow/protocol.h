// The shadow plugin's control protocol: one request line in, one reply out. Kept apart from the socket and
// from QEMU so the exact bytes can be unit tested.
//
//   snapshot  ->  framecert-shadow 1
//                 e <slot> <return address>      one per un-returned call, ascending slot, lowercase 0x hex
//                 s calls <n>
//                 s rets <n>
//                 s unmatched <n>
//                 s dropped <n>
//                 s stale <n>                    memory reports refused as not the instruction's own (access_gate.h)
//                 end
//   stats     ->  the same without the `e` lines
//   anything else  ->  error unknown command
#pragma once

#include <string>
#include <string_view>

#include "harness/shadow/shadow_stacks.h"

namespace framecert::shadow {

// `request` is one line without its '\n'; a trailing '\r' and surrounding blanks are ignored. `stale` is the
// count the plugin's AccessGate refused (kept outside ShadowStacks, which only sees admitted events).
std::string respond(const ShadowStacks& stacks, std::string_view request, uint64_t stale = 0);

// The reply for a snapshot already taken (entries as given, which a Snapshot has sorted).
std::string format_snapshot(const Snapshot& snap, bool with_entries, uint64_t stale = 0);

}  // namespace framecert::shadow

// The one JSON writer of traces and verdicts, used by every command that prints them: `framecert walk`,
// `framecert guest-walk` and `framecert guest-cfi` (docs/design.md gives the schema; the Python harness in
// harness/framecert_guest and the tests read it). A field is spelled in this file only.
#pragma once

#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "harness/cfi/cfi_unwind.h"
#include "unwinder/code_map.h"
#include "unwinder/trace.h"
#include "unwinder/unwind.h"

namespace framecert::cli {

// Addresses are strings "0x…" (JSON numbers lose 64-bit precision in most readers).
std::string hex(uint64_t v);

// {"pc", "symbol", "offset", "object", "trust", "sp", "fp"}
nlohmann::json frame_json(const Frame& f);

struct TraceJsonOptions {
  // Adds `call_at_end` to every frame: a return address right after a function's last instruction (a call
  // to a noreturn function ends it) that is also where the next function starts, where naive symbolizers
  // name the next function (the guest harness's truths compare by symbol).
  const CodeMap* call_at_end_from = nullptr;
  // The metadata-only walk's frames only where it disagrees, with `frame_count` always: the guest report is
  // on the freeze-to-verdict path, and agreeing frames are the same frames.
  bool cfa_frames_only_on_disagreement = false;
};

nlohmann::json frames_json(const Trace& t, const TraceJsonOptions& o = {});

// Sets "reliable", "reason" (null when reliable), "reason_frame" (null when reliable) and "detail" in `j`.
void add_verdict_json(nlohmann::json& j, const Verdict& v);

// A walked thread or task: its verdict fields, "frames", and "cfa_check" (the metadata-only walk: its
// verdict fields, "agrees", "detail" of the cross-check, "frames" and, per the options, "frame_count").
void add_unwind_json(nlohmann::json& j, const Unwind& u, const TraceJsonOptions& o = {});

// The CFI oracle's trace: "frames" ({"pc", "cfa", "sp", "symbol"}), "complete", "stopped_at", "why".
void add_cfi_trace_json(nlohmann::json& j, const cfi::CfiTrace& t);

}  // namespace framecert::cli

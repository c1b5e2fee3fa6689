#include "harness/cli/trace_json.h"

#include <fmt/format.h>

namespace framecert::cli {

using nlohmann::json;

namespace {

json text_or_null(const std::string& s) { return s.empty() ? json(nullptr) : json(s); }

bool call_at_end(const CodeMap& code, uint64_t pc) {
  auto fn = code.function_at(pc - 1);
  auto next = code.function_at(pc);
  return fn && fn->size && fn->start + fn->size == pc && next && next->start == pc;
}

}  // namespace

std::string hex(uint64_t v) { return fmt::format("{:#x}", v); }

json frame_json(const Frame& f) {
  json j = {{"pc", hex(f.pc)},    {"symbol", text_or_null(f.symbol)},          {"offset", f.offset},
            {"object", f.object}, {"trust", std::string(trust_name(f.trust))}, {"sp", hex(f.sp)},
            {"fp", hex(f.fp)}};
  // A return address a tracer had replaced: the trampoline the stack held, beside the recovered pc.
  if (f.trampoline)
    j["trampoline"] = {{"pc", hex(f.trampoline)}, {"symbol", f.trampoline_symbol}, {"slot", hex(f.return_slot)}};
  return j;
}

json frames_json(const Trace& t, const TraceJsonOptions& o) {
  json out = json::array();
  for (size_t i = 0; i < t.frames.size(); ++i) {
    json j = frame_json(t.frames[i]);
    // Frame 0 is where the task is, not a return address.
    if (o.call_at_end_from) j["call_at_end"] = i > 0 && call_at_end(*o.call_at_end_from, t.frames[i].pc);
    out.push_back(std::move(j));
  }
  return out;
}

void add_verdict_json(json& j, const Verdict& v) {
  j["reliable"] = v.reliable;
  j["reason"] = v.reliable ? json(nullptr) : json(std::string(reason_name(v.reason)));
  j["reason_frame"] = v.reliable ? json(nullptr) : json(v.frame);
  j["detail"] = v.detail;
}

void add_unwind_json(json& j, const Unwind& u, const TraceJsonOptions& o) {
  add_verdict_json(j, u.trace.verdict);
  j["frames"] = frames_json(u.trace, o);
  json cfa;
  add_verdict_json(cfa, u.cfa_trace.verdict);
  cfa["agrees"] = u.cross_check.agree;
  cfa["detail"] = u.cross_check.detail;
  if (!o.cfa_frames_only_on_disagreement || !u.cross_check.agree) cfa["frames"] = frames_json(u.cfa_trace, o);
  if (o.cfa_frames_only_on_disagreement) cfa["frame_count"] = u.cfa_trace.frames.size();
  j["cfa_check"] = std::move(cfa);
}

void add_cfi_trace_json(json& j, const cfi::CfiTrace& t) {
  json frames = json::array();
  for (const cfi::CfiFrame& f : t.frames)
    frames.push_back({{"pc", hex(f.pc)},
                      {"cfa", f.cfa ? json(hex(*f.cfa)) : json(nullptr)},
                      {"sp", hex(f.sp)},
                      {"symbol", text_or_null(f.symbol)}});
  j["frames"] = std::move(frames);
  j["complete"] = t.complete;
  j["stopped_at"] = t.stopped_at < 0 ? json(nullptr) : json(t.stopped_at);
  j["why"] = t.why;
}

}  // namespace framecert::cli

// The guest walk's report, as JSON and as text: one writer for `framecert guest-walk` (a running guest's RAM
// or a dump named by its config) and `framecert walk --vmcore`, so a dump and the live guest it was taken from
// print the same thing.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "harness/guest/guest_walk.h"
#include "unwinder/code_map.h"

namespace framecert::cli {

// The registers a dump recorded, as a register request would give them.
nlohmann::json regs_json(const std::vector<guest::CpuRegs>& cpus);

// The report's schema and version, its "schema" field (docs/schemas/guest-walk.schema.json): the same for
// `framecert guest-walk` and `framecert walk --vmcore`, and for the harness's walk report built on it.
inline constexpr const char* kGuestWalkSchema = "framecert-guest-walk/1";

// {"schema", "tasks", "summary", "online_cpus", "warnings", "ftrace_trampolines"} (docs/design.md).
nlohmann::json guest_report_json(const guest::WalkReport& rep, const CodeMap& code);

// ps's letter for a task's __state (fs/proc/array.c: the highest reported bit; TASK_IDLE is I, none is R).
std::string task_state_letter(uint32_t state);

// One line per task with its first `frames` frames; frames == 0: every frame, one line each, like crash's bt.
void print_guest_table(const guest::WalkReport& rep, size_t frames);

}  // namespace framecert::cli

// What `framecert guest-walk` and `framecert guest-cfi` share: the same config and register-request JSON
// (numbers as integers or "0x…" strings), read from files or, with --serve, one request per stdin line.
#pragma once

#include <cstdint>
#include <cstdio>
#include <fstream>
#include <functional>
#include <iostream>
#include <string>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "unwinder/result.h"

namespace framecert::cli {

inline uint64_t json_number(const nlohmann::json& j) {
  if (j.is_string()) return std::stoull(j.get<std::string>(), nullptr, 0);
  return j.get<uint64_t>();
}

inline Result<nlohmann::json> read_json_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) return fail("{}: cannot open", path);
  try {
    return nlohmann::json::parse(in);
  } catch (const std::exception& e) {
    return fail("{}: {}", path, e.what());
  }
}

// The register request of a one-shot run: REGS_PATH's JSON, or no vCPUs at all when none was given.
inline Result<nlohmann::json> one_shot_request(const std::string& regs_path) {
  if (regs_path.empty()) return nlohmann::json{{"cpus", nlohmann::json::array()}};
  return read_json_file(regs_path);
}

// --serve: says it is ready (everything is loaded: the harness freezes the guest only after this line),
// then answers each non-empty stdin line; a line that is not JSON gets {"error": ...}. Returns at EOF.
inline int serve_requests(double prepare_ms, const std::function<void(const nlohmann::json&)>& answer) {
  fmt::print("{}\n", nlohmann::json{{"ready", true}, {"prepare_ms", prepare_ms}}.dump());
  std::fflush(stdout);
  std::string line;
  while (std::getline(std::cin, line)) {
    if (line.empty()) continue;
    nlohmann::json req;
    try {
      req = nlohmann::json::parse(line);
    } catch (const std::exception& e) {
      fmt::print("{}\n", nlohmann::json{{"error", e.what()}}.dump());
      std::fflush(stdout);
      continue;
    }
    answer(req);
  }
  return 0;
}

}  // namespace framecert::cli

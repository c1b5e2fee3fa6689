#include "unwinder/libunwind_oracle.h"

#include <libunwind-ptrace.h>

#include <fmt/format.h>

namespace framecert {

LibunwindOracle::LibunwindOracle() : address_space_(unw_create_addr_space(&_UPT_accessors, 0)) {
  if (address_space_) unw_set_caching_policy(static_cast<unw_addr_space_t>(address_space_), UNW_CACHE_GLOBAL);
}

LibunwindOracle::~LibunwindOracle() {
  if (address_space_) unw_destroy_addr_space(static_cast<unw_addr_space_t>(address_space_));
}

OracleTrace LibunwindOracle::trace(pid_t tid, size_t max_frames) {
  OracleTrace out;
  if (!address_space_) {
    out.error = "unw_create_addr_space failed";
    return out;
  }
  void* upt = _UPT_create(tid);
  if (!upt) {
    out.error = "_UPT_create failed";
    return out;
  }
  unw_cursor_t cursor;
  int rc = unw_init_remote(&cursor, static_cast<unw_addr_space_t>(address_space_), upt);
  if (rc < 0) {
    out.error = fmt::format("unw_init_remote: {}", unw_strerror(rc));
  } else {
    for (size_t i = 0; i < max_frames; ++i) {
      unw_word_t ip = 0;
      unw_get_reg(&cursor, UNW_REG_IP, &ip);
      out.pcs.push_back(ip);
      rc = unw_step(&cursor);
      if (rc <= 0) {
        if (rc < 0) out.error = fmt::format("unw_step: {}", unw_strerror(rc));
        break;
      }
    }
  }
  _UPT_destroy(upt);
  return out;
}

OracleComparison compare_with_oracle(const Trace& ours, const OracleTrace& theirs) {
  size_t n = std::min(ours.frames.size(), theirs.pcs.size());
  for (size_t i = 0; i < n; ++i) {
    if (ours.frames[i].pc != theirs.pcs[i])
      return {false, fmt::format("frame {}: {:#x} here, {:#x} by libunwind", i, ours.frames[i].pc, theirs.pcs[i])};
  }
  if (ours.frames.size() != theirs.pcs.size())
    return {false, fmt::format("{} frames here, {} by libunwind{}", ours.frames.size(), theirs.pcs.size(),
                               theirs.error.empty() ? "" : " (" + theirs.error + ")")};
  return {true, {}};
}

}  // namespace framecert

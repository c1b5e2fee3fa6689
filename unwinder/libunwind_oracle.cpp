#include "unwinder/libunwind_oracle.h"

#include <dlfcn.h>
#include <libunwind-ptrace.h>

#include <fmt/format.h>

namespace framecert {

// libunwind is loaded on first use, not linked: only `walk --oracle libunwind` needs it, and four shared
// libraries fewer at start-up make every `framecert check` (once per object under Kbuild) faster. The
// declarations still come from libunwind's own headers (the unw_* names are macros for _Ux86_64_*).
struct LibunwindOracle::Api {
  decltype(&_Ux86_64_create_addr_space) create_addr_space = nullptr;
  decltype(&_Ux86_64_destroy_addr_space) destroy_addr_space = nullptr;
  decltype(&_Ux86_64_set_caching_policy) set_caching_policy = nullptr;
  decltype(&_Ux86_64_init_remote) init_remote = nullptr;
  decltype(&_Ux86_64_get_reg) get_reg = nullptr;
  decltype(&_Ux86_64_step) step = nullptr;
  decltype(&_Ux86_64_strerror) strerror = nullptr;
  decltype(&_UPT_create) upt_create = nullptr;
  decltype(&_UPT_destroy) upt_destroy = nullptr;
  unw_accessors_t* upt_accessors = nullptr;
  void* handles[2] = {};

  // Loads both libraries; on failure `error` says which and why.
  bool load(std::string& error) {
    const char* names[2] = {"libunwind-x86_64.so.8", "libunwind-ptrace.so.0"};
    for (int i = 0; i < 2; ++i) {
      handles[i] = dlopen(names[i], RTLD_NOW | RTLD_GLOBAL);
      if (!handles[i]) {
        error = fmt::format("cannot load {}: {}", names[i], dlerror());
        return false;
      }
    }
    auto sym = [&](auto& fn, int lib, const char* name) {
      fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(dlsym(handles[lib], name));
      if (!fn && error.empty()) error = fmt::format("{} has no {}", names[lib], name);
    };
    sym(create_addr_space, 0, "_Ux86_64_create_addr_space");
    sym(destroy_addr_space, 0, "_Ux86_64_destroy_addr_space");
    sym(set_caching_policy, 0, "_Ux86_64_set_caching_policy");
    sym(init_remote, 0, "_Ux86_64_init_remote");
    sym(get_reg, 0, "_Ux86_64_get_reg");
    sym(step, 0, "_Ux86_64_step");
    sym(strerror, 0, "_Ux86_64_strerror");
    sym(upt_create, 1, "_UPT_create");
    sym(upt_destroy, 1, "_UPT_destroy");
    sym(upt_accessors, 1, "_UPT_accessors");
    return error.empty();
  }
  ~Api() {
    for (void* h : handles)
      if (h) dlclose(h);
  }
};

LibunwindOracle::LibunwindOracle() : api_(std::make_unique<Api>()) {
  if (!api_->load(load_error_)) return;
  address_space_ = api_->create_addr_space(api_->upt_accessors, 0);
  if (address_space_) api_->set_caching_policy(static_cast<unw_addr_space_t>(address_space_), UNW_CACHE_GLOBAL);
}

LibunwindOracle::~LibunwindOracle() {
  if (address_space_) api_->destroy_addr_space(static_cast<unw_addr_space_t>(address_space_));
}

OracleTrace LibunwindOracle::trace(pid_t tid, size_t max_frames) {
  OracleTrace out;
  if (!load_error_.empty()) {
    out.error = load_error_;
    return out;
  }
  if (!address_space_) {
    out.error = "unw_create_addr_space failed";
    return out;
  }
  void* upt = api_->upt_create(tid);
  if (!upt) {
    out.error = "_UPT_create failed";
    return out;
  }
  unw_cursor_t cursor;
  int rc = api_->init_remote(&cursor, static_cast<unw_addr_space_t>(address_space_), upt);
  if (rc < 0) {
    out.error = fmt::format("unw_init_remote: {}", api_->strerror(rc));
  } else {
    for (size_t i = 0; i < max_frames; ++i) {
      unw_word_t ip = 0;
      api_->get_reg(&cursor, UNW_REG_IP, &ip);
      out.pcs.push_back(ip);
      rc = api_->step(&cursor);
      if (rc <= 0) {
        if (rc < 0) out.error = fmt::format("unw_step: {}", api_->strerror(rc));
        break;
      }
    }
  }
  api_->upt_destroy(upt);
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

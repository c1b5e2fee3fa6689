// The validator's public entry point: check one x86-64 ELF object (relocatable .o, executable, shared
// object, vmlinux) for frame-pointer discipline, and compute its frame metadata.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "unwinder/frame_table.h"
#include "unwinder/result.h"
#include "validator/finding.h"
#include "validator/kernel_format.h"

namespace framecert {

struct CheckOptions {
  bool explain = false;       // record the branch path that led to each finding
  bool want_metadata = true;  // build the FrameTable (costs memory on very large objects)
  // The kernel the objects were built for, where the object itself does not show its special-section
  // format (validator/decoded_object.h, KernelFormat); nullopt: 6.1's.
  std::optional<KernelFormat> kernel;
  // Threads that may decode and check one object at once (the report does not depend on it): 0 picks this
  // machine's cores for an object with a lot of code and 1 for the rest, where starting threads costs more.
  unsigned threads = 0;
};

struct ObjectReport {
  std::string object;             // the path as given
  std::vector<Finding> findings;  // in objtool's order: by section, then function, then offset
  FrameTable metadata;            // valid when CheckOptions::want_metadata
  size_t functions_checked = 0;
  size_t instructions = 0;
};

// Loads, decodes and checks `path`. An error value means the input was unusable (not ELF, truncated,
// not x86-64, ...): the message names the file and what is wrong. Findings are not errors.
Result<ObjectReport> check_object(const std::string& path, const CheckOptions& options);

}  // namespace framecert

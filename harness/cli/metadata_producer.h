// The one metadata producer of the `framecert` binary and its identity, shared by `framecert walk` (a
// process's objects) and `framecert metadata-cache` (a guest's vmlinux and modules), so both fill the same
// MetadataCache (unwinder/metadata_cache.h) under the same keys.
#pragma once

#include <sys/stat.h>

#include <cstdint>
#include <map>
#include <optional>
#include <string>

#include <fmt/format.h>

#include "unwinder/frame_table.h"
#include "unwinder/metadata_cache.h"
#include "unwinder/result.h"
#include "validator/link_addresses.h"
#include "validator/validator.h"

namespace framecert::cli {

// Metadata cached by one build of framecert is not trusted by another: the validator may have changed. The
// format version is part of the tag too: a cache written in another version would be refused by the reader.
// The value of `--kernel-version` (check, metadata-cache) as the format it names: nullopt when the option was not
// given, an error (one line) when the text is no kernel version.
inline Result<std::optional<KernelFormat>> kernel_version_option(const std::string& text) {
  if (text.empty()) return std::optional<KernelFormat>{};
  if (auto format = kernel_format_of_version(text)) return format;
  return fail("--kernel-version {}: not a kernel version (e.g. 6.1, 6.12.118)", text);
}

// Objects read with a kernel's special-section formats named by the caller (CheckOptions::kernel) get their
// own tag: the same object checked both ways must not share one cache entry.
inline std::string producer_tag(std::optional<KernelFormat> kernel = std::nullopt) {
  struct stat st {};
  if (stat("/proc/self/exe", &st) != 0) return "unknown";
  return fmt::format("v{}-{:x}{:x}{}", metadata::kVersion, static_cast<uint64_t>(st.st_size),
                     static_cast<uint64_t>(st.st_mtim.tv_sec),
                     kernel == KernelFormat::Linux6_10 ? "-k610" : (kernel ? "-k61" : ""));
}

// The validator's metadata of the object at `path` (findings are not errors: the metadata says where frames
// are missing).
inline Result<FrameTable> validator_metadata(const std::string& path,
                                             std::optional<KernelFormat> kernel = std::nullopt) {
  CheckOptions options;
  options.kernel = kernel;
  auto report = check_object(path, options);
  if (!report) return tl::unexpected(report.error());
  return std::move(report->metadata);
}

// The producer of a kernel's images: vmlinux from the relocatable object it was linked from (`linked_from`:
// image path -> object, validated and addressed like the image), anything else (.ko) by itself.
inline MetadataCache::Producer kernel_producer(std::map<std::string, std::string> linked_from,
                                               std::optional<KernelFormat> kernel) {
  return [linked_from = std::move(linked_from), kernel](const std::string& path) -> Result<FrameTable> {
    auto it = linked_from.find(path);
    if (it == linked_from.end()) return validator_metadata(path, kernel);
    auto table = validator_metadata(it->second, kernel);
    if (!table) return table;
    LinkReport link;
    return place_at_link_addresses(*table, it->second, path, &link);
  };
}

}  // namespace framecert::cli

#include "unwinder/metadata_cache.h"

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <functional>

namespace framecert {

namespace fs = std::filesystem;

MetadataCache::MetadataCache(std::string dir, std::string producer_tag, Producer producer)
    : dir_(dir.empty() ? default_dir() : std::move(dir)),
      tag_(std::move(producer_tag)),
      producer_(std::move(producer)) {}

std::string MetadataCache::default_dir() {
  const char* xdg = std::getenv("XDG_CACHE_HOME");
  std::string base;
  if (xdg && *xdg) {
    base = xdg;
  } else {
    const char* home = std::getenv("HOME");
    base = std::string(home && *home ? home : "/tmp") + "/.cache";
  }
  return base + "/framecert/metadata";
}

Result<void> MetadataCache::add_override(const std::string& metadata_path) {
  auto t = read_frame_table(metadata_path);
  if (!t) return fail("{}: {}", metadata_path, t.error());
  overrides_.push_back(std::make_shared<FrameTable>(std::move(*t)));
  return {};
}

std::string MetadataCache::key_for(const ElfImage& image) const {
  // What was read, never the path alone: the same path may name different files (another mount namespace,
  // a file replaced since), and the image's own fields come from the file actually opened.
  std::string key;
  if (!image.build_id.empty()) {
    key = "bid-" + image.build_id;
  } else {
    key = fmt::format("file-{:x}-{}-{}-{}", image.dev, image.inode, image.size, image.mtime_ns);
  }
  return key + "-" + tag_;
}

Result<std::shared_ptr<const FrameTable>> MetadataCache::get(const ElfImage& image) {
  for (const auto& o : overrides_) {
    if (!image.build_id.empty() && o->build_id == image.build_id) return o;
  }
  for (const auto& o : overrides_) {
    // By name only when no build-id says they differ.
    if (!o->build_id.empty() && !image.build_id.empty()) continue;
    if (fs::path(o->object_name).filename() == fs::path(image.path).filename()) return o;
  }
  std::string key = key_for(image);
  if (auto it = memo_.find(key); it != memo_.end()) return it->second;
  std::string file = dir_ + "/" + key + ".fcmeta";
  if (auto cached = read_frame_table(file)) {
    ++loaded_;
    auto t = std::make_shared<const FrameTable>(std::move(*cached));
    memo_[key] = t;
    return t;
  }
  // Missing or damaged (the reader checks version and checksum): compute afresh.
  auto produced = producer_(image.source());
  if (!produced) return fail("{}", produced.error());
  ++computed_;
  produced->object_name = image.path;  // the object's name, not /proc/self/fd/N
  auto t = std::make_shared<const FrameTable>(std::move(*produced));
  memo_[key] = t;
  std::error_code ec;
  fs::create_directories(dir_, ec);
  if (!ec) {
    // Write then rename, so a concurrent reader never sees half a file.
    std::string tmp = fmt::format("{}.tmp.{}", file, getpid());
    if (write_frame_table(*t, tmp)) fs::rename(tmp, file, ec);
    if (ec) fs::remove(tmp, ec);
  }
  return t;
}

}  // namespace framecert

// Frame metadata for the objects a process maps, computed on demand and kept on disk, keyed by build-id
// (or by the device, inode, size and mtime of the file actually read, for objects without one) and by the producer's
// identity, so a rebuilt validator never reads metadata written by an older one. The producer (the validator's
// check_object) is passed in: the unwinder sits below the validator and must not include it.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>

#include "unwinder/elf_image.h"
#include "unwinder/frame_table.h"
#include "unwinder/result.h"

namespace framecert {

class MetadataCache {
 public:
  // Computes the metadata of the file at `path` (ElfImage::source(): the very file that was read).
  using Producer = std::function<Result<FrameTable>(const std::string& path)>;

  // `dir` empty: default_dir(). `producer_tag`: anything that changes when the producer's output may.
  MetadataCache(std::string dir, std::string producer_tag, Producer producer);

  // ${XDG_CACHE_HOME:-$HOME/.cache}/framecert/metadata
  static std::string default_dir();

  // Adds a metadata file given by the user; it serves objects with the same build-id, or failing that the
  // same file name (only when the metadata or the object has no build-id).
  Result<void> add_override(const std::string& metadata_path);

  Result<std::shared_ptr<const FrameTable>> get(const ElfImage& image);
  std::string key_for(const ElfImage& image) const;

  size_t computed() const { return computed_; }
  size_t loaded() const { return loaded_; }

 private:
  std::string dir_;
  std::string tag_;
  Producer producer_;
  std::vector<std::shared_ptr<const FrameTable>> overrides_;
  std::map<std::string, std::shared_ptr<const FrameTable>> memo_;
  size_t computed_ = 0, loaded_ = 0;
};

}  // namespace framecert

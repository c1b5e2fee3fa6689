// `framecert metadata-cache [--cache-dir DIR] [--from IMAGE=OBJECT]... IMAGE...`
// Makes sure the metadata cache (unwinder/metadata_cache.h, the one `framecert walk` uses) holds the frame
// metadata of every IMAGE, computing what is missing, and prints where each one is, as JSON:
//   {"cache_dir": "...", "objects": [{"object": IMAGE, "metadata": FILE, "key": KEY, "computed": bool}]}
// Keys are the cache's own (build-id or file identity, and this binary's producer tag): a rebuilt framecert
// never reads metadata an older one wrote. `--from vmlinux=vmlinux.o` computes vmlinux's metadata by
// validating vmlinux.o and addressing it like vmlinux (framecert check --link-addresses).
// Exit: 0 every image has its metadata, 2 one could not be read or validated (its "error" says why).
#include <cstdio>
#include <filesystem>
#include <map>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "harness/cli/commands.h"
#include "harness/cli/metadata_producer.h"
#include "unwinder/elf_image.h"
#include "unwinder/metadata_cache.h"
#include "validator/link_addresses.h"

namespace framecert::cli {

namespace {

struct MetadataCacheArgs {
  std::vector<std::string> images;
  std::vector<std::string> from;  // IMAGE=OBJECT
  std::string cache_dir;
  std::string kernel_version;  // --kernel-version
};

int run_metadata_cache(const MetadataCacheArgs& a) {
  std::map<std::string, std::string> linked_from;  // image path -> the relocatable object it was linked from
  for (const std::string& f : a.from) {
    auto eq = f.find('=');
    if (eq == std::string::npos || eq == 0 || eq + 1 == f.size()) {
      fmt::print(stderr, "framecert: --from {}: expected IMAGE=OBJECT\n", f);
      return 2;
    }
    linked_from[f.substr(0, eq)] = f.substr(eq + 1);
  }
  auto kernel_option = kernel_version_option(a.kernel_version);
  if (!kernel_option) {
    fmt::print(stderr, "framecert: {}\n", kernel_option.error());
    return 2;
  }
  const std::optional<KernelFormat> kernel = *kernel_option;
  MetadataCache cache(a.cache_dir, producer_tag(kernel), kernel_producer(linked_from, kernel));
  std::string dir = a.cache_dir.empty() ? MetadataCache::default_dir() : a.cache_dir;
  nlohmann::json out = {{"cache_dir", dir}, {"objects", nlohmann::json::array()}};
  int status = 0;
  for (const std::string& path : a.images) {
    nlohmann::json jo = {{"object", path}};
    auto image = read_elf_image(path);
    if (!image) {
      jo["error"] = image.error();  // names the file
    } else {
      size_t computed = cache.computed();
      auto table = cache.get(*image);
      std::string file = dir + "/" + cache.key_for(*image) + ".fcmeta";
      if (!table) {
        jo["error"] = table.error();
      } else if (!std::filesystem::is_regular_file(file)) {
        jo["error"] = fmt::format("{}: metadata computed but not written to {}", path, file);
      } else {
        jo["metadata"] = file;
        jo["key"] = cache.key_for(*image);
        jo["computed"] = cache.computed() > computed;
      }
    }
    if (jo.contains("error")) {
      fmt::print(stderr, "framecert: {}\n", jo["error"].get<std::string>());
      status = 2;
    }
    out["objects"].push_back(std::move(jo));
  }
  fmt::print("{}\n", out.dump(1));
  return status;
}

}  // namespace

void add_metadata_cache_command(CLI::App& app, int& exit_code) {
  auto args = std::make_shared<MetadataCacheArgs>();
  CLI::App* cmd = app.add_subcommand(
      "metadata-cache", "Fill the metadata cache `walk` uses for these images; print each one's file as JSON");
  cmd->add_option("images", args->images, "ELF images (vmlinux, .ko, executables, shared objects)")->required();
  cmd->add_option("--from", args->from,
                  "IMAGE=OBJECT: compute IMAGE's metadata from OBJECT at IMAGE's link addresses (vmlinux=vmlinux.o)")
      ->allow_extra_args(false);  // one IMAGE=OBJECT per --from: the images that follow are positional
  cmd->add_option("--cache-dir", args->cache_dir,
                  "metadata cache (default ${XDG_CACHE_HOME:-~/.cache}/framecert/metadata)");
  cmd->add_option("--kernel-version", args->kernel_version,
                  "The kernel the images were built for (e.g. 6.12.118): see `check --kernel-version`");
  cmd->callback([args, &exit_code] { exit_code = run_metadata_cache(*args); });
}

}  // namespace framecert::cli

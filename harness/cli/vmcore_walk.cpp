#include "harness/cli/vmcore_walk.h"

#include <filesystem>

#include <fmt/format.h>

#include "harness/cli/guest_report.h"
#include "harness/cli/metadata_producer.h"
#include "harness/cli/trace_json.h"
#include "harness/guest/vmcore.h"
#include "unwinder/elf_image.h"

namespace framecert::cli {

using namespace framecert::guest;

namespace {

// vmlinux's metadata: the file named, else the cache's (computed from vmlinux.o beside vmlinux if missing).
Result<std::shared_ptr<const FrameTable>> vmlinux_metadata(const VmcoreWalkArgs& a, MetadataCache& cache) {
  if (!a.metadata.empty()) {
    auto t = read_frame_table(a.metadata);
    if (!t) return tl::unexpected(t.error());
    return std::make_shared<const FrameTable>(std::move(*t));
  }
  auto image = read_elf_image(a.vmlinux);
  if (!image) return tl::unexpected(image.error());
  return cache.get(*image);
}

}  // namespace

int run_vmcore_walk(const VmcoreWalkArgs& a) {
  auto say = [](const std::string& error) {
    fmt::print(stderr, "framecert walk: {}\n", error);
    return 2;
  };
  if (a.vmlinux.empty()) return say("--vmcore needs --vmlinux (the kernel the dump holds, with its DWARF)");
  auto core = Vmcore::open(a.vmcore);
  if (!core) return say(core.error());
  // The dump's kernel release picks the special-section formats its objects are read with (as --kernel-version).
  const std::optional<KernelFormat> kernel = kernel_format_of_version((*core)->kernel().release);
  std::map<std::string, std::string> linked_from;
  const std::string vmlinux_o = (std::filesystem::path(a.vmlinux).parent_path() / "vmlinux.o").string();
  if (std::filesystem::exists(vmlinux_o)) linked_from[a.vmlinux] = vmlinux_o;
  const MetadataCache::Producer produce = kernel_producer(linked_from, kernel);
  MetadataCache cache(a.cache_dir, producer_tag(kernel), [&](const std::string& path) -> Result<FrameTable> {
    if (path == a.vmlinux && !linked_from.count(path))
      return fail("{}: no metadata: give --metadata FILE, or keep the vmlinux.o it was linked from beside it",
                  a.vmlinux);
    return produce(path);
  });
  auto meta = vmlinux_metadata(a, cache);
  if (!meta) return say(meta.error());
  GuestConfig config;
  config.vmcore = a.vmcore;
  config.opened_vmcore = *core;
  config.vmlinux = a.vmlinux;
  config.metadata_table = *meta;
  config.module_dirs = a.module_dirs;
  config.module_metadata = [&](const std::string& ko) -> Result<FrameTable> {
    auto image = read_elf_image(ko);
    if (!image) return tl::unexpected(image.error());
    auto t = cache.get(*image);
    if (!t) return tl::unexpected(t.error());
    return **t;
  };
  auto walker = GuestWalker::prepare(config);
  if (!walker) return say(walker.error());
  auto rep = (*walker)->walk((*walker)->vmcore()->cpus());
  if (!rep) return say(rep.error());
  if (a.json) {
    nlohmann::json j = guest_report_json(*rep, (*walker)->code());
    j["vmcore"] = {{"file", a.vmcore}, {"format", (*core)->format()}, {"release", (*core)->kernel().release}};
    j["kernel_cr3"] = hex((*walker)->kernel_cr3());
    j["thread_size"] = (*walker)->layout().thread_size;
    fmt::print("{}\n", j.dump());
  } else {
    print_guest_table(*rep, a.frames);
    for (const std::string& w : rep->warnings) fmt::print(stderr, "framecert walk: warning: {}\n", w);
  }
  for (const TaskReport& t : rep->tasks)
    if (!t.unwind.trace.verdict.reliable) return 1;
  return 0;
}

}  // namespace framecert::cli

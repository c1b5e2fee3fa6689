// `framecert check [--json] [--metadata FILE] [--explain] [-j N] OBJECT...`
// Findings go to stderr in objtool's shape; --json writes them to stdout. Exit: 0 clean, 1 findings,
// 2 an object (or the arguments) unusable.
#include <atomic>
#include <cstdio>
#include <filesystem>
#include <optional>
#include <thread>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "harness/cli/commands.h"
#include "harness/cli/metadata_producer.h"
#include "validator/link_addresses.h"
#include "validator/validator.h"

namespace framecert::cli {

namespace {

// The report's schema and version (docs/schemas/check.schema.json; docs/design.md, "Command-line contracts").
constexpr const char* kCheckSchema = "framecert-check/1";

struct CheckArgs {
  std::vector<std::string> objects;
  std::string metadata;
  std::string link_image;  // --link-addresses
  bool json = false;
  bool explain = false;
  unsigned jobs = 1;
  std::string kernel_version;  // --kernel-version
};

// With several objects, --metadata names a directory; each object's file is named after its path.
std::string metadata_path(const CheckArgs& a, const std::string& object) {
  if (a.objects.size() == 1) return a.metadata;
  std::string name = object;
  for (char& c : name)
    if (c == '/') c = '_';
  return (std::filesystem::path(a.metadata) / (name + ".fcmeta")).string();
}

nlohmann::json finding_json(const Finding& f) {
  nlohmann::json j = {{"text", f.text()}, {"message", f.message}, {"function", f.function}, {"section", f.section}};
  if (f.positional) {
    j["offset"] = f.offset;
    j["func_offset"] = f.func_offset;
  }
  if (!f.path.empty()) j["path"] = f.path;
  if (!f.state_seen.empty()) j["state"] = f.state_seen;
  if (!f.state_expected.empty()) j["state_expected"] = f.state_expected;
  return j;
}

int run_check(const CheckArgs& a) {
  if (!a.link_image.empty() && (a.metadata.empty() || a.objects.size() != 1)) {
    fmt::print(stderr, "framecert: --link-addresses needs --metadata and exactly one object\n");
    return 2;
  }
  if (!a.metadata.empty() && a.objects.size() > 1) {
    std::error_code ec;
    std::filesystem::create_directories(a.metadata, ec);
    if (ec) {
      fmt::print(stderr, "framecert: {}: cannot create metadata directory: {}\n", a.metadata, ec.message());
      return 2;
    }
  }
  std::vector<std::optional<Result<ObjectReport>>> results(a.objects.size());
  std::vector<std::string> write_errors(a.objects.size());
  std::atomic<size_t> next{0};
  CheckOptions options;
  auto kernel = kernel_version_option(a.kernel_version);
  if (!kernel) {
    fmt::print(stderr, "framecert: {}\n", kernel.error());
    return 2;
  }
  options.kernel = *kernel;
  options.explain = a.explain || a.json;
  options.want_metadata = !a.metadata.empty();
  // -j N: N objects at once, or one object decoded on N threads; without -j a big object uses every core.
  options.threads = a.jobs > 1 && a.objects.size() > 1 ? 1 : (a.jobs > 1 ? a.jobs : 0);
  auto worker = [&] {
    for (size_t i; (i = next++) < a.objects.size();) {
      results[i] = check_object(a.objects[i], options);
      if (*results[i] && options.want_metadata) {
        if (!a.link_image.empty()) {
          LinkReport link;
          auto placed = place_at_link_addresses((*results[i])->metadata, a.objects[i], a.link_image, &link);
          if (!placed) {
            write_errors[i] = placed.error();
            continue;
          }
          (*results[i])->metadata = std::move(*placed);
          fmt::print(stderr,
                     "framecert: {}: metadata at {}'s addresses: {} functions in {} runs, all verified; {} unplaced\n",
                     a.objects[i], a.link_image, link.functions_placed, link.runs, link.functions_unplaced);
        }
        auto w = write_frame_table((*results[i])->metadata, metadata_path(a, a.objects[i]));
        if (!w) write_errors[i] = w.error();
        (*results[i])->metadata = FrameTable{};  // free it early: kernel-sized tables are large
      }
    }
  };
  unsigned jobs = std::max(1u, std::min<unsigned>(a.jobs, static_cast<unsigned>(a.objects.size())));
  std::vector<std::thread> pool;
  for (unsigned t = 1; t < jobs; ++t) pool.emplace_back(worker);
  worker();
  for (auto& t : pool) t.join();

  int status = 0;
  size_t total = 0, errors = 0;
  nlohmann::json out = {{"schema", kCheckSchema}, {"objects", nlohmann::json::array()}};
  for (size_t i = 0; i < a.objects.size(); ++i) {
    const auto& r = *results[i];
    nlohmann::json jo = {{"object", a.objects[i]}};
    if (!r) {
      fmt::print(stderr, "framecert: {}\n", r.error());
      jo["error"] = r.error();
      ++errors;
      status = 2;
      out["objects"].push_back(jo);
      continue;
    }
    if (!write_errors[i].empty()) {
      fmt::print(stderr, "framecert: {}\n", write_errors[i]);
      jo["error"] = write_errors[i];
      ++errors;
      status = 2;
    }
    jo["findings"] = nlohmann::json::array();
    for (const Finding& f : r->findings) {
      fmt::print(stderr, "{}: warning: framecert: {}\n", a.objects[i], f.text());
      if (a.explain) {
        for (const auto& step : f.path) fmt::print(stderr, "    path: {}\n", step);
        if (!f.state_seen.empty()) fmt::print(stderr, "    state on this path: {}\n", f.state_seen);
        if (!f.state_expected.empty())
          fmt::print(stderr, "    state recorded by an earlier path: {}\n", f.state_expected);
      }
      jo["findings"].push_back(finding_json(f));
    }
    jo["functions"] = r->functions_checked;
    jo["instructions"] = r->instructions;
    total += r->findings.size();
    if (!r->findings.empty() && status == 0) status = 1;
    out["objects"].push_back(jo);
  }
  out["summary"] = {{"objects", a.objects.size()}, {"findings", total}, {"errors", errors}};
  if (a.json) fmt::print("{}\n", out.dump(2));
  return status;
}

}  // namespace

void add_check_command(CLI::App& app, int& exit_code) {
  auto args = std::make_shared<CheckArgs>();
  CLI::App* cmd = app.add_subcommand("check", "Validate the frame-pointer discipline of x86-64 ELF objects");
  cmd->add_option("objects", args->objects, "ELF objects (.o, executables, shared objects, vmlinux)")->required();
  cmd->add_flag("--json", args->json, "Write the findings as JSON on stdout");
  cmd->add_option("--metadata", args->metadata,
                  "Write frame metadata to FILE (with several objects: into directory FILE, one file each)");
  cmd->add_option("--link-addresses", args->link_image,
                  "Address the metadata like linked IMAGE (e.g. check vmlinux.o, address like vmlinux)");
  cmd->add_flag("--explain", args->explain, "Show the path of branches and the states behind each finding");
  cmd->add_option("-j,--jobs", args->jobs,
                  "Check N objects at once (one object: decode and check its code on N threads)")
      ->check(CLI::Range(1u, 256u));
  cmd->add_option("--kernel-version", args->kernel_version,
                  "The kernel the objects were built for (e.g. 6.12.118): its special-section formats, where an "
                  "object does not show them itself");
  cmd->callback([args, &exit_code] { exit_code = run_check(*args); });
}

}  // namespace framecert::cli

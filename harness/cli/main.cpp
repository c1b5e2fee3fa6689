// framecert: certify frame-pointer discipline at build time, and walk stacks reliably at run time.
#include <fmt/format.h>

#include <algorithm>
#include <cstdio>
#include <exception>
#include <string>
#include <string_view>
#include <vector>

#include "harness/cli/commands.h"
#include "version.h"

namespace {

// Edit distance, to name the command a mistyped one was probably meant to be.
size_t distance(std::string_view a, std::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diag = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diag = up;
    }
  }
  return row[b.size()];
}

// The first argument, when it is no option, must be a command: CLI11 alone answers "A subcommand is
// required" without naming the word it did not know.
bool known_command(const CLI::App& app, const char* word) {
  if (word[0] == '-') return true;
  std::string names, closest;
  size_t best = 3;  // suggest only near misses
  for (const CLI::App* sub : app.get_subcommands([](const CLI::App*) { return true; })) {
    if (sub->get_name() == word) return true;
    names += (names.empty() ? "" : ", ") + sub->get_name();
    if (size_t d = distance(word, sub->get_name()); d < best) {
      best = d;
      closest = sub->get_name();
    }
  }
  std::fprintf(stderr, "framecert: unknown command '%s'%s (commands: %s)\n", word,
               closest.empty() ? "" : fmt::format("; did you mean '{}'?", closest).c_str(), names.c_str());
  return false;
}

struct Command {
  const char* name;
  void (*add)(CLI::App&, int&);
};
constexpr Command kCommands[] = {
    {"check", framecert::cli::add_check_command},
    {"dump", framecert::cli::add_dump_command},
    {"walk", framecert::cli::add_walk_command},
    {"guest-walk", framecert::cli::add_guest_walk_command},
    {"guest-cfi", framecert::cli::add_guest_cfi_command},
    {"metadata-cache", framecert::cli::add_metadata_cache_command},
};

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"framecert: frame-pointer discipline validator and reliable stack unwinder"};
  app.require_subcommand(1);
  app.set_version_flag("--version", fmt::format("framecert {} (commit {})", FRAMECERT_VERSION, FRAMECERT_COMMIT));
  int exit_code = 0;
  // Only the command named is set up: CLI11 builds every option of every command it is given, and Kbuild
  // starts one `framecert check` per object. Help, --version and unknown words get them all.
  const Command* named = nullptr;
  for (const Command& c : kCommands)
    if (argc > 1 && std::string_view(argv[1]) == c.name) named = &c;
  for (const Command& c : kCommands)
    if (!named || named == &c) {
      c.add(app, exit_code);
      if (app.get_subcommands([&](const CLI::App* sub) { return sub->get_name() == c.name; }).size() != 1) {
        std::fprintf(stderr, "framecert: internal error: command '%s' is not set up under its name\n", c.name);
        return 2;
      }
    }
  if (argc > 1 && !known_command(app, argv[1])) return 2;
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? 0 : 2;  // usage errors are "unusable arguments"
  } catch (const std::exception& e) {
    std::fprintf(stderr, "framecert: %s\n", e.what());
    return 2;
  }
  return exit_code;
}

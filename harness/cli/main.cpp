// framecert: certify frame-pointer discipline at build time, and walk stacks reliably at run time.
#include <cstdio>
#include <exception>

#include "harness/cli/commands.h"

int main(int argc, char** argv) {
  CLI::App app{"framecert: frame-pointer discipline validator and reliable stack unwinder"};
  app.require_subcommand(1);
  int exit_code = 0;
  framecert::cli::add_check_command(app, exit_code);
  framecert::cli::add_dump_command(app, exit_code);
  framecert::cli::add_walk_command(app, exit_code);
  framecert::cli::add_guest_walk_command(app, exit_code);
  framecert::cli::add_guest_cfi_command(app, exit_code);
  framecert::cli::add_metadata_cache_command(app, exit_code);
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

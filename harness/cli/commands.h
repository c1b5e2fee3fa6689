// The subcommands of the `framecert` binary. Each registers itself on the CLI11 app and, when chosen,
// stores its exit status (0 clean, 1 findings / unreliable, 2 unusable input) in `exit_code`.
#pragma once

#include <CLI/CLI.hpp>

namespace framecert::cli {

void add_check_command(CLI::App& app, int& exit_code);           // validate objects, write metadata
void add_dump_command(CLI::App& app, int& exit_code);            // print a metadata file as text
void add_walk_command(CLI::App& app, int& exit_code);            // walk a live process's threads
void add_guest_walk_command(CLI::App& app, int& exit_code);      // walk every task of a frozen guest
void add_guest_cfi_command(CLI::App& app, int& exit_code);       // the CFI oracle over a frozen guest
void add_metadata_cache_command(CLI::App& app, int& exit_code);  // fill the metadata cache for some images

}  // namespace framecert::cli

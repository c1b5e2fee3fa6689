// A program outside the framecert tree, built against an installed unwinder library (pkg-config or the
// CMake package): reads a metadata file written by `framecert check --metadata` and an ELF image, which
// pulls in the format reader (zlib's CRC), libelf and fmt. Prints one line the test compares.
#include <cstdio>

#include "unwinder/elf_image.h"
#include "unwinder/frame_table.h"

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: uses_unwinder METADATA ELF\n");
    return 2;
  }
  auto table = framecert::read_frame_table(argv[1]);
  if (!table) {
    std::fprintf(stderr, "uses_unwinder: %s\n", table.error().c_str());
    return 1;
  }
  auto image = framecert::read_elf_image(argv[2]);
  if (!image) {
    std::fprintf(stderr, "uses_unwinder: %s\n", image.error().c_str());
    return 1;
  }
  std::printf("%zu functions, build-id %s, image build-id %s\n", table->functions.size(), table->build_id.c_str(),
              image->build_id.c_str());
  return 0;
}

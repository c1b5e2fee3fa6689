// libFuzzer target: arbitrary bytes as an ELF object -> check_object() (libelf loading, Zydis decoding,
// path following, metadata building). An error value is a fine outcome; a crash, hang, sanitizer report or
// leaked descriptor is not. The bytes go to a memfd, so nothing is left on disk.
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <string>

#include "validator/validator.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  int fd = memfd_create("fuzz_elf_check", MFD_CLOEXEC);
  if (fd < 0) std::abort();
  size_t done = 0;
  while (done < size) {
    ssize_t n = ::write(fd, data + done, size - done);
    if (n <= 0) std::abort();
    done += static_cast<size_t>(n);
  }
  const std::string path = "/proc/self/fd/" + std::to_string(fd);
  for (bool metadata : {true, false}) {
    framecert::CheckOptions options;
    options.want_metadata = metadata;
    options.explain = metadata;  // both paths of the explain bookkeeping, one run each
    auto report = framecert::check_object(path, options);
    if (report && metadata) {
      // The built metadata must survive its own format.
      auto bytes = framecert::serialize_frame_table(report->metadata);
      auto back = framecert::parse_frame_table(bytes);
      if (!back || !(*back == report->metadata)) std::abort();
    }
  }
  // check_object must not keep a descriptor open: `fd` was the lowest free one, so the next free one must
  // still be fd + 1.
  int probe = ::dup(fd);
  if (probe != fd + 1) std::abort();
  ::close(probe);
  ::close(fd);
  return 0;
}

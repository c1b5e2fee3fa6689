// libFuzzer target: the guest-memory backend (unwinder/memory_guest.*) — arbitrary bytes as guest RAM, a
// CR3 and virtual addresses -> translate() and GuestVirtualMemory::read(). Must never crash, hang or read
// outside the RAM. The RAM is read twice: from a file (map_file, the real path; a memfd, nothing on disk)
// and from an exact-size heap copy (from_bytes), where AddressSanitizer sees any read past the end. Every
// byte a virtual read returns is checked against a translation of its own address.
//
// Input layout (little-endian): u64 cr3, u8 count (% 9), count x (u64 va, u8 len), the rest is the RAM.
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "tests/fuzz/fuzz_input.h"
#include "unwinder/memory_guest.h"

namespace {

using namespace framecert;

using fuzz::Reader;

[[noreturn]] void violated(const char* what, uint64_t va) {
  std::fprintf(stderr, "INVARIANT: %s at va %#llx\n", what, static_cast<unsigned long long>(va));
  std::abort();
}

void check(const GuestRam& ram, const std::vector<uint8_t>& bytes, uint64_t cr3, uint64_t va, size_t len) {
  TranslationFault fault{};
  auto pa = translate(ram, cr3, GuestVirt(va), &fault);
  if (!pa) (void)fault.describe();
  GuestVirtualMemory mem(ram, cr3);
  std::vector<uint8_t> buf(len);
  size_t n = mem.read(RemoteAddr(va), buf.data(), len);
  if (n > len) violated("read more than asked", va);
  for (size_t i = 0; i < n; ++i) {
    auto at = translate(ram, cr3, GuestVirt(va + i));
    if (!at) violated("read a byte whose address does not translate", va + i);
    if (at->value >= bytes.size()) violated("read a byte outside the RAM", va + i);
    if (bytes[at->value] != buf[i]) violated("read a byte that differs from the RAM", va + i);
  }
  if (n < len) {
    auto at = translate(ram, cr3, GuestVirt(va + n));
    if (at && at->value < bytes.size()) violated("stopped at a readable byte", va + n);
  }
  // The typed helper and a second read through the (now warm) one-entry cache must agree.
  auto word = mem.read_u64(RemoteAddr(va));
  if (word && n >= 8 && std::memcmp(&*word, buf.data(), 8) != 0) violated("cached read differs", va);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Reader in{data, size};
  const uint64_t cr3 = in.u64();
  const size_t count = in.u8() % 9;
  std::vector<std::pair<uint64_t, size_t>> reads;
  for (size_t i = 0; i < count; ++i) {
    uint64_t va = in.u64();
    reads.emplace_back(va, in.u8() % 65);
  }
  std::vector<uint8_t> bytes(in.p, in.p + in.n);  // exact size: ASan flags any read past it

  GuestRam heap = GuestRam::from_bytes(bytes);
  for (auto [va, len] : reads) check(heap, bytes, cr3, va, len);

  int fd = memfd_create("fuzz_guest_ram", MFD_CLOEXEC);
  if (fd < 0) std::abort();
  if (!bytes.empty() && ::write(fd, bytes.data(), bytes.size()) != static_cast<ssize_t>(bytes.size())) std::abort();
  {
    auto mapped = GuestRam::map_file("/proc/self/fd/" + std::to_string(fd));
    if (bytes.empty() != !mapped) std::abort();  // only an empty file is refused
    if (mapped) {
      if (mapped->size() != bytes.size()) std::abort();
      for (auto [va, len] : reads) check(*mapped, bytes, cr3, va, len);
    }
  }
  ::close(fd);
  return 0;
}

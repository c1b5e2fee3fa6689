// Memory sources: the fake, the page cache, a live process (ourselves), and guest RAM translated through
// synthetic x86-64 page tables written to a temporary file.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <vector>

#include "unwinder/memory_fake.h"
#include "unwinder/memory_guest.h"
#include "unwinder/memory_ptrace.h"
#include "unwinder/proc_maps.h"
#include "unwinder/stack_bounds.h"
#include "unwinder/symbolizer.h"

namespace framecert {
namespace {

TEST(FakeMemory, ShortReadEndsAtTheFault) {
  FakeMemory m;
  m.map(0x1000, 0x10);
  m.write_u64(0x1008, 0x1122334455667788);
  uint8_t buf[32];
  EXPECT_EQ(m.read(RemoteAddr(0x1008), buf, 32), 8u);
  auto v = m.read_u64(RemoteAddr(0x100c));
  ASSERT_FALSE(v);
  EXPECT_EQ(v.error().address.value, 0x1010u);
  EXPECT_EQ(*m.read_u64(RemoteAddr(0x1008)), 0x1122334455667788u);
}

TEST(CachedMemory, MatchesBackingAndStopsAtFaults) {
  FakeMemory m;
  m.map(0x10000, 0x3000);
  for (uint64_t a = 0x10000; a < 0x13000; a += 8) m.write_u64(a, a * 3);
  CachedMemory c(m);
  for (uint64_t a = 0x10000; a < 0x13000; a += 8) ASSERT_EQ(*c.read_u64(RemoteAddr(a)), a * 3);
  EXPECT_EQ(c.backing_reads(), 3u);
  uint8_t buf[0x100];
  EXPECT_EQ(c.read(RemoteAddr(0x12f80), buf, sizeof buf), 0x80u);
  EXPECT_FALSE(c.read_u64(RemoteAddr(0x13000)));
}

TEST(ProcessMemory, ReadsOwnMemoryAndReportsFaults) {
  static const uint64_t value = 0xfeedfacecafebeefull;
  ProcessMemory pm(getpid());
  auto v = pm.read_u64(RemoteAddr(reinterpret_cast<uint64_t>(&value)));
  ASSERT_TRUE(v);
  EXPECT_EQ(*v, value);
  EXPECT_FALSE(pm.read_u64(RemoteAddr(8)));
}

TEST(ProcMaps, ParsesAndFindsStack) {
  auto maps = parse_maps(
      "00400000-00401000 r-xp 00000000 08:01 123 /bin/x\n"
      "7ffd0000-7ffe0000 rw-p 00000000 00:00 0                          [stack]\n"
      "7f0000000000-7f0000001000 rw-p 00000000 00:00 0 \n");
  ASSERT_TRUE(maps);
  ASSERT_EQ(maps->size(), 3u);
  EXPECT_EQ((*maps)[0].path, "/bin/x");
  EXPECT_TRUE((*maps)[0].executable);
  EXPECT_EQ((*maps)[1].path, "[stack]");
  auto b = stack_bounds_for(*maps, 0x7ffd8000);
  ASSERT_TRUE(b);
  EXPECT_EQ(b->low, 0x7ffd0000u);
  EXPECT_EQ(b->high, 0x7ffe0000u);
  EXPECT_FALSE(stack_bounds_for(*maps, 0x400100));  // code is never a stack
  auto self = read_maps(getpid());
  ASSERT_TRUE(self);
  int local = 0;
  EXPECT_TRUE(stack_bounds_for(*self, reinterpret_cast<uint64_t>(&local)));
}

TEST(SymbolTable, SizedUnsizedAndAliases) {
  SymbolTable t({{0x1000, 0x10, "f"}, {0x1000, 0x10, "f.alias"}, {0x1020, 0, "label"}, {0x1040, 8, "g"}});
  EXPECT_EQ(t.lookup(0x1005)->name, "f");
  EXPECT_EQ(t.lookup(0x1010), nullptr);  // past f's size, before label
  EXPECT_EQ(t.lookup(0x1030)->name, "label");
  EXPECT_EQ(t.lookup(0x1047)->name, "g");
  EXPECT_EQ(t.lookup(0x1048), nullptr);
  EXPECT_EQ(t.lookup(0x10), nullptr);
}

// Builds page tables in a RAM image: tables are allocated from 0x1000 up, data pages from 0x100000.
class PageTables {
 public:
  explicit PageTables(size_t ram_size) : ram(ram_size, 0) {}
  uint64_t cr3 = 0x1000;

  void map4k(uint64_t va, uint64_t pa) { set(walk(va, 1), (va >> 12) & 0x1ff, pa | 3); }
  void map2m(uint64_t va, uint64_t pa) { set(walk(va, 2), (va >> 21) & 0x1ff, pa | 0x83); }
  void map1g(uint64_t va, uint64_t pa) { set(walk(va, 3), (va >> 30) & 0x1ff, pa | 0x83); }
  void put_u64(uint64_t pa, uint64_t v) { std::memcpy(ram.data() + pa, &v, 8); }

  std::vector<uint8_t> ram;

 private:
  uint64_t next_table_ = 0x2000;
  uint64_t get(uint64_t table, uint64_t i) {
    uint64_t v;
    std::memcpy(&v, ram.data() + table + i * 8, 8);
    return v;
  }
  void set(uint64_t table, uint64_t i, uint64_t v) { std::memcpy(ram.data() + table + i * 8, &v, 8); }
  // The table at `level` (1 = PT) for va, creating intermediate tables.
  uint64_t walk(uint64_t va, int level) {
    uint64_t table = cr3;
    for (int l = 4; l > level; --l) {
      uint64_t i = (va >> (12 + 9 * (l - 1))) & 0x1ff;
      uint64_t e = get(table, i);
      if (!(e & 1)) {
        e = next_table_ | 3;
        next_table_ += 0x1000;
        set(table, i, e);
      }
      table = e & 0x000ffffffffff000ull;
    }
    return table;
  }
};

TEST(GuestMemory, FourLevelTranslationWithLargePages) {
  PageTables pt(8 << 20);
  const uint64_t stack_va = 0xffffc90000004000ull;  // vmalloc'd stack, 4K pages
  pt.map4k(stack_va, 0x100000);
  pt.map4k(stack_va + 0x1000, 0x105000);      // physically discontiguous
  pt.map2m(0xffffffff81000000ull, 0x200000);  // kernel text, 2M page
  pt.map1g(0xffff888000000000ull, 0x0);       // direct map, 1G page
  pt.put_u64(0x100ff8, 0x1111);
  pt.put_u64(0x105000, 0x2222);
  pt.put_u64(0x200000 + 0x1234 * 8, 0x3333);

  // Through a real file, mapped read-only, as the harness does with QEMU's RAM.
  char path[] = "/tmp/framecert-guestram-XXXXXX";
  int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(write(fd, pt.ram.data(), pt.ram.size()), static_cast<ssize_t>(pt.ram.size()));
  close(fd);
  auto ram = GuestRam::map_file(path);
  unlink(path);
  ASSERT_TRUE(ram) << ram.error();

  auto pa = translate(*ram, pt.cr3 | 0x5 /* PCID bits are not address */, GuestVirt(stack_va + 0xff8));
  ASSERT_TRUE(pa) << pa.error();
  EXPECT_EQ(pa->value, 0x100ff8u);
  EXPECT_EQ(translate(*ram, pt.cr3, GuestVirt(0xffffffff81000000ull + 0x1234 * 8))->value, 0x200000u + 0x1234 * 8);
  EXPECT_EQ(translate(*ram, pt.cr3, GuestVirt(0xffff888000123456ull))->value, 0x123456u);

  GuestVirtualMemory vm(*ram, pt.cr3);
  EXPECT_EQ(*vm.read_u64(RemoteAddr(stack_va + 0xff8)), 0x1111u);
  EXPECT_EQ(*vm.read_u64(RemoteAddr(stack_va + 0x1000)), 0x2222u);
  // A read straddling the two discontiguous pages.
  uint8_t buf[16];
  ASSERT_EQ(vm.read(RemoteAddr(stack_va + 0xff8), buf, 16), 16u);
  uint64_t lo, hi;
  std::memcpy(&lo, buf, 8);
  std::memcpy(&hi, buf + 8, 8);
  EXPECT_EQ(lo, 0x1111u);
  EXPECT_EQ(hi, 0x2222u);
  // Not present: the page after, and the read stops exactly at its first byte.
  EXPECT_EQ(vm.read(RemoteAddr(stack_va + 0x1ff8), buf, 16), 8u);
  auto f = vm.read_u64(RemoteAddr(stack_va + 0x2000));
  ASSERT_FALSE(f);
  EXPECT_EQ(f.error().address.value, stack_va + 0x2000);
  TranslationFault why{};
  EXPECT_FALSE(translate(*ram, pt.cr3, GuestVirt(stack_va + 0x2000), &why));
  EXPECT_EQ(why.kind, TranslationFault::NotPresent);
  EXPECT_EQ(why.level, 1);
  EXPECT_FALSE(translate(*ram, pt.cr3, GuestVirt(0x0000900000000000ull), &why));
  EXPECT_EQ(why.kind, TranslationFault::NonCanonical);
  EXPECT_FALSE(translate(*ram, pt.cr3, GuestVirt(0x00007f0000000000ull), &why));
  EXPECT_EQ(why.kind, TranslationFault::NotPresent);
  EXPECT_EQ(why.level, 4);
  // A table pointer outside RAM is a fault, not a crash.
  pt.map4k(0xffffc90000100000ull, 0x100000);
  pt.put_u64(pt.cr3 + ((0xffffc90000100000ull >> 39) & 0x1ff) * 8, 0x7fff0000003ull);
  GuestRam direct = GuestRam::from_bytes(pt.ram);
  EXPECT_FALSE(translate(direct, pt.cr3, GuestVirt(0xffffc90000100000ull), &why));
  EXPECT_EQ(why.kind, TranslationFault::TableOutsideRam);
}

// A RAM file truncated under the walker's mapping (the guest gone, someone's cleanup) must read as missing
// memory, not kill the process with SIGBUS, and check_intact() must say what happened.
TEST(GuestMemory, TruncatedRamFileReadsAsMissingNotSigbus) {
  char path[] = "/tmp/framecert-ram-XXXXXX";
  int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  std::vector<uint8_t> page(4 * 4096, 0xab);
  ASSERT_EQ(write(fd, page.data(), page.size()), static_cast<ssize_t>(page.size()));
  auto ram = GuestRam::map_file(path);
  ASSERT_TRUE(ram) << ram.error();
  ASSERT_EQ(ram->read_u64(GuestPhys(3 * 4096)), std::optional<uint64_t>(0xababababababababull));
  EXPECT_TRUE(ram->check_intact());
  ASSERT_EQ(ftruncate(fd, 4096), 0);
  EXPECT_EQ(ram->read_u64(GuestPhys(0)), std::optional<uint64_t>(0xababababababababull));
  EXPECT_EQ(ram->read_u64(GuestPhys(3 * 4096)), std::nullopt);  // past the new end: SIGBUS, caught
  uint8_t buf[64];
  EXPECT_EQ(ram->read(GuestPhys(2 * 4096 + 8), buf, sizeof buf), 0u);
  auto intact = ram->check_intact();
  ASSERT_FALSE(intact);
  EXPECT_NE(intact.error().find("shrank from 16384 to 4096 bytes"), std::string::npos) << intact.error();
  close(fd);
  unlink(path);
}

}  // namespace
}  // namespace framecert

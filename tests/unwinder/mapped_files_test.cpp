// What the process side knows about a mapped file before trusting it: the device and inode of each maps
// line, build-ids from note data, and metadata cache keys that name the file read, not its path.
#include <gtest/gtest.h>

#include <cstring>

#include "unwinder/elf_image.h"
#include "unwinder/metadata_cache.h"
#include "unwinder/proc_maps.h"

namespace framecert {
namespace {

TEST(MappedFiles, MapsLinesCarryDeviceAndInode) {
  auto maps = parse_maps(
      "00400000-00401000 r-xp 00000000 fe:01 5309255                    /usr/bin/x\n"
      "7f0000000000-7f0000001000 rw-p 00000000 00:00 0 \n"
      "7f0000002000-7f0000003000 r-xp 00002000 103:0a 18446744073709551615 /lib/y (deleted)\n");
  ASSERT_TRUE(maps) << maps.error();
  ASSERT_EQ(maps->size(), 3u);
  EXPECT_EQ((*maps)[0].dev_major, 0xfeu);
  EXPECT_EQ((*maps)[0].dev_minor, 1u);
  EXPECT_EQ((*maps)[0].inode, 5309255u);
  EXPECT_EQ((*maps)[0].path, "/usr/bin/x");
  EXPECT_EQ((*maps)[1].inode, 0u);
  EXPECT_EQ((*maps)[1].path, "");
  EXPECT_EQ((*maps)[2].dev_major, 0x103u);
  EXPECT_EQ((*maps)[2].dev_minor, 0xau);
  EXPECT_EQ((*maps)[2].inode, 18446744073709551615ull);
  EXPECT_EQ((*maps)[2].path, "/lib/y (deleted)");
}

TEST(MappedFiles, BuildIdFromNotes) {
  // An unrelated note first, then NT_GNU_BUILD_ID "GNU" with 4 bytes.
  std::vector<uint8_t> notes;
  auto put32 = [&](uint32_t v) {
    uint8_t b[4];
    std::memcpy(b, &v, 4);
    notes.insert(notes.end(), b, b + 4);
  };
  put32(5), put32(4), put32(1);
  for (char c : std::string("Linux\0\0\0", 8)) notes.push_back(static_cast<uint8_t>(c));
  notes.insert(notes.end(), {1, 2, 3, 4});
  put32(4), put32(4), put32(3);
  for (char c : std::string("GNU\0", 4)) notes.push_back(static_cast<uint8_t>(c));
  notes.insert(notes.end(), {0xde, 0xad, 0xbe, 0xef});
  EXPECT_EQ(build_id_from_notes(notes.data(), notes.size()), "deadbeef");
  EXPECT_EQ(build_id_from_notes(notes.data(), notes.size() - 1), "");  // truncated: nothing
  EXPECT_EQ(build_id_from_notes(notes.data(), 20), "");                // only the first note
}

TEST(MappedFiles, CacheKeysNameTheFileReadNotThePath) {
  MetadataCache cache("/nonexistent", "t", [](const std::string&) -> Result<FrameTable> { return fail("unused"); });
  ElfImage a;
  a.path = "/usr/bin/x";
  a.dev = 0xfe01;
  a.inode = 1;
  a.size = 100;
  a.mtime_ns = 5;
  ElfImage b = a;
  b.inode = 2;  // the same path in another mount namespace: another file
  EXPECT_NE(cache.key_for(a), cache.key_for(b));
  ElfImage c = a;
  c.path = "/elsewhere/x";  // the same file under another name
  EXPECT_EQ(cache.key_for(a), cache.key_for(c));
  a.build_id = b.build_id = "abcd";  // a build-id names the contents, wherever they are
  EXPECT_EQ(cache.key_for(a), cache.key_for(b));
}

}  // namespace
}  // namespace framecert

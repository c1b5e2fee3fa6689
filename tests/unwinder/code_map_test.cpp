// CodeMap's ownership rule: an address belongs to the one image whose range holds it; where two images
// claim the same code (a module's freed .init.text where another module now lives) it belongs to none, so no
// metadata is trusted there. Expected values are the hand-written ranges below.
#include <gtest/gtest.h>

#include "unwinder/code_map.h"

namespace framecert {
namespace {

CodeImage image(const char* path, uint64_t start, uint64_t end) {
  CodeImage i;
  i.path = path;
  i.start = start;
  i.end = end;
  return i;
}

const char* owner(const CodeMap& map, uint64_t address) {
  const CodeImage* i = map.find(address);
  return i ? i->path.c_str() : "none";
}

TEST(CodeMap, DisjointImagesOwnTheirRanges) {
  CodeMap map;
  map.add(image("b", 0x2000, 0x3000));
  map.add(image("a", 0x1000, 0x2000));
  EXPECT_STREQ(owner(map, 0x0fff), "none");
  EXPECT_STREQ(owner(map, 0x1000), "a");
  EXPECT_STREQ(owner(map, 0x1fff), "a");
  EXPECT_STREQ(owner(map, 0x2000), "b");
  EXPECT_STREQ(owner(map, 0x3000), "none");
}

TEST(CodeMap, CodeTwoImagesClaimIsNobodys) {
  CodeMap map;
  map.add(image("fcregress.ko", 0x5000, 0x6000));
  map.add(image("fctest.ko .init.text (freed)", 0x5000, 0x5800));
  EXPECT_STREQ(owner(map, 0x5000), "none");
  EXPECT_STREQ(owner(map, 0x57ff), "none");
  EXPECT_STREQ(owner(map, 0x5800), "fcregress.ko");  // past the stale range: the one claim left
  EXPECT_STREQ(owner(map, 0x5fff), "fcregress.ko");
}

TEST(CodeMap, AnImageInsideAnotherLeavesTheRestToTheOuterOne) {
  CodeMap map;
  map.add(image("outer", 0x1000, 0x9000));
  map.add(image("inner", 0x3000, 0x4000));
  EXPECT_STREQ(owner(map, 0x2000), "outer");
  EXPECT_STREQ(owner(map, 0x3800), "none");
  EXPECT_STREQ(owner(map, 0x5000), "outer");  // after the inner image's end: found past it
}

}  // namespace
}  // namespace framecert

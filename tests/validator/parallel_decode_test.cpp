// One object decoded and checked on several threads gives the report and metadata one thread gives, byte for
// byte: objects assembled here with more code than the threshold for splitting a section, including the cases
// where a split cannot be trusted (a function symbol inside an instruction, bytes that decode to nothing), and
// functions of the two halves the checker runs at once that reach the same code. The expected values are the
// single-threaded run's, never the code under test's threads.
#include <elf.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include <fmt/format.h>

#include "unwinder/frame_table.h"
#include "validator/elf_file.h"
#include "validator/validator.h"

namespace framecert {
namespace {

namespace fs = std::filesystem;

class ParallelDecodeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/framecert-pdecode-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string assemble(const std::string& name, const std::string& source) {
    const fs::path s = dir_ / (name + ".s"), o = dir_ / (name + ".o");
    std::ofstream(s) << source;
    EXPECT_EQ(std::system(fmt::format("as -o '{}' '{}'", o.string(), s.string()).c_str()), 0);
    return o.string();
  }

  // Findings as text and the metadata file's bytes.
  std::string report(const std::string& object, unsigned threads) {
    CheckOptions options;
    options.threads = threads;
    auto r = check_object(object, options);
    if (!r) return "error: " + r.error();
    std::string out = fmt::format("{} instructions, {} functions\n", r->instructions, r->functions_checked);
    for (const Finding& f : r->findings) out += f.text() + "\n";
    const std::string meta = (dir_ / fmt::format("meta-{}", threads)).string();
    EXPECT_TRUE(write_frame_table(r->metadata, meta));
    std::ifstream in(meta, std::ios::binary);
    return out + std::string(std::istreambuf_iterator<char>(in), {});
  }

  void expect_same_on_any_thread_count(const std::string& object) {
    const std::string one = report(object, 1);
    ASSERT_EQ(one.rfind("error", 0), std::string::npos) << one;
    for (unsigned threads : {2u, 3u, 8u}) EXPECT_EQ(report(object, threads), one) << threads << " threads";
  }

  fs::path dir_;
};

// Many functions of varied code (frames, calls, a frameless call that is a finding, jumps, data-free
// padding): well over the 256 KiB from which a section is split.
std::string many_functions(int count, const std::string& middle = "") {
  std::ostringstream s;
  s << ".text\n";
  for (int i = 0; i < count; ++i) {
    if (i == count / 2) s << middle;
    s << fmt::format(".globl f{0}\n.type f{0},@function\nf{0}:\n", i);
    if (i % 7 == 3) {
      s << "  call g\n  ret\n";  // a call without a frame: a finding
    } else {
      s << "  push %rbp\n  mov %rsp,%rbp\n  sub $0x20,%rsp\n  mov %rdi,-8(%rbp)\n  test %rdi,%rdi\n"
           "  je 1f\n  movabs $0x1122334455667788,%rax\n  call g\n1:\n  lea 0x10(%rsi,%rdi,4),%rcx\n"
           "  nopw 0x0(%rax,%rax,1)\n  leave\n  ret\n";
    }
    s << fmt::format(".size f{0},.-f{0}\n", i);
  }
  return s.str();
}

TEST_F(ParallelDecodeTest, SplitSectionsDecodeAsOne) {
  expect_same_on_any_thread_count(assemble("many", many_functions(9000)));
}

// f0: `pad` nops; then `middle` (its own function symbols); then f1: `tail` nops. Sizes chosen by the tests
// so that the first function start at or past the section's half (where a 2-thread count splits it) is the
// one they name.
std::string halves(int pad, const std::string& middle, int tail) {
  return fmt::format(
      ".text\n.globl f0\n.type f0,@function\nf0:\n.fill {0},1,0x90\nret\n.size f0,.-f0\n{1}"
      ".globl f1\n.type f1,@function\nf1:\n.fill {2},1,0x90\nret\n.size f1,.-f1\n",
      pad, middle, tail);
}

// The first function symbol at or past the half of .text: where plan_decode splits it for two threads.
std::string split_symbol(const std::string& object) {
  auto elf = ElfFile::open(object);
  if (!elf) return elf.error();
  const ElfSection* text = (*elf)->section_by_name(".text");
  std::string best;
  uint64_t best_offset = UINT64_MAX;
  for (const ElfSymbol& s : (*elf)->symbols())
    if (s.type == STT_FUNC && s.section == text->index && s.offset >= text->bytes.size() / 2 &&
        s.offset < best_offset) {
      best_offset = s.offset;
      best = std::string(s.name);
    }
  return best;
}

TEST_F(ParallelDecodeTest, ASymbolInsideAnInstructionIsNoSplitPoint) {
  // `inside` starts on the immediate of outer's movabs (outer + 6): a count started there finds other
  // instructions than the linear decode does, so the part after it must be counted again from where the part
  // before really ended.
  const std::string middle =
      ".globl outer\n.type outer,@function\nouter:\n  push %rbp\n  mov %rsp,%rbp\n"
      "  movabs $0x9090909090909090,%rax\n  pop %rbp\n  ret\n.size outer,.-outer\n"
      ".globl inside\n.type inside,@function\n.set inside, outer + 6\n.size inside, 4\n";
  const std::string object = assemble("inside", halves(204800, middle, 204790));
  ASSERT_EQ(split_symbol(object), "inside");
  expect_same_on_any_thread_count(object);
}

TEST_F(ParallelDecodeTest, UndecodableBytesEndTheSectionAsInALinearDecode) {
  // 0x06 (push %es) does not exist in 64-bit mode: the linear decode stops there, with objtool's fatal
  // finding, and decodes nothing after it, however the section was split (here at f1, past the bad byte).
  const std::string middle = ".globl bad\n.type bad,@function\nbad:\n.byte 0x06\nret\n.size bad,.-bad\n";
  const std::string object = assemble("bad", halves(204800, middle, 204800));
  ASSERT_EQ(split_symbol(object), "f1");
  const std::string one = report(object, 1);
  EXPECT_NE(one.find("can't decode instruction"), std::string::npos) << one.substr(0, 400);
  for (unsigned threads : {2u, 8u}) EXPECT_EQ(report(object, threads), one) << threads << " threads";
}

TEST_F(ParallelDecodeTest, FunctionsOfBothHalvesReachingOneCodeAreCheckedAsInOneThread) {
  // f0 (first half) and f2 (second half) both jump to `shared`, code outside every function symbol, with
  // different stacks. One thread checks f0 first and reports f2's arrival as a stack state mismatch; the
  // second half checked alone would instead follow f2's own stack into `shared` and find something else. The
  // rbp flow meets there too: f0 brings its frame, f2 the caller's rbp; the metadata says what both bring.
  const std::string object =
      assemble("shared",
               ".text\n.globl f0\n.type f0,@function\nf0:\n  push %rbp\n  mov %rsp,%rbp\n  jmp shared\n.size f0,.-f0\n"
               ".globl f1\n.type f1,@function\nf1:\n.fill 100,1,0x90\n  ret\n.size f1,.-f1\n"
               ".globl f2\n.type f2,@function\nf2:\n  jmp shared\n.size f2,.-f2\nshared:\n  pop %rbp\n  ret\n");
  const std::string one = report(object, 1);
  EXPECT_NE(one.find(".text+0x6d: stack state mismatch"), std::string::npos) << one.substr(0, 400);
  for (unsigned threads : {2u, 8u}) EXPECT_EQ(report(object, threads), one) << threads << " threads";
}

}  // namespace
}  // namespace framecert

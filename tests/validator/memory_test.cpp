// The validator's memory bound on large inputs (issue 13; docs/design.md, "Memory"): at most
// kBytesPerInstruction bytes of peak resident memory per instruction beyond the process's own baseline,
// measured by /usr/bin/time on objects this test assembles; and the refusals that keep a
// too-large object from ending in the OOM killer. Label `slow` (normal build only): under AddressSanitizer
// memory is not the validator's, and its shadow mappings cannot run under an address-space limit.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <elf.h>
#include <algorithm>
#include <array>
#include <cctype>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include <fmt/format.h>

#include "validator/memory_budget.h"

namespace {

namespace fs = std::filesystem;

struct CheckRun {
  int status = -1;
  long max_rss_kb = 0;
  std::string err;
};

std::string slurp(const fs::path& p) {
  std::ifstream in(p);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// framecert check FILE, its exit status, its peak resident memory and its stderr. The peak comes from
// /usr/bin/time: a child forked from this test would carry the test's own pages into its high-water mark
// (the kernel keeps it across exec).
CheckRun check(const std::string& file, const std::string& limit_as = "") {
  const fs::path err = fs::temp_directory_path() / fmt::format("framecert-mem-{}.err", getpid());
  const fs::path rss = fs::temp_directory_path() / fmt::format("framecert-mem-{}.rss", getpid());
  const std::string cmd = fmt::format("{}exec /usr/bin/time -o '{}' -f %M '{}' check '{}' >/dev/null 2>'{}'",
                                      limit_as.empty() ? "" : "ulimit -v " + limit_as + "; ", rss.string(),
                                      FRAMECERT_BIN, file, err.string());
  CheckRun r;
  const int st = std::system(cmd.c_str());
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  // The last line is the peak in kB ("Command exited with non-zero status N" comes first when it failed).
  std::istringstream lines(slurp(rss));
  for (std::string line; std::getline(lines, line);)
    if (!line.empty() && std::isdigit(static_cast<unsigned char>(line[0]))) r.max_rss_kb = std::stol(line);
  r.err = slurp(err);
  fs::remove(err);
  fs::remove(rss);
  return r;
}

class Objects : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / fmt::format("framecert-mem-{}", getpid());
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  // An object assembled from `source` (one function `big` around it).
  std::string assemble(const std::string& name, const std::string& body) {
    const fs::path s = dir_ / (name + ".s"), o = dir_ / (name + ".o");
    std::ofstream(s) << ".text\n.globl big\n.type big,@function\nbig:\n" << body << "ret\n.size big,.-big\n";
    EXPECT_EQ(std::system(fmt::format("as -o '{}' '{}'", o.string(), s.string()).c_str()), 0);
    return o.string();
  }

  // An object whose .text is `bytes` zero bytes (each pair decodes as `add %al,(%rax)`), no symbols.
  std::string zeros(const std::string& name, uint64_t bytes) {
    const fs::path bin = dir_ / (name + ".bin"), o = dir_ / (name + ".o");
    { std::ofstream(bin, std::ios::binary); }
    fs::resize_file(bin, bytes);  // sparse
    EXPECT_EQ(std::system(fmt::format("objcopy -I binary -O elf64-x86-64 --rename-section "
                                      ".data=.text,alloc,load,readonly,code,contents '{}' '{}'",
                                      bin.string(), o.string())
                              .c_str()),
              0);
    fs::remove(bin);
    return o.string();
  }

  fs::path dir_;
};

// Peak resident memory per instruction beyond a tiny object's check (the binary, its libraries).
double bytes_per_instruction(const CheckRun& big, const CheckRun& tiny, uint64_t instructions) {
  return static_cast<double>(big.max_rss_kb - tiny.max_rss_kb) * 1024.0 / static_cast<double>(instructions);
}

TEST_F(Objects, PeakMemoryPerInstructionStaysWithinTheBound) {
  const CheckRun tiny = check(assemble("tiny", ""));
  ASSERT_EQ(tiny.status, 0) << tiny.err;
  struct Case {
    std::string name;
    std::string file;
    uint64_t instructions;
  };
  constexpr uint64_t kJz = 2 * 1024 * 1024;  // 4 MiB of `jz .+2`: every instruction a pending branch
  const Case cases[] = {
      {"4 MiB of jz", assemble("jz", fmt::format(".rept {}\njz 1f\n1:\n.endr\n", kJz)), kJz + 1},
      {"16 MiB of zeros", zeros("zeros", 16 << 20), 8 << 20},
  };
  for (const Case& c : cases) {
    const CheckRun r = check(c.file);
    EXPECT_LE(r.status, 1) << c.name << ": " << r.err;
    const double per = bytes_per_instruction(r, tiny, c.instructions);
    EXPECT_LE(per, static_cast<double>(framecert::kBytesPerInstruction))
        << c.name << ": " << r.max_rss_kb << " kB peak for " << c.instructions << " instructions";
    std::printf("%s: %.1f bytes per instruction (%ld kB peak, %ld kB baseline)\n", c.name.c_str(), per, r.max_rss_kb,
                tiny.max_rss_kb);
  }
}

TEST_F(Objects, AnObjectTooLargeForTheMemoryLimitIsRefusedNotKilled) {
  // 64 MiB of code: 32 M instructions need about 2 GiB; under a 1 GiB address-space limit the check refuses
  // at once (exit 2, one line) instead of failing an allocation halfway or being killed.
  const std::string big = zeros("big", 64 << 20);
  const CheckRun r = check(big, "1048576");
  EXPECT_EQ(r.status, 2) << r.err;
  EXPECT_NE(r.err.find(big), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("33554432 instructions: checking them needs about 2048 MiB"), std::string::npos) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  // The same object without the limit is checked (this machine has the memory).
  if (framecert::available_memory() > (4ull << 30)) {
    const CheckRun ok = check(big);
    EXPECT_LE(ok.status, 1) << ok.err;
  }
}

TEST_F(Objects, ACodeSectionOfFourGiBIsRefused) {
  // Instruction offsets are 32-bit: a code section of 4 GiB or more gets a clear refusal, not wrapped
  // offsets. The object is written by hand (ELF header, .text, .shstrtab) as a sparse file.
  const fs::path o = dir_ / "huge.o";
  constexpr uint64_t kText = (4ull << 30) + 16, kTextAt = 0x1000;
  const char names[] = "\0.text\0.shstrtab\0";
  Elf64_Ehdr eh{};
  std::memcpy(eh.e_ident, ELFMAG, SELFMAG);
  eh.e_ident[EI_CLASS] = ELFCLASS64;
  eh.e_ident[EI_DATA] = ELFDATA2LSB;
  eh.e_ident[EI_VERSION] = EV_CURRENT;
  eh.e_type = ET_REL;
  eh.e_machine = EM_X86_64;
  eh.e_version = EV_CURRENT;
  eh.e_ehsize = sizeof eh;
  eh.e_shentsize = sizeof(Elf64_Shdr);
  eh.e_shnum = 3;
  eh.e_shstrndx = 2;
  eh.e_shoff = sizeof eh;
  std::array<Elf64_Shdr, 3> sh{};
  sh[1] = {1, SHT_PROGBITS, SHF_ALLOC | SHF_EXECINSTR, 0, kTextAt, kText, 0, 0, 16, 0};
  sh[2] = {7, SHT_STRTAB, 0, 0, kTextAt + kText, sizeof names, 0, 0, 1, 0};
  {
    std::ofstream out(o, std::ios::binary);
    out.write(reinterpret_cast<const char*>(&eh), sizeof eh);
    out.write(reinterpret_cast<const char*>(sh.data()), sizeof sh);
    out.seekp(static_cast<std::streamoff>(kTextAt + kText));
    out.write(names, sizeof names);
  }
  const CheckRun r = check(o.string());
  EXPECT_EQ(r.status, 2) << r.err;
  EXPECT_NE(r.err.find("section .text holds 4294967312 bytes of code; framecert checks code sections below 4 GiB"),
            std::string::npos)
      << r.err;
}

}  // namespace

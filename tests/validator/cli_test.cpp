// The `framecert check` / `framecert dump` command lines, run as a user would: exit status, the shape of
// the output, and clean refusal of unusable input (never a crash).
#include <elf.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <random>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

namespace {

namespace fs = std::filesystem;

struct CliRun {
  int status = -1;
  std::string out;  // stdout and stderr together unless split
};

// Runs a shell command line; its exit status and output.
CliRun capture(const std::string& cmd) {
  CliRun r;
  FILE* p = popen(cmd.c_str(), "r");
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) r.out.append(buf.data(), n);
  int st = pclose(p);
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  return r;
}

CliRun run(const std::string& args, bool stderr_too = true) {
  return capture(fmt::format("'{}' {} {}", FRAMECERT_BIN, args, stderr_too ? "2>&1" : "2>/dev/null"));
}

std::string fixture(const char* name) { return fmt::format("{}/{}.o", FIXTURE_OUT, name); }

std::vector<char> read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

class TempDir {
 public:
  TempDir() : path_(fs::temp_directory_path() / fmt::format("framecert-cli-{}", getpid())) {
    fs::create_directories(path_);
  }
  ~TempDir() { fs::remove_all(path_); }
  std::string file(const std::string& name, const std::vector<char>& bytes) const {
    auto p = (path_ / name).string();
    std::ofstream(p, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    return p;
  }
  std::string path(const std::string& name) const { return (path_ / name).string(); }

 private:
  fs::path path_;
};

TEST(CheckCommand, CleanObjectExitsZeroAndPrintsNothing) {
  CliRun r = run("check " + fixture("ok_std_frame"));
  EXPECT_EQ(r.status, 0);
  EXPECT_EQ(r.out, "");
}

TEST(CheckCommand, FindingsUseObjtoolsShapeAndExitOne) {
  const std::string obj = fixture("bad_call_no_frame");
  CliRun r = run("check " + obj);
  EXPECT_EQ(r.status, 1);
  EXPECT_EQ(r.out, obj + ": warning: framecert: f+0x5: call without frame pointer save/setup\n");
}

TEST(CheckCommand, ExplainShowsThePathAndBothStatesOfAMismatch) {
  CliRun r = run("check --explain " + fixture("bad_mismatch_cfa"));
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.out.find("stack state mismatch: cfa1=4+8 cfa2=4+16"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("path: f+0x0: entry"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("branch"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("state on this path: cfa=rsp+16"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("state recorded by an earlier path: cfa=rsp+8"), std::string::npos) << r.out;
}

TEST(CheckCommand, JsonListsEveryObjectInOrderWithParallelJobs) {
  CliRun r = run(fmt::format("check --json -j 2 {} {} {}", fixture("ok_leaf"), fixture("bad_return_modified"),
                             fixture("bad_fallthrough")),
                 false);
  EXPECT_EQ(r.status, 1);
  auto j = nlohmann::json::parse(r.out);
  ASSERT_EQ(j["objects"].size(), 3u);
  EXPECT_EQ(j["objects"][0]["findings"].size(), 0u);
  EXPECT_EQ(j["objects"][1]["findings"][0]["message"], "return with modified stack frame");
  EXPECT_EQ(j["objects"][1]["findings"][0]["function"], "f");
  EXPECT_EQ(j["objects"][1]["findings"][0]["func_offset"], 6);
  EXPECT_FALSE(j["objects"][1]["findings"][0]["path"].empty());
  EXPECT_EQ(j["objects"][2]["findings"][0]["text"], "f() falls through to next function g()");
  EXPECT_EQ(j["summary"]["findings"], 2);
}

// Issue 17: `--version` names the version (CMakeLists.txt's project VERSION, read here from the file) and the
// commit; a mistyped command is named, with the nearest command, in one line and exit 2.
TEST(Cli, VersionNamesTheVersionAndTheCommit) {
  // Plain string parsing: std::regex trips gcc 12's maybe-uninitialized warning in the sanitizer build.
  std::ifstream in(std::string(FRAMECERT_SOURCE_DIR) + "/CMakeLists.txt");
  const std::string top((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const std::string key = "project(framecert VERSION ";
  const size_t at = top.find(key);
  ASSERT_NE(at, std::string::npos);
  const std::string version = top.substr(at + key.size(), top.find_first_of(" )", at + key.size()) - at - key.size());
  ASSERT_FALSE(version.empty());
  CliRun r = run("--version");
  EXPECT_EQ(r.status, 0);
  const std::string head = "framecert " + version + " (commit ";
  ASSERT_EQ(r.out.substr(0, head.size()), head) << r.out;
  ASSERT_GE(r.out.size(), head.size() + 3) << r.out;
  ASSERT_EQ(r.out.substr(r.out.size() - 2), ")\n") << r.out;
  std::string commit = r.out.substr(head.size(), r.out.size() - 2 - head.size());
  if (commit.ends_with("-dirty")) commit.resize(commit.size() - 6);
  const bool hex = commit.size() >= 7 && commit.find_first_not_of("0123456789abcdef") == std::string::npos;
  EXPECT_TRUE(hex || commit == "unknown") << r.out;
}

TEST(Cli, AnUnknownCommandIsNamedWithTheNearestOne) {
  CliRun r = run("chek x.o");
  EXPECT_EQ(r.status, 2);
  EXPECT_EQ(r.out.substr(0, r.out.find(';')), "framecert: unknown command 'chek'") << r.out;
  EXPECT_NE(r.out.find("did you mean 'check'?"), std::string::npos) << r.out;
  EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 1) << r.out;
  r = run("frobnicate");
  EXPECT_EQ(r.status, 2);
  EXPECT_EQ(r.out.find("did you mean"), std::string::npos) << "no command is near 'frobnicate': " << r.out;
}

TEST(CheckCommand, UnusableInputExitsTwoWithOneLineNamingTheFile) {
  TempDir tmp;
  const auto good = read_all(fixture("ok_std_frame"));
  ASSERT_GT(good.size(), 200u);
  std::vector<std::pair<std::string, std::string>> cases;  // file, expected words
  cases.push_back({tmp.file("empty.o", {}), "not"});
  cases.push_back({tmp.file("text.o", {'h', 'e', 'l', 'l', 'o', '\n'}), "not an ELF object"});
  auto elf32 = good;
  elf32[4] = 1;  // EI_CLASS = ELFCLASS32
  cases.push_back({tmp.file("elf32.o", elf32), "not a 64-bit ELF object"});
  auto arm = good;
  arm[18] = static_cast<char>(183);  // e_machine = EM_AARCH64 (183)
  arm[19] = 0;
  cases.push_back({tmp.file("arm.o", arm), "not an x86-64 object"});
  cases.push_back({tmp.path("missing.o"), "cannot open"});
  for (const auto& [file, words] : cases) {
    CliRun r = run("check " + file);
    EXPECT_EQ(r.status, 2) << file << ": " << r.out;
    EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 1) << r.out;
    EXPECT_NE(r.out.find(file), std::string::npos) << r.out;
    EXPECT_NE(r.out.find(words), std::string::npos) << r.out;
  }
}

TEST(CheckCommand, TruncatedAndCorruptedObjectsNeverCrash) {
  TempDir tmp;
  const auto good = read_all(fixture("c_switch_table"));
  // Every truncation point in the headers, then a stride through the rest.
  for (size_t n = 0; n < good.size(); n += (n < 128 ? 1 : 97)) {
    std::vector<char> cut(good.begin(), good.begin() + static_cast<long>(n));
    CliRun r = run("check " + tmp.file("cut.o", cut));
    EXPECT_TRUE(r.status == 2 || r.status == 1 || r.status == 0) << "truncated at " << n << ": status " << r.status;
    if (r.status == 2) {
      EXPECT_NE(r.out.find("cut.o"), std::string::npos);
    }
  }
  std::mt19937 rng(1234);
  for (int trial = 0; trial < 150; ++trial) {
    auto bad = good;
    for (int k = 0; k < 8; ++k) bad[rng() % bad.size()] = static_cast<char>(rng());
    CliRun r = run("check " + tmp.file("corrupt.o", bad));
    EXPECT_LE(r.status, 2) << "trial " << trial << " crashed: " << r.out;
  }
}

// Issue 13: input that cannot be read completely is refused (exit 2, one line naming the file and what is
// wrong), never passed as clean. libelf alone reads a section header table past the end of the file as "no
// sections", which used to make a truncated object exit 0.
void expect_refused(const CliRun& r, const std::string& file, const std::string& words) {
  EXPECT_EQ(r.status, 2) << file << ": " << r.out;
  EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 1) << r.out;
  EXPECT_NE(r.out.find(file), std::string::npos) << r.out;
  EXPECT_NE(r.out.find(words), std::string::npos) << "want '" << words << "' in: " << r.out;
}

template <typename T>
void poke(std::vector<char>& bytes, uint64_t offset, T value) {
  ASSERT_LE(offset + sizeof value, bytes.size());
  std::memcpy(bytes.data() + offset, &value, sizeof value);
}

TEST(CheckCommand, TruncatedObjectIsRefusedNeverClean) {
  TempDir tmp;
  const auto good = read_all(fixture("c_switch_table"));  // a real gcc -c object
  ASSERT_GT(good.size(), 1000u);
  ASSERT_EQ(run("check " + fixture("c_switch_table")).status, 0);
  const std::string first100 = tmp.file("first100.o", {good.begin(), good.begin() + 100});
  expect_refused(run("check " + first100), first100, "past the end of the file");
  // Every cut: refused, or (were the cut to leave a complete readable object) a finding; never a silent 0.
  for (size_t n = 0; n < good.size(); n += (n < 128 ? 1 : 11)) {
    const std::string cut = tmp.file("cut.o", {good.begin(), good.begin() + static_cast<long>(n)});
    CliRun r = run("check " + cut);
    EXPECT_TRUE(r.status == 2 || r.status == 1) << "cut at " << n << " of " << good.size() << ": status " << r.status;
    if (r.status == 2) {
      EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 1) << "cut at " << n << ": " << r.out;
    }
    EXPECT_NE(r.out.find(cut), std::string::npos) << "cut at " << n << ": " << r.out;
  }
}

TEST(CheckCommand, HeadersPointingPastTheFileAreRefused) {
  TempDir tmp;
  const auto good = read_all(fixture("ok_std_frame"));
  Elf64_Ehdr eh;
  std::memcpy(&eh, good.data(), sizeof eh);
  ASSERT_EQ(eh.e_type, ET_REL);
  auto shoff = good;
  poke<uint64_t>(shoff, offsetof(Elf64_Ehdr, e_shoff), good.size() + 4096);
  const std::string f1 = tmp.file("shoff.o", shoff);
  expect_refused(run("check " + f1), f1, "section header table at offset");
  auto no_sections = good;  // an ET_REL object without section headers
  poke<uint16_t>(no_sections, offsetof(Elf64_Ehdr, e_shnum), 0);
  poke<uint64_t>(no_sections, offsetof(Elf64_Ehdr, e_shoff), 0);
  poke<uint16_t>(no_sections, offsetof(Elf64_Ehdr, e_shstrndx), 0);
  const std::string f2 = tmp.file("noshdr.o", no_sections);
  expect_refused(run("check " + f2), f2, "no section headers");
  auto shnum0 = good;  // e_shnum 0 with the table still there: section 0 says 0 too
  poke<uint16_t>(shnum0, offsetof(Elf64_Ehdr, e_shnum), 0);
  const std::string f3 = tmp.file("shnum0.o", shnum0);
  expect_refused(run("check " + f3), f3, "no section headers");
  auto many = good;  // more headers than the file holds
  poke<uint16_t>(many, offsetof(Elf64_Ehdr, e_shnum), 0xfeff);
  const std::string f4 = tmp.file("many.o", many);
  expect_refused(run("check " + f4), f4, "extends past the end of the file");
  // The .text section's data past the end of the file, and a size too large for the file.
  for (int which = 0; which < 2; ++which) {
    auto bad = good;
    bool patched = false;
    for (unsigned i = 1; i < eh.e_shnum; ++i) {
      const uint64_t at = eh.e_shoff + i * sizeof(Elf64_Shdr);
      Elf64_Shdr sh;
      std::memcpy(&sh, good.data() + at, sizeof sh);
      if (sh.sh_type != SHT_PROGBITS || !(sh.sh_flags & SHF_EXECINSTR)) continue;
      if (which == 0)
        poke<uint64_t>(bad, at + offsetof(Elf64_Shdr, sh_offset), good.size() + 64);
      else
        poke<uint64_t>(bad, at + offsetof(Elf64_Shdr, sh_size), uint64_t{1} << 40);
      patched = true;
      break;
    }
    ASSERT_TRUE(patched);
    const std::string f = tmp.file(fmt::format("data{}.o", which), bad);
    expect_refused(run("check " + f), f, "extends past the end of the file");
  }
}

TEST(CheckCommand, FifoAndDirectoryAreRefusedWithoutBlocking) {
  TempDir tmp;
  const std::string fifo = tmp.path("pipe.o");
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  // Opening a FIFO for reading blocks until a writer comes; `timeout` turns a hang into status 124.
  CliRun r = capture(fmt::format("timeout 20 '{}' check '{}' 2>&1", FRAMECERT_BIN, fifo));
  expect_refused(r, fifo, "not a regular file (a FIFO)");
  const std::string dir = tmp.path("adir");
  fs::create_directories(dir);
  CliRun d = run("check " + dir);
  expect_refused(d, dir, "not a regular file (a directory)");
  EXPECT_EQ(d.out.find("invalid file descriptor"), std::string::npos) << d.out;
}

TEST(CheckCommand, BadArgumentsExitTwo) {
  EXPECT_EQ(run("check").status, 2);
  EXPECT_EQ(run("frobnicate").status, 2);
  EXPECT_EQ(run("check -j 0 " + fixture("ok_leaf")).status, 2);
}

TEST(DumpCommand, PrintsOneLinePerStateChangeThenCallSitesAndFunctions) {
  TempDir tmp;
  const std::string meta = tmp.path("m.fcmeta");
  ASSERT_EQ(run(fmt::format("check --metadata {} {}", meta, fixture("ok_std_frame"))).status, 0);
  CliRun r = run("dump " + meta);
  ASSERT_EQ(r.status, 0) << r.out;
  const std::string expected =
      "section .text address 0x0 size 0x13: 4 rows, 2 call sites\n"
      "  .text+0x0 <f+0x0>: cfa=rsp+8 rbp=caller\n"
      "  .text+0x1 <f+0x1>: cfa=rsp+16 rbp=caller saved-rbp=cfa-16\n"
      "  .text+0x4 <f+0x4>: cfa=rbp+16 rbp=frame saved-rbp=cfa-16\n"
      "  .text+0x12 <f+0x12>: cfa=rsp+8 rbp=caller\n"
      "  call returning to .text+0x9 <f+0x9>: frame-valid\n"
      "  call returning to .text+0x11 <f+0x11>: frame-valid\n"
      "\n"
      "functions:\n"
      "  f .text+0x0 size 0x13: certified\n";
  auto at = r.out.find("section .text");
  ASSERT_NE(at, std::string::npos) << r.out;
  EXPECT_EQ(r.out.substr(at), expected);
  EXPECT_NE(r.out.find("relocatable object"), std::string::npos);
}

TEST(DumpCommand, DamagedMetadataExitsTwo) {
  TempDir tmp;
  const std::string meta = tmp.path("m.fcmeta");
  ASSERT_EQ(run(fmt::format("check --metadata {} {}", meta, fixture("ok_leave"))).status, 0);
  auto bytes = read_all(meta);
  bytes[bytes.size() / 2] ^= 1;
  CliRun r = run("dump " + tmp.file("bad.fcmeta", bytes));
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.out.find("checksum mismatch"), std::string::npos) << r.out;
}

// scripts/framecert-objtool, as Kbuild would call it in objtool's place.
CliRun run_wrapper(const std::string& args) {
  return capture(fmt::format("FRAMECERT='{}' FRAMECERT_REAL_OBJTOOL='{}' '{}/framecert-objtool' {} 2>&1", FRAMECERT_BIN,
                             FRAMECERT_OBJTOOL, SCRIPTS_DIR, args));
}

TEST(ObjtoolWrapper, RunsBothToolsAndIsQuietWhenTheyAgree) {
  TempDir tmp;
  const std::string obj = tmp.file("w.o", read_all(fixture("bad_call_no_frame")));
  CliRun r = run_wrapper("--stackval " + obj);
  EXPECT_EQ(r.status, 0) << r.out;
  EXPECT_NE(r.out.find(obj + ": warning: framecert: f+0x5: call without frame pointer save/setup"), std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find(obj + ": warning: objtool: f+0x5: call without frame pointer save/setup"), std::string::npos)
      << r.out;
  EXPECT_EQ(r.out.find("framecert-objtool:"), std::string::npos) << r.out;
}

TEST(ObjtoolWrapper, ReportsADisagreementAndFailsWhenStrict) {
  TempDir tmp;
  const std::string obj = tmp.file("w.o", read_all(fixture("differs_libc_noreturn")));
  CliRun lenient = run_wrapper("--stackval " + obj);
  EXPECT_EQ(lenient.status, 0);
  EXPECT_NE(lenient.out.find("framecert-objtool: " + obj + ": only objtool: f() falls through to next function g()"),
            std::string::npos)
      << lenient.out;
  setenv("FRAMECERT_STRICT", "1", 1);
  CliRun strict = run_wrapper("--stackval " + obj);
  unsetenv("FRAMECERT_STRICT");
  EXPECT_EQ(strict.status, 1) << strict.out;
}

// framecert's own rule has no objtool counterpart: noted, never a disagreement, even when strict.
TEST(ObjtoolWrapper, FramecertsOwnRuleIsNotADisagreement) {
  TempDir tmp;
  const std::string obj = tmp.file("w.o", read_all(fixture("differs_bp_overwritten_before_call")));
  setenv("FRAMECERT_STRICT", "1", 1);
  CliRun r = run_wrapper("--stackval " + obj);
  unsetenv("FRAMECERT_STRICT");
  EXPECT_EQ(r.status, 0) << r.out;
  EXPECT_NE(r.out.find("framecert-objtool: " + obj +
                       ": framecert's own rule: f+0x7: call with frame pointer "
                       "overwritten after setup"),
            std::string::npos)
      << r.out;
  EXPECT_EQ(r.out.find("only framecert"), std::string::npos) << r.out;
}

}  // namespace

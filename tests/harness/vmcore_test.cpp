// The vmcore reader (harness/guest/vmcore.h) on dumps written here by hand: an ELF core with one CPU's
// NT_PRSTATUS note and two pages of "RAM" whose bytes the test chose, and damaged or foreign files, each
// refused in one line. Expected registers and bytes are the ones written; libkdumpfile does the reading.
#include "harness/guest/vmcore.h"

#include <elf.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

namespace framecert::guest {
namespace {

constexpr size_t kPrRegOffset = 112, kRip = 16, kCs = 17, kRsp = 19, kRbp = 4;

void put_u64(std::vector<uint8_t>& v, size_t at, uint64_t x) { std::memcpy(v.data() + at, &x, 8); }

// One ELF note: namesz, descsz, type, name (padded to 4), desc (padded to 4).
std::vector<uint8_t> note(const std::string& name, uint32_t type, const std::vector<uint8_t>& desc) {
  const uint32_t namesz = static_cast<uint32_t>(name.size() + 1), descsz = static_cast<uint32_t>(desc.size());
  const size_t name_room = (namesz + 3) & ~size_t{3}, desc_room = (descsz + 3) & ~size_t{3};
  std::vector<uint8_t> out(12 + name_room + desc_room, 0);
  std::memcpy(out.data(), &namesz, 4);
  std::memcpy(out.data() + 4, &descsz, 4);
  std::memcpy(out.data() + 8, &type, 4);
  std::memcpy(out.data() + 12, name.data(), name.size());
  if (!desc.empty()) std::memcpy(out.data() + 12 + name_room, desc.data(), desc.size());
  return out;
}

std::vector<uint8_t> prstatus(uint64_t rip, uint64_t rsp, uint64_t rbp) {
  std::vector<uint8_t> d(336, 0);
  put_u64(d, kPrRegOffset + kRip * 8, rip);
  put_u64(d, kPrRegOffset + kRsp * 8, rsp);
  put_u64(d, kPrRegOffset + kRbp * 8, rbp);
  put_u64(d, kPrRegOffset + kCs * 8, 0x10);
  return d;
}

class VmcoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/framecert-vmcore-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::string write(const std::string& name, const std::vector<uint8_t>& bytes) {
    const std::string path = dir_ + "/" + name;
    std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(bytes.data()), bytes.size());
    return path;
  }

  // An x86-64 ELF core: PT_NOTE with `notes`, then PT_LOAD of two pages at physical 0x100000.
  std::string elf_core(const std::vector<uint8_t>& notes, uint64_t note_size_claimed = 0) {
    const size_t phoff = sizeof(Elf64_Ehdr), note_off = phoff + 2 * sizeof(Elf64_Phdr);
    const size_t load_off = (note_off + notes.size() + 4095) & ~size_t{4095};
    std::vector<uint8_t> f(load_off + 2 * 4096, 0);
    Elf64_Ehdr eh{};
    std::memcpy(eh.e_ident, ELFMAG, SELFMAG);
    eh.e_ident[EI_CLASS] = ELFCLASS64;
    eh.e_ident[EI_DATA] = ELFDATA2LSB;
    eh.e_ident[EI_VERSION] = EV_CURRENT;
    eh.e_type = ET_CORE;
    eh.e_machine = EM_X86_64;
    eh.e_version = EV_CURRENT;
    eh.e_phoff = phoff;
    eh.e_ehsize = sizeof eh;
    eh.e_phentsize = sizeof(Elf64_Phdr);
    eh.e_phnum = 2;
    std::memcpy(f.data(), &eh, sizeof eh);
    Elf64_Phdr ph[2]{};
    ph[0].p_type = PT_NOTE;
    ph[0].p_offset = note_off;
    ph[0].p_filesz = note_size_claimed ? note_size_claimed : notes.size();
    ph[1].p_type = PT_LOAD;
    ph[1].p_offset = load_off;
    ph[1].p_paddr = 0x100000;
    ph[1].p_vaddr = 0;
    ph[1].p_filesz = ph[1].p_memsz = 2 * 4096;
    ph[1].p_flags = PF_R | PF_W | PF_X;
    std::memcpy(f.data() + phoff, ph, sizeof ph);
    std::memcpy(f.data() + note_off, notes.data(), notes.size());
    for (size_t i = 0; i < 2 * 4096; ++i) f[load_off + i] = static_cast<uint8_t>(i * 7 + 3);
    return write("core", f);
  }

  std::string dir_;
};

TEST_F(VmcoreTest, ReadsRegistersAndPhysicalMemoryOfAnElfCore) {
  std::vector<uint8_t> notes =
      note("CORE", NT_PRSTATUS, prstatus(0xffffffff81000010, 0xffffc90000003f00, 0xffffc90000003f40));
  const auto qemu = note("QEMU", 0, std::vector<uint8_t>(440, 0xee));  // QEMU's CPU state: not registers we read
  notes.insert(notes.end(), qemu.begin(), qemu.end());
  const auto second = note("CORE", NT_PRSTATUS, prstatus(0x401000, 0x7ffd0000, 0));
  notes.insert(notes.end(), second.begin(), second.end());
  auto core = Vmcore::open(elf_core(notes));
  ASSERT_TRUE(core) << core.error();
  EXPECT_EQ((*core)->format(), "elf");
  ASSERT_EQ((*core)->cpus().size(), 2u);
  const CpuRegs& r = (*core)->cpus()[0];
  EXPECT_EQ(r.cpu, 0);
  EXPECT_EQ(r.rip, 0xffffffff81000010u);
  EXPECT_EQ(r.rsp, 0xffffc90000003f00u);
  EXPECT_EQ(r.rbp, 0xffffc90000003f40u);
  EXPECT_EQ(r.cs, 0x10u);
  EXPECT_EQ((*core)->cpus()[1].cpu, 1);
  EXPECT_EQ((*core)->cpus()[1].rip, 0x401000u);

  uint8_t buf[16];
  ASSERT_EQ((*core)->read(0x100000 + 4090, buf, sizeof buf), sizeof buf);  // across the page boundary
  for (size_t i = 0; i < sizeof buf; ++i) EXPECT_EQ(buf[i], static_cast<uint8_t>((4090 + i) * 7 + 3)) << i;
  // Memory the dump does not hold reads as nothing, never as zeroes.
  EXPECT_EQ((*core)->read(0x200000, buf, sizeof buf), 0u);
  EXPECT_EQ((*core)->read(0x100000 + 2 * 4096 - 8, buf, sizeof buf), 8u);
}

TEST_F(VmcoreTest, RefusesADumpWithoutRegisters) {
  auto core = Vmcore::open(elf_core(note("QEMU", 0, std::vector<uint8_t>(64, 0))));
  ASSERT_FALSE(core);
  EXPECT_NE(core.error().find("no NT_PRSTATUS note"), std::string::npos) << core.error();
}

TEST_F(VmcoreTest, RefusesDamagedNotes) {
  // A note that claims more bytes than its segment has.
  auto bad = note("CORE", NT_PRSTATUS, prstatus(1, 2, 3));
  bad.resize(200);
  auto core = Vmcore::open(elf_core(bad));
  ASSERT_FALSE(core);
  EXPECT_NE(core.error().find("runs past the note area"), std::string::npos) << core.error();
  // A short NT_PRSTATUS, and a note segment claimed far past the end of the file: refused (by libkdumpfile,
  // which reads an ELF dump's notes too), in one line naming the file.
  const std::string short_prstatus = elf_core(note("CORE", NT_PRSTATUS, std::vector<uint8_t>(40, 0)));
  core = Vmcore::open(short_prstatus);
  ASSERT_FALSE(core);
  EXPECT_EQ(core.error().rfind(short_prstatus, 0), 0u) << core.error();
  // (Refused before libkdumpfile reads it: it would allocate the claimed terabyte.)
  const std::string huge = elf_core(note("CORE", NT_PRSTATUS, prstatus(1, 2, 3)), 1ull << 40);
  core = Vmcore::open(huge);
  ASSERT_FALSE(core);
  EXPECT_EQ(core.error().rfind(huge, 0), 0u) << core.error();
  EXPECT_NE(core.error().find("runs past the end of the file"), std::string::npos) << core.error();
  EXPECT_EQ(core.error().find('\n'), std::string::npos) << core.error();
}

TEST_F(VmcoreTest, RefusesFilesThatAreNoDumpInOneLine) {
  auto missing = Vmcore::open(dir_ + "/nothing");
  ASSERT_FALSE(missing);
  EXPECT_NE(missing.error().find("No such file"), std::string::npos) << missing.error();
  auto text = Vmcore::open(write("text", std::vector<uint8_t>(8192, 'x')));
  ASSERT_FALSE(text);
  EXPECT_NE(text.error().find("not a vmcore"), std::string::npos) << text.error();
  std::vector<uint8_t> flat(8192, 0);
  std::memcpy(flat.data(), "makedumpfile", 12);
  auto flattened = Vmcore::open(write("flat", flat));
  ASSERT_FALSE(flattened);
  EXPECT_NE(flattened.error().find("makedumpfile -R"), std::string::npos) << flattened.error();
  for (const std::string& e : {missing.error(), text.error(), flattened.error()})
    EXPECT_EQ(e.find('\n'), std::string::npos) << e;
}

}  // namespace
}  // namespace framecert::guest

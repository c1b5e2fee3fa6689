#include "fixture_expectations.h"

#include <elf.h>
#include <elfutils/libdw.h>
#include <elfutils/libdwfl.h>
#include <sys/wait.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <regex>
#include <stdexcept>

#include <fmt/format.h>

#include "validator/elf_file.h"
#include "validator/validator.h"

namespace framecert::testing {

namespace fs = std::filesystem;

std::vector<std::string> fixture_names() {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(FIXTURE_SRC)) {
    auto ext = e.path().extension();
    if (ext == ".S" || ext == ".c") out.push_back(e.path().filename().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::string fixture_object(const std::string& fixture) {
  return fmt::format("{}/{}.o", FIXTURE_OUT, fs::path(fixture).stem().string());
}

namespace {

struct LineAddress {
  uint32_t section;
  uint64_t offset;
};

// The lowest address of each source line of `object`'s own file, per section. libdwfl relocates the
// line table of a relocatable object (each section gets its own address), which raw libdw does not.
// This reading (elfutils, the line table) is deliberately independent of the validator's ELF reader: it
// turns a fixture's `# expect:` source lines into the places the findings must name, so a mistake of
// ElfFile's cannot make the expectations agree with it. ElfFile is used only to name those places.
std::multimap<int, LineAddress> line_addresses(const std::string& object) {
  static char* debuginfo_path = nullptr;
  Dwfl_Callbacks cb{};
  cb.find_debuginfo = dwfl_standard_find_debuginfo;
  cb.section_address = dwfl_offline_section_address;
  cb.debuginfo_path = &debuginfo_path;
  std::unique_ptr<Dwfl, void (*)(Dwfl*)> dwfl(dwfl_begin(&cb), dwfl_end);
  Dwfl_Module* mod = dwfl_report_offline(dwfl.get(), "fixture", object.c_str(), -1);
  if (!mod) throw std::runtime_error(object + ": dwfl_report_offline failed");
  dwfl_report_end(dwfl.get(), nullptr, nullptr);
  std::multimap<int, LineAddress> out;
  Dwarf_Addr bias = 0;
  Dwarf_Die* cu = nullptr;
  while ((cu = dwfl_module_nextcu(mod, cu, &bias)) != nullptr) {
    size_t n = 0;
    if (dwfl_getsrclines(cu, &n) != 0) continue;
    for (size_t i = 0; i < n; ++i) {
      Dwfl_Line* line = dwfl_onesrcline(cu, i);
      Dwarf_Addr line_bias = 0;
      bool end_sequence = false;
      // The end-of-sequence row carries the last line's number but the address past the code.
      if (Dwarf_Line* raw = dwfl_dwarf_line(line, &line_bias);
          raw && dwarf_lineendsequence(raw, &end_sequence) == 0 && end_sequence)
        continue;
      Dwarf_Addr addr = 0;
      int lineno = 0;
      dwfl_lineinfo(line, &addr, &lineno, nullptr, nullptr, nullptr);
      Dwarf_Addr rel = addr;
      int idx = dwfl_module_relocate_address(mod, &rel);
      if (idx < 0) continue;
      Elf32_Word shndx = 0;
      dwfl_module_relocation_info(mod, static_cast<unsigned>(idx), &shndx);
      out.emplace(lineno, LineAddress{shndx, rel});
    }
  }
  return out;
}

std::string trim(std::string s) {
  auto b = s.find_first_not_of(" \t");
  auto e = s.find_last_not_of(" \t\r");
  return b == std::string::npos ? std::string() : s.substr(b, e - b + 1);
}

// FUNC+0xOFF (or SECTION+0xOFF outside functions) for an instruction, and the containing function.
std::pair<std::string, std::string> locate(const ElfFile& elf, const LineAddress& at) {
  const ElfSymbol* best = nullptr;
  for (const auto& s : elf.symbols())
    if (s.type == STT_FUNC && s.section == at.section && at.offset >= s.offset && at.offset < s.offset + s.size)
      best = &s;
  if (!best) return {fmt::format("{}+0x{:x}", elf.sections()[at.section].name, at.offset), ""};
  return {fmt::format("{}+0x{:x}", best->name, at.offset - best->offset), std::string(best->name)};
}

}  // namespace

FixtureExpectations read_expectations(const std::string& fixture) {
  FixtureExpectations ex;
  const std::string src = fmt::format("{}/{}", FIXTURE_SRC, fixture);
  std::ifstream in(src);
  if (!in) throw std::runtime_error(src + ": cannot open");
  const std::string object = fixture_object(fixture);
  auto elf = ElfFile::open(object);
  if (!elf) throw std::runtime_error(elf.error());
  std::multimap<int, LineAddress> lines;
  bool lines_loaded = false;

  std::vector<std::string> objtool_lines;
  std::string line;
  for (int lineno = 1; std::getline(in, line); ++lineno) {
    auto take = [&](const char* marker) -> std::optional<std::string> {
      auto p = line.find(marker);
      if (p == std::string::npos) return std::nullopt;
      return trim(line.substr(p + std::strlen(marker)));
    };
    if (auto t = take("objtool-expect-text:")) {
      objtool_lines.push_back(*t);
    } else if (auto t2 = take("expect-text:")) {
      ex.framecert.insert(*t2);
    } else if (auto t3 = take("expect-in:")) {
      auto colon = t3->find(':');
      ex.in_function.push_back({trim(t3->substr(0, colon)), trim(t3->substr(colon + 1))});
    } else if (take("objtool-differs:")) {
      ex.objtool_differs = true;
    } else if (auto t4 = take("# expect:")) {
      if (!lines_loaded) {
        lines = line_addresses(object);
        lines_loaded = true;
      }
      auto range = lines.equal_range(lineno);
      if (range.first == range.second)
        throw std::runtime_error(fmt::format("{}:{}: no instruction on this line", fixture, lineno));
      LineAddress at = range.first->second;
      for (auto it = range.first; it != range.second; ++it)
        if (it->second.offset < at.offset) at = it->second;
      auto [where, func] = locate(**elf, at);
      if (t4->starts_with("falls through to next function"))
        ex.framecert.insert(fmt::format("{}() {}", func, *t4));
      else
        ex.framecert.insert(fmt::format("{}: {}", where, *t4));
    }
  }
  ex.objtool =
      ex.objtool_differs ? std::multiset<std::string>(objtool_lines.begin(), objtool_lines.end()) : ex.framecert;
  return ex;
}

std::multiset<std::string> objtool_findings(const std::string& object) {
  if (!fs::exists(FRAMECERT_OBJTOOL))
    throw std::runtime_error(std::string("reference objtool missing at ") + FRAMECERT_OBJTOOL + " (run scripts/setup)");
  std::string cmd = fmt::format("'{}' --stackval --dry-run '{}' 2>&1", FRAMECERT_OBJTOOL, object);
  std::unique_ptr<FILE, int (*)(FILE*)> p(popen(cmd.c_str(), "r"), pclose);
  if (!p) throw std::runtime_error("cannot run objtool");
  std::multiset<std::string> out;
  std::array<char, 4096> buf;
  const std::string marker = "warning: objtool: ";
  while (fgets(buf.data(), buf.size(), p.get())) {
    std::string l = trim(buf.data());
    if (!l.empty() && l.back() == '\n') l.pop_back();
    auto pos = l.find(marker);
    if (pos != std::string::npos) out.insert(trim(l.substr(pos + marker.size())));
  }
  return out;
}

std::string test_name(const std::string& file) {
  std::string n = file;
  for (char& c : n)
    if (!isalnum(static_cast<unsigned char>(c))) c = '_';
  return n;
}

std::multiset<std::string> framecert_findings(const std::string& object) {
  auto report = check_object(object, CheckOptions{.explain = false, .want_metadata = false});
  if (!report) throw std::runtime_error(report.error());
  std::multiset<std::string> out;
  for (const auto& f : report->findings) out.insert(f.text());
  return out;
}

}  // namespace framecert::testing

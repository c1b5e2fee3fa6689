// Serialization of FrameTable to and from the version-2 metadata file format (metadata_format.h).
// The parser trusts nothing: every count, offset and string index is checked against the file size
// before use, so a damaged or truncated file is an error value, never a crash.
#include <cstring>
#include <fstream>
#include <iterator>
#include <unordered_map>

#include <zlib.h>

#include "unwinder/frame_table.h"

namespace framecert {
namespace md = metadata;

namespace {

class StringPool {
 public:
  StringPool() { data_.push_back('\0'); }  // offset 0 is the empty string
  uint32_t add(const std::string& s) {
    if (s.empty()) return 0;
    auto [it, fresh] = index_.try_emplace(s, static_cast<uint32_t>(data_.size()));
    if (fresh) data_.insert(data_.end(), s.c_str(), s.c_str() + s.size() + 1);
    return it->second;
  }
  const std::vector<char>& data() const { return data_; }

 private:
  std::vector<char> data_;
  std::unordered_map<std::string, uint32_t> index_;
};

template <typename T>
void append(std::vector<uint8_t>& out, const T& value) {
  const auto* p = reinterpret_cast<const uint8_t*>(&value);
  out.insert(out.end(), p, p + sizeof(T));
}

uint32_t crc_of(std::span<const uint8_t> bytes, uLong crc = crc32(0L, Z_NULL, 0)) {
  // zlib takes uInt lengths: feed in chunks so files over 4 GiB would still work.
  size_t pos = 0;
  while (pos < bytes.size()) {
    size_t n = std::min<size_t>(bytes.size() - pos, 1u << 30);
    crc = crc32(crc, bytes.data() + pos, static_cast<uInt>(n));
    pos += n;
  }
  return static_cast<uint32_t>(crc);
}

// The checksum covers the header too (with the checksum field as zero), so no byte of the file can
// change unnoticed.
uint32_t file_checksum(const md::FileHeader& header, std::span<const uint8_t> body) {
  md::FileHeader h = header;
  h.checksum = 0;
  uint32_t crc = crc_of(std::span(reinterpret_cast<const uint8_t*>(&h), sizeof h));
  return crc_of(body, crc);
}

}  // namespace

std::vector<uint8_t> serialize_frame_table(const FrameTable& table) {
  StringPool strings;
  md::FileHeader h{};
  std::memcpy(h.magic, md::kMagic, sizeof h.magic);
  h.version = md::kVersion;
  h.header_size = sizeof(md::FileHeader);
  h.flags = table.linked ? md::kFileLinked : 0;
  h.object_name = strings.add(table.object_name);
  h.build_id = strings.add(table.build_id);

  // Arrays with 8-byte fields first (sections, call sites, functions, tail calls), then the 4-byte ones
  // (rows, syscall sites, self slots), then the strings: every record naturally aligned.
  std::vector<uint8_t> body;
  std::vector<md::FrameRow> rows;
  std::vector<md::CallSiteRecord> calls;
  std::vector<md::SyscallSiteRecord> syscalls;
  std::vector<md::TailCallRecord> tail_calls;
  std::vector<md::SelfSlotRecord> self_slots;
  // A call target's kind, ref and value as records store them (a symbol by its name in the strings).
  auto encode_target = [&](const CallTarget& t, uint8_t& kind, uint32_t& ref, uint64_t& value) {
    kind = static_cast<uint8_t>(t.kind);
    value = t.value;
    ref = t.ref;
    if (t.kind == CallTargetKind::Symbol)
      ref = t.ref < table.target_symbols.size() ? strings.add(table.target_symbols[t.ref]) : 0;
  };
  for (uint32_t si = 0; si < table.sections.size(); ++si) {
    const FrameSection& s = table.sections[si];
    md::SectionRecord r{};
    r.name = strings.add(s.name);
    r.address = s.address;
    r.size = s.size;
    r.first_row = static_cast<uint32_t>(rows.size());
    r.row_count = static_cast<uint32_t>(s.rows.size());
    r.first_call = static_cast<uint32_t>(calls.size());
    r.call_count = static_cast<uint32_t>(s.calls.size());
    append(body, r);
    for (const FrameRowEntry& e : s.rows)
      rows.push_back(md::FrameRow{static_cast<uint32_t>(e.offset), e.state.cfa_offset, e.state.bp_offset,
                                  static_cast<uint8_t>(e.state.cfa_base), e.state.flags});
    for (const CallSite& c : s.calls) {
      md::CallSiteRecord rec{};
      rec.return_offset = static_cast<uint32_t>(c.return_offset);
      rec.flags = c.flags;
      rec.sp_depth = c.has(md::kCallSpDepth) ? c.sp_depth : 0;
      rec.bp_depth = c.has(md::kCallBpDepth) ? c.bp_depth : 0;
      encode_target(c.target, rec.target_kind, rec.target_ref, rec.target);
      calls.push_back(rec);
    }
    for (const TailCall& c : s.tail_calls) {
      md::TailCallRecord rec{};
      rec.section = si;
      rec.offset = static_cast<uint32_t>(c.offset);
      encode_target(c.target, rec.target_kind, rec.target_ref, rec.target);
      tail_calls.push_back(rec);
    }
    for (const SyscallSite& sc : s.syscalls)
      syscalls.push_back({si, static_cast<uint32_t>(sc.offset), static_cast<uint32_t>(sc.return_offset)});
    for (const SelfSlot& slot : s.self_slots)
      self_slots.push_back({si,
                            static_cast<uint32_t>(slot.offset),
                            slot.slot_offset,
                            static_cast<uint8_t>(slot.kind),
                            static_cast<uint8_t>(slot.base),
                            {}});
  }
  for (const auto& c : calls) append(body, c);
  for (const FunctionEntry& f : table.functions) {
    md::FunctionRecord r{};
    r.name = strings.add(f.name);
    r.section = f.section;
    r.offset = f.offset;
    r.size = f.size;
    r.flags = f.flags;
    r.finding = strings.add(f.finding);
    r.parent = strings.add(f.parent);
    append(body, r);
  }
  for (const auto& c : tail_calls) append(body, c);
  for (const auto& r : rows) append(body, r);
  for (const auto& sc : syscalls) append(body, sc);
  for (const auto& slot : self_slots) append(body, slot);
  body.insert(body.end(), strings.data().begin(), strings.data().end());
  while (body.size() % 8) body.push_back(0);

  h.section_count = static_cast<uint32_t>(table.sections.size());
  h.row_count = static_cast<uint32_t>(rows.size());
  h.call_count = static_cast<uint32_t>(calls.size());
  h.function_count = static_cast<uint32_t>(table.functions.size());
  h.syscall_count = static_cast<uint32_t>(syscalls.size());
  h.tail_call_count = static_cast<uint32_t>(tail_calls.size());
  h.self_slot_count = static_cast<uint32_t>(self_slots.size());
  h.string_size = static_cast<uint32_t>(strings.data().size());
  h.file_size = sizeof h + body.size();
  h.checksum = file_checksum(h, body);

  std::vector<uint8_t> out;
  out.reserve(h.file_size);
  append(out, h);
  out.insert(out.end(), body.begin(), body.end());
  return out;
}

Result<FrameTable> parse_frame_table(std::span<const uint8_t> bytes) {
  md::FileHeader h;
  if (bytes.size() < sizeof h) return fail("truncated: {} bytes, smaller than the header", bytes.size());
  std::memcpy(&h, bytes.data(), sizeof h);
  if (std::memcmp(h.magic, md::kMagic, sizeof h.magic) != 0) return fail("not a framecert metadata file (bad magic)");
  if (h.version != md::kVersion)
    return fail("unsupported metadata version {} (this reader knows {}{})", h.version, md::kVersion,
                h.version < md::kVersion
                    ? ": written by an older framecert, regenerate it with `framecert check --metadata`"
                    : "");
  if (h.header_size != sizeof h) return fail("bad header size {}", h.header_size);
  if (h.file_size != bytes.size())
    return fail("file size {} does not match the header's {} (truncated or padded)", bytes.size(), h.file_size);
  if (file_checksum(h, bytes.subspan(sizeof h)) != h.checksum) return fail("checksum mismatch: the file is damaged");
  if ((h.flags & ~md::kFileLinked) != 0) return fail("unknown header flags: written by a newer framecert?");

  // Every array's extent, in 64-bit arithmetic so counts near 2^32 cannot wrap.
  const uint64_t sections_at = sizeof h;
  const uint64_t calls_at = sections_at + uint64_t{h.section_count} * sizeof(md::SectionRecord);
  const uint64_t funcs_at = calls_at + uint64_t{h.call_count} * sizeof(md::CallSiteRecord);
  const uint64_t tails_at = funcs_at + uint64_t{h.function_count} * sizeof(md::FunctionRecord);
  const uint64_t rows_at = tails_at + uint64_t{h.tail_call_count} * sizeof(md::TailCallRecord);
  const uint64_t syscalls_at = rows_at + uint64_t{h.row_count} * sizeof(md::FrameRow);
  const uint64_t slots_at = syscalls_at + uint64_t{h.syscall_count} * sizeof(md::SyscallSiteRecord);
  const uint64_t strings_at = slots_at + uint64_t{h.self_slot_count} * sizeof(md::SelfSlotRecord);
  const uint64_t end = strings_at + h.string_size;
  if (end > bytes.size()) return fail("record counts exceed the file size");
  if (h.string_size == 0 || bytes[strings_at + h.string_size - 1] != 0)
    return fail("string table is not NUL-terminated");

  auto str = [&](uint32_t off) -> Result<std::string> {
    if (off >= h.string_size) return fail("string offset {} out of range", off);
    return std::string(reinterpret_cast<const char*>(bytes.data() + strings_at + off));
  };
  auto record = [&]<typename T>(uint64_t at, uint64_t i, T& out) {
    std::memcpy(&out, bytes.data() + at + i * sizeof(T), sizeof(T));
  };

  FrameTable t;
  t.linked = (h.flags & md::kFileLinked) != 0;
  std::unordered_map<std::string, uint32_t> symbol_index;  // name -> index into target_symbols
  // A record's call target (a Section target's index is checked once every section is read).
  auto decode_target = [&](uint8_t kind, uint32_t ref, uint64_t value) -> Result<CallTarget> {
    switch (static_cast<CallTargetKind>(kind)) {
      case CallTargetKind::Unknown:
        return CallTarget{};
      case CallTargetKind::Address:
        return CallTarget{CallTargetKind::Address, 0, value};
      case CallTargetKind::Section:
        return CallTarget{CallTargetKind::Section, ref, value};
      case CallTargetKind::Symbol: {
        auto sym = str(ref);
        if (!sym || sym->empty()) return fail("call target names no symbol");
        auto [it, fresh] = symbol_index.try_emplace(*sym, static_cast<uint32_t>(t.target_symbols.size()));
        if (fresh) t.target_symbols.push_back(*sym);
        return CallTarget{CallTargetKind::Symbol, it->second, 0};
      }
    }
    return fail("unknown call target kind {}", kind);
  };
  auto name = str(h.object_name);
  auto build_id = str(h.build_id);
  if (!name) return tl::unexpected(name.error());
  if (!build_id) return tl::unexpected(build_id.error());
  t.object_name = *name;
  t.build_id = *build_id;

  for (uint32_t i = 0; i < h.section_count; ++i) {
    md::SectionRecord r;
    record(sections_at, i, r);
    if (uint64_t{r.first_row} + r.row_count > h.row_count || uint64_t{r.first_call} + r.call_count > h.call_count)
      return fail("section {} refers to records past the end of the tables", i);
    FrameSection s;
    auto sname = str(r.name);
    if (!sname) return tl::unexpected(sname.error());
    s.name = *sname;
    s.address = r.address;
    s.size = r.size;
    for (uint32_t j = 0; j < r.row_count; ++j) {
      md::FrameRow row;
      record(rows_at, uint64_t{r.first_row} + j, row);
      if (row.cfa_base > static_cast<uint8_t>(CfaBase::Other))
        return fail("section {} row {}: bad CFA base {}", s.name, j, row.cfa_base);
      if (!s.rows.empty() && row.offset <= s.rows.back().offset) return fail("section {}: rows not sorted", s.name);
      if (row.offset >= s.size && s.size)
        return fail("section {}: row offset {:#x} outside the section", s.name, row.offset);
      s.rows.push_back(
          {row.offset, FrameState{static_cast<CfaBase>(row.cfa_base), row.cfa_offset, row.bp_offset, row.flags}});
    }
    for (uint32_t j = 0; j < r.call_count; ++j) {
      md::CallSiteRecord c;
      record(calls_at, uint64_t{r.first_call} + j, c);
      if (!s.calls.empty() && c.return_offset <= s.calls.back().return_offset)
        return fail("section {}: call sites not sorted", s.name);
      if (c.flags & ~md::kCallFlagsKnown) return fail("section {}: unknown call-site flags {:#x}", s.name, c.flags);
      // Fields a flag or kind does not validate are read as 0, so a table reads back as it is written.
      CallSite site{c.return_offset,
                    c.flags,
                    (c.flags & md::kCallSpDepth) ? c.sp_depth : 0,
                    (c.flags & md::kCallBpDepth) ? c.bp_depth : 0,
                    {}};
      auto target = decode_target(c.target_kind, c.target_ref, c.target);
      if (!target) return fail("section {}: {}", s.name, target.error());
      site.target = *target;
      s.calls.push_back(site);
    }
    t.sections.push_back(std::move(s));
  }
  for (uint32_t i = 0; i < h.function_count; ++i) {
    md::FunctionRecord r;
    record(funcs_at, i, r);
    if (r.section >= h.section_count) return fail("function {} names section {} of {}", i, r.section, h.section_count);
    FunctionEntry f;
    auto fname = str(r.name);
    auto finding = str(r.finding);
    auto parent = str(r.parent);
    if (!fname || !finding || !parent) return fail("function {}: bad string offset", i);
    f.name = *fname;
    f.section = r.section;
    f.offset = r.offset;
    f.size = r.size;
    f.flags = r.flags;
    f.finding = *finding;
    f.parent = *parent;
    if (!t.functions.empty()) {
      const auto& prev = t.functions.back();
      if (prev.section > f.section || (prev.section == f.section && prev.offset > f.offset))
        return fail("functions not sorted at {}", f.name);
    }
    t.functions.push_back(std::move(f));
  }
  for (uint32_t i = 0; i < h.tail_call_count; ++i) {
    md::TailCallRecord r;
    record(tails_at, i, r);
    if (r.section >= t.sections.size())
      return fail("tail call {} names section {} of {}", i, r.section, t.sections.size());
    auto& list = t.sections[r.section].tail_calls;
    if (!list.empty() && r.offset <= list.back().offset) return fail("tail calls not sorted at {}", i);
    auto target = decode_target(r.target_kind, r.target_ref, r.target);
    if (!target) return fail("tail call {}: {}", i, target.error());
    list.push_back({r.offset, *target});
  }
  auto bad_section_target = [&](const CallTarget& c) {
    return c.kind == CallTargetKind::Section && c.ref >= t.sections.size();
  };
  for (const FrameSection& s : t.sections) {
    for (const CallSite& c : s.calls)
      if (bad_section_target(c.target))
        return fail("section {}: call target in section {} of {}", s.name, c.target.ref, t.sections.size());
    for (const TailCall& c : s.tail_calls)
      if (bad_section_target(c.target))
        return fail("section {}: tail call target in section {} of {}", s.name, c.target.ref, t.sections.size());
  }
  for (uint32_t i = 0; i < h.syscall_count; ++i) {
    md::SyscallSiteRecord r;
    record(syscalls_at, i, r);
    if (r.section >= t.sections.size())
      return fail("syscall site {} names section {} of {}", i, r.section, t.sections.size());
    auto& list = t.sections[r.section].syscalls;
    if (r.offset >= r.return_offset) return fail("syscall site {}: empty instruction", i);
    if (!list.empty() && r.return_offset <= list.back().return_offset) return fail("syscall sites not sorted at {}", i);
    list.push_back({r.offset, r.return_offset});
  }
  for (uint32_t i = 0; i < h.self_slot_count; ++i) {
    md::SelfSlotRecord r;
    record(slots_at, i, r);
    if (r.section >= t.sections.size())
      return fail("self slot {} names section {} of {}", i, r.section, t.sections.size());
    const auto kind = static_cast<md::SlotKind>(r.kind);
    if (kind != md::SlotKind::FrameAddress && kind != md::SlotKind::ReturnAddress)
      return fail("self slot {}: unknown kind {}", i, r.kind);
    const auto base = static_cast<md::SlotBase>(r.base);
    if (base != md::SlotBase::Cfa && base != md::SlotBase::CallSp)
      return fail("self slot {}: unknown base {}", i, r.base);
    auto& list = t.sections[r.section].self_slots;
    if (!list.empty() && r.offset < list.back().offset) return fail("self slots not sorted at {}", i);
    list.push_back({r.offset, r.slot_offset, kind, base});
  }
  return t;
}

Result<void> write_frame_table(const FrameTable& table, const std::string& path) {
  std::vector<uint8_t> bytes = serialize_frame_table(table);
  std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) return fail("{}: cannot open for writing", tmp);
    out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
    if (!out) return fail("{}: write failed", tmp);
  }
  // Rename so a reader (or a cache) never sees a half-written file.
  if (std::rename(tmp.c_str(), path.c_str()) != 0) return fail("{}: cannot rename into place", path);
  return {};
}

Result<FrameTable> read_frame_table(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return fail("{}: cannot open", path);
  std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto t = parse_frame_table(bytes);
  if (!t) return fail("{}: {}", path, t.error());
  return t;
}

}  // namespace framecert

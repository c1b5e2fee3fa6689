#include "harness/guest/vmcore.h"

#include <dlfcn.h>
#include <fcntl.h>
#include <gelf.h>
#include <libelf.h>
#include <libkdumpfile/kdumpfile.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <mutex>

#include <fmt/format.h>

namespace framecert::guest {

// libkdumpfile's entry points, resolved once. Only the header's types are compiled in.
struct Vmcore::Library {
  decltype(&::kdump_new) new_ctx = nullptr;
  decltype(&::kdump_free) free_ctx = nullptr;
  decltype(&::kdump_open_fdset) open_fdset = nullptr;
  decltype(&::kdump_read) read = nullptr;
  decltype(&::kdump_get_attr) get_attr = nullptr;
  decltype(&::kdump_set_attr) set_attr = nullptr;
  decltype(&::kdump_get_err) get_err = nullptr;

  static Result<const Library*> get() {
    static Library lib;
    static std::string error;
    static std::once_flag once;
    std::call_once(once, [] {
      void* handle = dlopen("libkdumpfile.so.10", RTLD_NOW | RTLD_LOCAL);
      if (!handle) {
        error = fmt::format("cannot load libkdumpfile (Debian: libkdumpfile10): {}", dlerror());
        return;
      }
      auto sym = [&](auto& fn, const char* name) {
        fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(dlsym(handle, name));
        if (!fn && error.empty()) error = fmt::format("libkdumpfile has no {}", name);
      };
      sym(lib.new_ctx, "kdump_new");
      sym(lib.free_ctx, "kdump_free");
      sym(lib.open_fdset, "kdump_open_fdset");
      sym(lib.read, "kdump_read");
      sym(lib.get_attr, "kdump_get_attr");
      sym(lib.set_attr, "kdump_set_attr");
      sym(lib.get_err, "kdump_get_err");
    });
    if (!error.empty()) return fail("{}", error);
    return &lib;
  }
};

namespace {

constexpr uint32_t kNtPrstatus = 1;
constexpr size_t kPrRegOffset = 112;  // struct elf_prstatus on x86-64: pr_reg after the signal, ids and times
constexpr size_t kUserRegsSize = 27 * 8;
// struct user_regs_struct's order: r15 r14 r13 r12 rbp rbx r11 r10 r9 r8 rax rcx rdx rsi rdi orig_rax rip cs
// eflags rsp ss ...
constexpr size_t kRbp = 4, kRip = 16, kCs = 17, kRsp = 19;
constexpr uint64_t kMaxNotes = 64ull << 20;  // a damaged size field never becomes a huge allocation

std::mutex g_read_lock;  // a kdump context is not thread-safe; the walker reads from one thread anyway

Result<std::vector<uint8_t>> pread_exact(int fd, uint64_t offset, uint64_t size, const std::string& path,
                                         const char* what) {
  if (size > kMaxNotes) return fail("{}: {} of {} bytes: not a plausible dump", path, what, size);
  std::vector<uint8_t> out(size);
  size_t done = 0;
  while (done < size) {
    ssize_t n = pread(fd, out.data() + done, size - done, static_cast<off_t>(offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return fail("{}: {} at offset {:#x} is past the end of the file", path, what, offset);
    done += static_cast<size_t>(n);
  }
  return out;
}

template <typename T>
T load(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

// The note area of an ELF dump (its PT_NOTE segments, concatenated), or nullopt for a file that is not ELF
// (libkdumpfile recognises the other formats). Read before libkdumpfile sees the file: a note segment past the
// end of the file (a damaged or cut-short dump) is refused here, where libkdumpfile would allocate whatever
// size the header claims. (Memory segments cut short only read as nothing.)
Result<std::optional<std::vector<uint8_t>>> elf_notes(int fd, const std::string& path) {
  struct stat st {};
  if (fstat(fd, &st) != 0) return fail("{}: {}", path, std::strerror(errno));
  const uint64_t file_size = static_cast<uint64_t>(st.st_size);
  elf_version(EV_CURRENT);
  Elf* elf = elf_begin(fd, ELF_C_READ, nullptr);
  if (!elf) return std::optional<std::vector<uint8_t>>{};
  if (elf_kind(elf) != ELF_K_ELF) {
    elf_end(elf);
    return std::optional<std::vector<uint8_t>>{};
  }
  std::vector<uint8_t> notes;
  std::string error;
  size_t count = 0;
  if (elf_getphdrnum(elf, &count) != 0) error = fmt::format("{}: no program headers: {}", path, elf_errmsg(-1));
  for (size_t i = 0; i < count && error.empty(); ++i) {
    GElf_Phdr ph;
    if (!gelf_getphdr(elf, static_cast<int>(i), &ph) || ph.p_type != PT_NOTE) continue;
    if (ph.p_offset > file_size || ph.p_filesz > file_size - ph.p_offset) {
      error = fmt::format(
          "{}: its note segment ({} bytes at {:#x}) runs past the end of the file ({} bytes): a damaged or "
          "truncated dump",
          path, ph.p_filesz, ph.p_offset, file_size);
    } else if (auto part = pread_exact(fd, ph.p_offset, ph.p_filesz, path, "the note segment"); !part) {
      error = part.error();
    } else {
      notes.insert(notes.end(), part->begin(), part->end());
    }
  }
  elf_end(elf);
  if (!error.empty()) return fail("{}", error);
  return std::optional<std::vector<uint8_t>>{std::move(notes)};
}

// A diskdump's (makedumpfile's kdump-compressed format, QEMU's kdump-*) notes and what it left out.
struct DiskdumpFacts {
  std::vector<uint8_t> notes;
  int32_t dump_level = 0;  // makedumpfile -d: which kinds of pages were excluded (1: zero pages)
  std::string machine;     // utsname.machine
};

// Read from the kdump sub-header that follows the first block (header version 4 and later).
Result<DiskdumpFacts> diskdump_facts(int fd, const std::string& path) {
  auto head = pread_exact(fd, 0, 464, path, "the diskdump header");
  if (!head) return tl::unexpected(head.error());
  if (std::memcmp(head->data(), "KDUMP   ", 8) != 0) return fail("{}: not a diskdump header", path);
  const int32_t version = load<int32_t>(head->data() + 8);
  const int32_t block_size = load<int32_t>(head->data() + 428);
  // struct new_utsname (six fields of 65 bytes) after the version; machine is the fifth.
  const char* machine = reinterpret_cast<const char*>(head->data() + 12 + 4 * 65);
  if (version < 4) return fail("{}: diskdump header version {} records no CPU notes", path, version);
  if (block_size <= 0) return fail("{}: diskdump block size {}", path, block_size);
  auto sub = pread_exact(fd, static_cast<uint64_t>(block_size), 64, path, "the kdump sub-header");
  if (!sub) return tl::unexpected(sub.error());
  auto notes = pread_exact(fd, load<uint64_t>(sub->data() + 48), load<uint64_t>(sub->data() + 56), path, "the notes");
  if (!notes) return tl::unexpected(notes.error());
  return DiskdumpFacts{std::move(*notes), load<int32_t>(sub->data() + 8), std::string(machine, strnlen(machine, 65))};
}

}  // namespace

Result<std::vector<CpuRegs>> prstatus_registers(const uint8_t* notes, size_t size) {
  std::vector<CpuRegs> cpus;
  size_t at = 0;
  auto align4 = [](uint64_t n) { return (n + 3) & ~uint64_t{3}; };
  while (at + 12 <= size) {
    const uint32_t namesz = load<uint32_t>(notes + at), descsz = load<uint32_t>(notes + at + 4),
                   type = load<uint32_t>(notes + at + 8);
    const uint64_t name_at = at + 12, desc_at = name_at + align4(namesz), next = desc_at + align4(descsz);
    if (next > size) return fail("note {} runs past the note area ({} > {} bytes)", cpus.size(), next, size);
    const bool core = namesz >= 4 && std::memcmp(notes + name_at, "CORE", 4) == 0;
    if (core && type == kNtPrstatus) {
      if (descsz < kPrRegOffset + kUserRegsSize) return fail("NT_PRSTATUS note of {} bytes: too short", descsz);
      const uint8_t* regs = notes + desc_at + kPrRegOffset;
      CpuRegs r;
      r.cpu = static_cast<int>(cpus.size());
      r.rip = load<uint64_t>(regs + kRip * 8);
      r.rsp = load<uint64_t>(regs + kRsp * 8);
      r.rbp = load<uint64_t>(regs + kRbp * 8);
      r.cs = load<uint64_t>(regs + kCs * 8);
      cpus.push_back(r);
    }
    at = next;
  }
  return cpus;
}

Result<std::shared_ptr<Vmcore>> Vmcore::open(const std::string& path) {
  auto lib = Library::get();
  if (!lib) return tl::unexpected(lib.error());
  std::shared_ptr<Vmcore> core(new Vmcore());
  core->path_ = path;
  core->fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (core->fd_ < 0) return fail("{}: {}", path, std::strerror(errno));
  auto elf_note_area = elf_notes(core->fd_, path);
  if (!elf_note_area) return tl::unexpected(elf_note_area.error());
  auto* ctx = (*lib)->new_ctx();
  if (!ctx) return fail("{}: libkdumpfile: out of memory", path);
  core->ctx_ = ctx;
  if ((*lib)->open_fdset(ctx, 1, &core->fd_) != KDUMP_OK) {
    // A flattened file (QEMU 7.2 writes kdump formats so) must be reassembled first: makedumpfile -R.
    char magic[16] = {};
    const bool flattened =
        pread(core->fd_, magic, sizeof magic, 0) == sizeof magic && std::memcmp(magic, "makedumpfile", 12) == 0;
    return fail(
        "{}: not a vmcore libkdumpfile reads ({}){}", path, (*lib)->get_err(ctx),
        flattened ? "; it is in makedumpfile's flattened format: `makedumpfile -R OUT < FILE` reassembles it" : "");
  }
  auto attr = [&](const char* key) -> std::optional<kdump_attr_t> {
    kdump_attr_t a;
    if ((*lib)->get_attr(ctx, key, &a) != KDUMP_OK) return std::nullopt;
    return a;
  };
  auto number = [&](const char* key) -> std::optional<uint64_t> {
    auto a = attr(key);
    if (!a) return std::nullopt;
    if (a->type == KDUMP_NUMBER) return a->val.number;
    if (a->type == KDUMP_ADDRESS) return a->val.address;
    if (a->type == KDUMP_STRING && a->val.string) return std::strtoull(a->val.string, nullptr, 16);
    return std::nullopt;
  };
  auto string = [&](const char* key) -> std::string {
    auto a = attr(key);
    return a && a->type == KDUMP_STRING && a->val.string ? a->val.string : "";
  };
  core->format_ = string("file.format");
  const auto max_pfn = number("max_pfn");
  const auto page_size = number("arch.page_size");
  if (!max_pfn || !page_size) return fail("{}: the dump names no memory size (max_pfn)", path);
  core->size_ = *max_pfn * *page_size;
  core->kernel_.release = string("linux.uts.release");
  core->kernel_.phys_base = number("linux.phys_base");
  core->kernel_.kaslr_offset = number("linux.vmcoreinfo.lines.KERNELOFFSET");
  core->kernel_.build_id = string("linux.vmcoreinfo.lines.BUILD-ID");

  Result<std::vector<uint8_t>> notes;
  std::string machine;
  if (core->format_ == "elf") {
    machine = string("arch.name");
    if (!*elf_note_area) return fail("{}: libkdumpfile reads it as ELF, libelf does not", path);
    notes = std::move(**elf_note_area);
  } else if (core->format_ == "diskdump") {
    auto facts = diskdump_facts(core->fd_, path);
    if (!facts) return tl::unexpected(facts.error());
    notes = std::move(facts->notes);
    machine = facts->machine;
    // Excluded pages read as nothing, unless every excluded page is known to be a zero page (dump level 1):
    // then they read as the zeroes they held. A page excluded as free, cache or user memory stays unknown.
    if (facts->dump_level == 1) {
      kdump_attr_t on;
      on.type = KDUMP_NUMBER;
      on.val.number = 1;
      if ((*lib)->set_attr(ctx, KDUMP_ATTR_ZERO_EXCLUDED, &on) != KDUMP_OK)
        return fail("{}: libkdumpfile: {}", path, (*lib)->get_err(ctx));
    }
  } else {
    return fail("{}: a {} dump: its CPU registers cannot be read (ELF and diskdump dumps can)", path, core->format_);
  }
  if (machine != "x86_64")
    return fail("{}: a dump of {}, not x86_64", path, machine.empty() ? "an unnamed machine" : machine);
  if (!notes) return tl::unexpected(notes.error());
  auto cpus = prstatus_registers(notes->data(), notes->size());
  if (!cpus) return fail("{}: {}", path, cpus.error());
  if (cpus->empty()) return fail("{}: no NT_PRSTATUS note: the dump records no CPU registers", path);
  core->cpus_ = std::move(*cpus);
  return core;
}

Vmcore::~Vmcore() {
  if (ctx_) (*Library::get())->free_ctx(static_cast<kdump_ctx_t*>(ctx_));
  if (fd_ >= 0) ::close(fd_);
}

size_t Vmcore::read(uint64_t phys, void* dst, size_t len) const {
  std::lock_guard lock(g_read_lock);
  size_t done = len;
  // Machine-physical: without Xen the same as the kernel's physical addresses, and read without asking
  // libkdumpfile to work out the kernel's own translation first.
  // A page the dump does not hold (filtered out, past the end) ends the read: `done` says how far it got.
  if ((*Library::get())->read(static_cast<kdump_ctx_t*>(ctx_), KDUMP_MACHPHYSADDR, phys, dst, &done) != KDUMP_OK)
    return std::min(done, len);
  return done;
}

}  // namespace framecert::guest

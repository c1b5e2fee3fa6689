#include "unwinder/memory_guest.h"

#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <mutex>

#include "unwinder/scoped_fd.h"

namespace framecert {

namespace {
constexpr uint64_t kPresent = 1ull << 0;
constexpr uint64_t kPageSizeBit = 1ull << 7;           // PS: a large page at the PDPT (1G) or PD (2M) level
constexpr uint64_t kAddrMask = 0x000ffffffffff000ull;  // bits 51..12 of an entry or CR3
}  // namespace

struct GuestRam::Mapping {
  void* base = MAP_FAILED;
  size_t len = 0;
  ScopedFd fd;  // kept open to notice a truncation (check_intact)
  std::string path;
  ~Mapping() {
    if (base != MAP_FAILED) munmap(base, len);
  }
};

namespace {
// A read of a page past the end of a truncated file raises SIGBUS. While a guarded copy runs, the handler
// jumps back into it; any other SIGBUS keeps its default action. SA_NODEFER leaves the signal unblocked after
// the jump, so sigsetjmp need not save the signal mask (no system call per read).
thread_local sigjmp_buf* t_copy_fault = nullptr;

void on_sigbus(int sig) {
  if (t_copy_fault) siglongjmp(*t_copy_fault, 1);
  signal(sig, SIG_DFL);
  raise(sig);
}

void install_sigbus_handler() {
  static std::once_flag once;
  std::call_once(once, [] {
    struct sigaction sa {};
    sa.sa_handler = on_sigbus;
    sa.sa_flags = SA_NODEFER;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGBUS, &sa, nullptr);
  });
}

// Copies n bytes; returns false (having copied an unknown part) if the source faulted.
bool guarded_copy(void* dst, const void* src, size_t n) {
  sigjmp_buf jb;
  if (sigsetjmp(jb, 0)) {
    t_copy_fault = nullptr;
    return false;
  }
  t_copy_fault = &jb;
  // Compiler barriers: the copy (often inlined into plain loads) must stay between the two stores.
  asm volatile("" ::: "memory");
  std::memcpy(dst, src, n);
  asm volatile("" ::: "memory");
  t_copy_fault = nullptr;
  return true;
}
}  // namespace

Result<GuestRam> GuestRam::map_file(const std::string& path) {
  ScopedFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return fail("{}: {}", path, std::strerror(errno));
  struct stat st;
  if (fstat(fd.get(), &st) != 0) return fail("{}: {}", path, std::strerror(errno));
  if (st.st_size == 0) return fail("{}: empty RAM file", path);
  auto m = std::make_shared<Mapping>();
  m->len = static_cast<size_t>(st.st_size);
  m->base = mmap(nullptr, m->len, PROT_READ, MAP_SHARED, fd.get(), 0);
  if (m->base == MAP_FAILED) return fail("{}: mmap: {}", path, std::strerror(errno));
  m->fd = std::move(fd);
  m->path = path;
  install_sigbus_handler();
  GuestRam ram;
  ram.bytes_ = std::span<const uint8_t>(static_cast<const uint8_t*>(m->base), m->len);
  ram.mapping_ = std::move(m);
  return ram;
}

GuestRam GuestRam::from_bytes(std::span<const uint8_t> bytes) {
  GuestRam ram;
  ram.bytes_ = bytes;
  return ram;
}

GuestRam GuestRam::from_source(std::shared_ptr<const PhysicalSource> source) {
  GuestRam ram;
  ram.source_ = std::move(source);
  return ram;
}

size_t GuestRam::read(GuestPhys addr, void* dst, size_t len) const {
  if (source_) return source_->read(addr.value, dst, len);
  if (addr.value >= bytes_.size()) return 0;
  size_t n = std::min<uint64_t>(len, bytes_.size() - addr.value);
  if (!mapping_) {
    std::memcpy(dst, bytes_.data() + addr.value, n);
    return n;
  }
  return guarded_copy(dst, bytes_.data() + addr.value, n) ? n : 0;
}

Result<bool> GuestRam::check_intact() const {
  if (!mapping_) return true;
  struct stat st;
  if (fstat(mapping_->fd.get(), &st) != 0) return fail("{}: {}", mapping_->path, std::strerror(errno));
  if (static_cast<uint64_t>(st.st_size) < mapping_->len)
    return fail("{}: the RAM file shrank from {} to {} bytes: the guest's memory is gone", mapping_->path,
                mapping_->len, st.st_size);
  return true;
}

std::optional<uint64_t> GuestRam::read_u64(GuestPhys addr) const {
  uint64_t v;
  if (read(addr, &v, sizeof v) != sizeof v) return std::nullopt;
  return v;
}

std::string TranslationFault::describe() const {
  switch (kind) {
    case NonCanonical:
      return "non-canonical address";
    case NotPresent:
      return fmt::format("not present at level {}", level);
    case TableOutsideRam:
      return fmt::format("level-{} table outside guest RAM", level);
  }
  return "?";
}

Result<GuestPhys> translate(const GuestRam& ram, uint64_t cr3, GuestVirt va, TranslationFault* fault) {
  auto fault_out = [&](TranslationFault::Kind k, int level) {
    if (fault) *fault = TranslationFault{k, level};
    return fail("{:#x}: {}", va.value, TranslationFault{k, level}.describe());
  };
  if (!is_canonical(va.value)) return fault_out(TranslationFault::NonCanonical, 0);
  uint64_t table = cr3 & kAddrMask;  // the low 12 bits hold PCID / PWT / PCD, not address
  for (int level = 4; level >= 1; --level) {
    int shift = 12 + 9 * (level - 1);
    uint64_t index = (va.value >> shift) & 0x1ff;
    auto entry = ram.read_u64(GuestPhys(table + index * 8));
    if (!entry) return fault_out(TranslationFault::TableOutsideRam, level);
    if (!(*entry & kPresent)) return fault_out(TranslationFault::NotPresent, level);
    bool large = (level == 3 || level == 2) && (*entry & kPageSizeBit);
    if (large || level == 1) {
      uint64_t page_size = 1ull << shift;
      uint64_t frame = *entry & kAddrMask & ~(page_size - 1);  // large pages: also drop the PAT bit (12)
      return GuestPhys(frame | (va.value & (page_size - 1)));
    }
    table = *entry & kAddrMask;
  }
  return fault_out(TranslationFault::NotPresent, 1);  // unreachable: level 1 always returns
}

size_t GuestVirtualMemory::read(RemoteAddr addr, void* dst, size_t len) {
  auto* out = static_cast<uint8_t*>(dst);
  size_t done = 0;
  while (done < len) {
    uint64_t va = addr.value + done;
    uint64_t page = va & ~0xfffull;
    uint64_t phys_page;
    if (page == cached_page_) {
      phys_page = cached_phys_;
    } else {
      auto pa = translate(ram_, cr3_, GuestVirt(page));
      if (!pa) break;
      phys_page = pa->value;
      cached_page_ = page;
      cached_phys_ = phys_page;
    }
    size_t chunk = std::min<uint64_t>(len - done, 0x1000 - (va & 0xfff));
    size_t n = ram_.read(GuestPhys(phys_page + (va & 0xfff)), out + done, chunk);
    done += n;
    if (n < chunk) break;
  }
  return done;
}

}  // namespace framecert

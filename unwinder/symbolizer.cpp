#include "unwinder/symbolizer.h"

#include <algorithm>

namespace framecert {

namespace {
// Prefer public names over compiler-local ones (e.g. "foo" over "foo.part.0", "__libc_pause" vs "pause"
// is a tie broken by order) when aliases share an address.
int name_rank(const std::string& n) {
  if (n.find('.') != std::string::npos) return 2;
  if (n.rfind("__", 0) == 0) return 1;
  return 0;
}
}  // namespace

SymbolTable::SymbolTable(std::vector<Symbol> symbols) : symbols_(std::move(symbols)) {
  std::stable_sort(symbols_.begin(), symbols_.end(), [](const Symbol& a, const Symbol& b) {
    if (a.address != b.address) return a.address < b.address;
    if (a.size != b.size) return a.size > b.size;
    return name_rank(a.name) < name_rank(b.name);
  });
  symbols_.erase(std::unique(symbols_.begin(), symbols_.end(),
                             [](const Symbol& a, const Symbol& b) { return a.address == b.address; }),
                 symbols_.end());
}

const Symbol* SymbolTable::lookup(uint64_t address) const {
  auto it = std::upper_bound(symbols_.begin(), symbols_.end(), address,
                             [](uint64_t a, const Symbol& s) { return a < s.address; });
  if (it == symbols_.begin()) return nullptr;
  const Symbol& s = *std::prev(it);
  if (s.size > 0) return address - s.address < s.size ? &s : nullptr;
  return &s;  // an unsized label: it extends to the next symbol
}

}  // namespace framecert

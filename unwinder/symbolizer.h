// Function names for addresses, from an object's ELF symbol tables (link-time addresses).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace framecert {

struct Symbol {
  uint64_t address = 0;  // link-time virtual address
  uint64_t size = 0;     // 0 for assembly labels without .size
  std::string name;
};

class SymbolTable {
 public:
  // Takes unsorted symbols; duplicates at one address keep the first global-looking name.
  explicit SymbolTable(std::vector<Symbol> symbols = {});
  // The symbol containing `address`: inside [address, address+size), or, for a sized-0 symbol, the
  // nearest one below that no other symbol separates from it.
  const Symbol* lookup(uint64_t address) const;
  bool empty() const { return symbols_.empty(); }
  size_t size() const { return symbols_.size(); }
  const std::vector<Symbol>& all() const { return symbols_; }

 private:
  std::vector<Symbol> symbols_;  // sorted by address, unique addresses
};

}  // namespace framecert

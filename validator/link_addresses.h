// Places the metadata of a relocatable object at the addresses its code got in a linked image:
// vmlinux.o is validated (it still has the relocations that switch tables and alternatives need) and
// its metadata is then addressed like vmlinux, so a guest pc can be looked up directly.
//
// In Linux 6.1 vmlinux is linked from vmlinux.a, not from vmlinux.o, so each original object's code
// keeps its internal layout but the objects may be ordered differently: the mapping is not one offset
// per section. The metadata is split into runs of functions that moved by the same amount.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "unwinder/frame_table.h"
#include "unwinder/result.h"
#include "unwinder/symbolizer.h"

namespace framecert {

struct LinkReport {
  size_t runs = 0;  // address ranges of the new table
  size_t functions_placed = 0;
  size_t functions_unplaced = 0;  // their instructions have no metadata at link addresses
  size_t functions_verified = 0;  // found in the image at exactly the computed address
};

// Returns a table addressed like `image_path`. Fails (rather than guess) if any placed function is not
// at its computed address in the image.
// `object_path` is the object the table describes: its code labels (entry code has few functions) anchor
// the runs too.
Result<FrameTable> place_at_link_addresses(const FrameTable& table, const std::string& object_path,
                                           const std::string& image_path, LinkReport* report);

// A loaded kernel module: its metadata (of the relocatable .ko, sections at 0) and its function symbols
// placed at the load address of each section (/sys/module/NAME/sections). Unlike vmlinux, a module's
// sections are placed whole: each moved by one offset, so the placement is exact by construction.
struct PlacedModule {
  FrameTable table;             // linked; a section the module did not load (.init.text after init) describes nothing
  std::vector<Symbol> symbols;  // function symbols at load addresses
  std::vector<std::pair<uint64_t, uint64_t>> ranges;  // [lo, hi) of every placed metadata section
  std::vector<std::string> warnings;                  // objects whose symbols or annotations were unreadable
  // Whether the STACK_FRAME_NON_STANDARD list is known: the .ko kept its annotation section, or every object
  // it was linked from was read. When not, nothing in the module may be vouched for.
  bool non_standard_known = false;
};

// `objects`: the objects linked into the module (optional). Kbuild's module link discards .discard.*, so
// their .discard.func_stack_frame_non_standard (validator/non_standard.h) is where STACK_FRAME_NON_STANDARD
// survives; those functions are flagged kFuncNonStandard (never vouched for).
PlacedModule place_at_load_addresses(FrameTable table, const std::string& module_object,
                                     const std::vector<std::string>& objects,
                                     const std::map<std::string, uint64_t>& sections);

}  // namespace framecert

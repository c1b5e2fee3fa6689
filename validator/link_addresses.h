// Places the metadata of a relocatable object at the addresses its code got in a linked image:
// vmlinux.o is validated (it still has the relocations that switch tables and alternatives need) and
// its metadata is then addressed like vmlinux, so a guest pc can be looked up directly.
//
// In Linux 6.1 vmlinux is linked from vmlinux.a, not from vmlinux.o, so each original object's code
// keeps its internal layout but the objects may be ordered differently: the mapping is not one offset
// per section. The metadata is split into runs of functions that moved by the same amount.
#pragma once

#include <string>

#include "unwinder/frame_table.h"
#include "unwinder/result.h"

namespace framecert {

struct LinkReport {
  size_t runs = 0;                 // address ranges of the new table
  size_t functions_placed = 0;
  size_t functions_unplaced = 0;   // their instructions have no metadata at link addresses
  size_t functions_verified = 0;   // found in the image at exactly the computed address
};

// Returns a table addressed like `image_path`. Fails (rather than guess) if any placed function is not
// at its computed address in the image.
// `object_path` is the object the table describes: its code labels (entry code has few functions) anchor
// the runs too.
Result<FrameTable> place_at_link_addresses(const FrameTable& table, const std::string& object_path,
                                           const std::string& image_path, LinkReport* report);

}  // namespace framecert

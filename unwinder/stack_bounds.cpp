#include "unwinder/stack_bounds.h"

namespace framecert {

std::optional<StackBounds> stack_bounds_for(const std::vector<Mapping>& maps, uint64_t rsp) {
  for (const Mapping& m : maps) {
    if (m.contains(rsp) && m.readable && m.writable && !m.executable) return StackBounds{m.start, m.end};
  }
  return std::nullopt;
}

}  // namespace framecert

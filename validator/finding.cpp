#include "validator/finding.h"

#include <fmt/format.h>

namespace framecert {

std::string Finding::text() const {
  if (!positional) return message;
  if (function.empty()) return fmt::format("{}+0x{:x}: {}", section, offset, message);
  return fmt::format("{}+0x{:x}: {}", function, func_offset, message);
}

}  // namespace framecert

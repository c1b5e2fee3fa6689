// A rule violation found by the checker, rendered in objtool's words and shape.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace framecert {

struct Finding {
  std::string function;  // the function symbol (parent for .cold parts), empty for section-level findings
  std::string section;
  uint32_t section_index = 0;  // ELF section index (0 for findings without a position)
  uint64_t offset = 0;         // section offset of the instruction
  uint64_t func_offset = 0;    // offset inside `function`
  std::string message;         // objtool's text, e.g. "call without frame pointer save/setup"
  // Without an instruction position: "FUNC() falls through to next function NEXT()" and
  // ".text: unexpected end of section" carry their whole text in `message`.
  bool positional = true;
  // --explain: the path from the function's entry (each step "FUNC+0xOFF: what happened"), and for a
  // mismatch the two states that disagreed.
  std::vector<std::string> path;
  std::string state_seen;
  std::string state_expected;

  // The text after "warning: objtool: " / "warning: framecert: ", e.g. "foo+0x5: call without ...".
  std::string text() const;
};

}  // namespace framecert

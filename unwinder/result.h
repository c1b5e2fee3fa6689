// Errors are values: a Result<T> holds a T or a one-line message naming what failed and why.
// Exceptions are used only at the edge (main) — never to report bad input.
#pragma once

#include <string>
#include <utility>

#include <fmt/format.h>
#include <tl/expected.hpp>

namespace framecert {

template <typename T>
using Result = tl::expected<T, std::string>;

template <typename... Args>
tl::unexpected<std::string> fail(fmt::format_string<Args...> f, Args&&... args) {
  return tl::unexpected<std::string>(fmt::format(f, std::forward<Args>(args)...));
}

}  // namespace framecert

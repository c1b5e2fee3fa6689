#include "validator/kernel_format.h"

namespace framecert {

std::optional<KernelFormat> kernel_format_of_version(std::string_view version) {
  unsigned major = 0, minor = 0;
  size_t i = 0, digits = 0;
  for (; i < version.size() && version[i] >= '0' && version[i] <= '9'; ++i, ++digits)
    major = major * 10 + (version[i] - '0');
  if (!digits || digits > 3 || i >= version.size() || version[i] != '.') return std::nullopt;
  for (++i, digits = 0; i < version.size() && version[i] >= '0' && version[i] <= '9'; ++i, ++digits)
    minor = minor * 10 + (version[i] - '0');
  if (!digits || digits > 3 || (i < version.size() && version[i] != '.' && version[i] != '-')) return std::nullopt;
  return major > 6 || (major == 6 && minor >= 10) ? KernelFormat::Linux6_10 : KernelFormat::Linux6_1;
}

}  // namespace framecert

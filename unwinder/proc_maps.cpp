#include "unwinder/proc_maps.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <sstream>

#include "unwinder/scoped_fd.h"

namespace framecert {

Result<std::vector<Mapping>> parse_maps(const std::string& text) {
  std::vector<Mapping> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    Mapping m;
    char perms[5] = {};
    unsigned long long start, end, offset, inode = 0;
    unsigned major = 0, minor = 0;
    int path_at = 0;
    // "start-end perms offset major:minor inode   path"
    if (std::sscanf(line.c_str(), "%llx-%llx %4s %llx %x:%x %llu %n", &start, &end, perms, &offset, &major, &minor,
                    &inode, &path_at) < 7)
      return fail("malformed maps line: {}", line);
    m.dev_major = major;
    m.dev_minor = minor;
    m.inode = inode;
    m.start = start;
    m.end = end;
    m.offset = offset;
    m.readable = perms[0] == 'r';
    m.writable = perms[1] == 'w';
    m.executable = perms[2] == 'x';
    if (path_at > 0 && static_cast<size_t>(path_at) <= line.size()) m.path = line.substr(path_at);
    out.push_back(std::move(m));
  }
  return out;
}

Result<std::vector<Mapping>> read_maps(pid_t pid) {
  std::string path = "/proc/" + std::to_string(pid) + "/maps";
  auto text = read_proc_file(path);
  if (!text) return tl::unexpected(text.error());
  return parse_maps(*text);
}

Result<std::string> read_proc_file(const std::string& path) {
  ScopedFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return fail("{}: cannot open: {}", path, std::strerror(errno));
  std::string out;
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n == 0) return out;
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail("{}: cannot read: {}", path, std::strerror(errno));
    }
    out.append(buf, static_cast<size_t>(n));
  }
}

}  // namespace framecert

// Test-side helpers for the plugin's control socket: a scratch directory and a unix stream client.
#pragma once

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <optional>
#include <string>

namespace framecert::shadow::testing {

// A fresh directory under /tmp (short, so socket paths fit sun_path), removed with everything in it.
class ScratchDir {
 public:
  ScratchDir() {
    char templ[] = "/tmp/fcshadow-test.XXXXXX";
    if (mkdtemp(templ) != nullptr) path_ = templ;
  }
  ~ScratchDir() {
    std::error_code ec;
    if (!path_.empty()) std::filesystem::remove_all(path_, ec);
  }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// A connected client; -1 if nobody listens at `path`.
inline int connect_to(const std::string& path) {
  const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
  if (connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
    close(fd);
    return -1;
  }
  const timeval timeout{10, 0};  // a hung server fails the test instead of hanging it
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  return fd;
}

inline bool send_text(int fd, const std::string& text) {
  size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = send(fd, text.data() + done, text.size() - done, MSG_NOSIGNAL);
    if (n <= 0) return false;
    done += static_cast<size_t>(n);
  }
  return true;
}

// Reads until `text` ends with `terminator` (or EOF, error, timeout); returns what was read.
inline std::string read_until(int fd, const std::string& terminator) {
  std::string text;
  char buf[4096];
  while (text.size() < terminator.size() ||
         text.compare(text.size() - terminator.size(), terminator.size(), terminator) != 0) {
    const ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    text.append(buf, static_cast<size_t>(n));
  }
  return text;
}

// One connection: send `requests`, close the sending side, read everything until the server closes.
inline std::optional<std::string> round_trip(const std::string& path, const std::string& requests) {
  const int fd = connect_to(path);
  if (fd < 0) return std::nullopt;
  std::string reply;
  if (send_text(fd, requests)) {
    shutdown(fd, SHUT_WR);
    char buf[4096];
    ssize_t n;
    while ((n = recv(fd, buf, sizeof buf, 0)) > 0) reply.append(buf, static_cast<size_t>(n));
  }
  close(fd);
  return reply;
}

}  // namespace framecert::shadow::testing

#include "harness/shadow/server.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace framecert::shadow {

namespace {

constexpr size_t kMaxRequestLine = 4096;
constexpr int kStallMilliseconds = 2000;

std::string errno_text(const char* what) { return std::string(what) + ": " + std::strerror(errno); }

bool make_address(const std::string& path, sockaddr_un* addr) {
  std::memset(addr, 0, sizeof *addr);
  addr->sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof addr->sun_path) return false;
  std::memcpy(addr->sun_path, path.data(), path.size());
  return true;
}

// A socket file left by a run that died without cleaning up is in the way of bind(); one that still accepts
// connections belongs to a live QEMU and must not be stolen.
bool clear_stale_socket(const std::string& path, const sockaddr_un& addr, std::string* error) {
  struct stat st;
  if (lstat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return true;
    *error = errno_text(("cannot stat " + path).c_str());
    return false;
  }
  if (!S_ISSOCK(st.st_mode)) {
    *error = path + " exists and is not a socket";
    return false;
  }
  const int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (probe < 0) {
    *error = errno_text("socket");
    return false;
  }
  const bool live = connect(probe, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0;
  close(probe);
  if (live) {
    *error = path + " is in use by another process";
    return false;
  }
  if (unlink(path.c_str()) != 0) {
    *error = errno_text(("cannot remove stale socket " + path).c_str());
    return false;
  }
  return true;
}

// Sends all of `data` without ever blocking in send(): waits for room with poll(), which also watches the
// stop pipe (stop() must not wait for a slow reader) and gives up after kStallMilliseconds without progress (a
// client that stops reading must not hold the thread, and with it every other client, for long).
bool send_all(int fd, int wake_fd, const std::string& data) {
  size_t done = 0;
  while (done < data.size()) {
    // MSG_NOSIGNAL: a client that hung up must not raise SIGPIPE, which would kill QEMU.
    const ssize_t n = send(fd, data.data() + done, data.size() - done, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      done += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) return false;
    pollfd fds[2] = {{fd, POLLOUT, 0}, {wake_fd, POLLIN, 0}};
    const int ready = poll(fds, 2, kStallMilliseconds);
    if (ready < 0 && errno == EINTR) continue;
    if (ready <= 0 || fds[1].revents != 0) return false;  // stalled, or stopping
  }
  return true;
}

struct Client {
  int fd;
  std::string pending;  // bytes received after the last complete line
};

}  // namespace

std::unique_ptr<ControlServer> ControlServer::start(const std::string& path, Handler handler, std::string* error) {
  sockaddr_un addr;
  if (!make_address(path, &addr)) {
    *error = "socket path must be non-empty and shorter than " + std::to_string(sizeof addr.sun_path) + " bytes";
    return nullptr;
  }
  if (!clear_stale_socket(path, addr, error)) return nullptr;
  // Every descriptor is close-on-exec: QEMU may spawn helpers, which must not inherit the control socket.
  const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    *error = errno_text("socket");
    return nullptr;
  }
  if (bind(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
    *error = errno_text(("cannot bind " + path).c_str());
    close(fd);
    return nullptr;
  }
  if (listen(fd, 8) != 0) {
    *error = errno_text("listen");
    close(fd);
    unlink(path.c_str());
    return nullptr;
  }
  int pipe_fds[2];
  if (pipe2(pipe_fds, O_CLOEXEC) != 0) {
    *error = errno_text("pipe");
    close(fd);
    unlink(path.c_str());
    return nullptr;
  }
  std::unique_ptr<ControlServer> server(new ControlServer(path, std::move(handler), fd, pipe_fds[0], pipe_fds[1]));
  // The thread starts with every signal blocked, so QEMU's signals (SIGTERM, its timers) keep going to QEMU's
  // own threads and never interrupt, or get swallowed by, this one.
  sigset_t all, saved;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &saved);
  server->thread_ = std::thread([s = server.get()] { s->run(); });
  pthread_sigmask(SIG_SETMASK, &saved, nullptr);
  return server;
}

ControlServer::ControlServer(std::string path, Handler handler, int listen_fd, int wake_read, int wake_write)
    : path_(std::move(path)),
      handler_(std::move(handler)),
      listen_fd_(listen_fd),
      wake_read_(wake_read),
      wake_write_(wake_write) {}

ControlServer::~ControlServer() { stop(); }

void ControlServer::stop() {
  if (stopped_) return;
  stopped_ = true;
  const char byte = 0;
  while (write(wake_write_, &byte, 1) < 0 && errno == EINTR) {
  }
  if (thread_.joinable()) thread_.join();
  close(listen_fd_);
  close(wake_read_);
  close(wake_write_);
  unlink(path_.c_str());
}

void ControlServer::run() {
  std::vector<Client> clients;
  std::vector<pollfd> fds;
  for (;;) {
    fds.clear();
    fds.push_back({wake_read_, POLLIN, 0});
    fds.push_back({listen_fd_, POLLIN, 0});
    for (const Client& c : clients) fds.push_back({c.fd, POLLIN, 0});
    if (poll(fds.data(), fds.size(), -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (fds[0].revents != 0) break;
    // Serve the clients first: accepting appends to `clients`, which fds[2..] index.
    for (size_t i = clients.size(); i-- > 0;) {
      if (fds[i + 2].revents == 0) continue;
      Client& c = clients[i];
      char buf[4096];
      const ssize_t n = recv(c.fd, buf, sizeof buf, 0);
      bool keep = n > 0 || (n < 0 && errno == EINTR);
      if (n > 0) c.pending.append(buf, static_cast<size_t>(n));
      size_t newline;
      while (keep && (newline = c.pending.find('\n')) != std::string::npos) {
        keep = send_all(c.fd, wake_read_, handler_(std::string_view(c.pending).substr(0, newline)));
        c.pending.erase(0, newline + 1);
      }
      if (keep && c.pending.size() > kMaxRequestLine) {
        send_all(c.fd, wake_read_, "error request too long\n");
        keep = false;
      }
      if (!keep) {
        close(c.fd);
        clients.erase(clients.begin() + static_cast<std::ptrdiff_t>(i));
      }
    }
    if (fds[1].revents & POLLIN) {
      const int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd >= 0) clients.push_back({fd, {}});
    }
  }
  for (const Client& c : clients) close(c.fd);
}

}  // namespace framecert::shadow

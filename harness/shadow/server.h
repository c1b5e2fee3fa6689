// The plugin's control socket: a unix stream socket served by one background thread, one request line at a
// time, any number of requests per connection and any number of connections. No QEMU dependency (the unit
// tests drive it directly).
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace framecert::shadow {

class ControlServer {
 public:
  // Maps one request line (without '\n') to its complete reply. Called on the server thread only.
  using Handler = std::function<std::string(std::string_view)>;

  // Binds and listens on `path`, then starts the thread. A socket file already at `path` that nobody listens
  // on (a crashed earlier run) is replaced; a live socket or any other kind of file is an error. On failure
  // returns null and says why in *error.
  static std::unique_ptr<ControlServer> start(const std::string& path, Handler handler, std::string* error);

  ~ControlServer();
  ControlServer(const ControlServer&) = delete;
  ControlServer& operator=(const ControlServer&) = delete;

  // Wakes the thread, joins it, closes every descriptor and removes the socket file. Idempotent, and prompt
  // even while a reply is stuck on a client that stopped reading (the wait for room also watches the wake-up).
  void stop();

 private:
  ControlServer(std::string path, Handler handler, int listen_fd, int wake_read, int wake_write);
  void run();

  std::string path_;
  Handler handler_;
  int listen_fd_;
  int wake_read_;  // self-pipe: stop() writes a byte so the thread's poll() returns
  int wake_write_;
  std::thread thread_;
  bool stopped_ = false;
};

}  // namespace framecert::shadow

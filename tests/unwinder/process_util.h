// Spawning and watching the test programs of tests/programs.
#pragma once

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "unwinder/metadata_cache.h"
#include "unwinder/process_target.h"
#include "validator/validator.h"

namespace framecert::testing {

class Child {
 public:
  // Starts `path args...` with stdout on a pipe and waits for its first line (the "ready" line).
  Child(const std::string& path, std::vector<std::string> args = {}) {
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0) return;
    pid_ = fork();
    if (pid_ == 0) {
      // A test killed on its timeout never runs ~Child: the program must not outlive it (they spin).
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      dup2(fds[1], 1);
      std::vector<char*> argv{const_cast<char*>(path.c_str())};
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      execv(path.c_str(), argv.data());
      _exit(127);
    }
    close(fds[1]);
    out_ = fds[0];
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (line_.find('\n') == std::string::npos && std::chrono::steady_clock::now() < deadline) {
      pollfd p{out_, POLLIN, 0};
      if (poll(&p, 1, 100) <= 0) continue;
      char buf[256];
      ssize_t n = read(out_, buf, sizeof buf);
      if (n <= 0) break;
      line_.append(buf, static_cast<size_t>(n));
    }
  }
  ~Child() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    if (out_ >= 0) close(out_);
  }
  pid_t pid() const { return pid_; }
  const std::string& ready_line() const { return line_; }
  bool ready() const { return line_.rfind("ready", 0) == 0; }

  // Waits until at least `sleeping` threads are asleep (parked in their system call).
  bool wait_parked(size_t sleeping, size_t total) const {
    for (int i = 0; i < 500; ++i) {
      size_t s = 0, n = 0;
      for (auto& e : std::filesystem::directory_iterator("/proc/" + std::to_string(pid_) + "/task")) {
        ++n;
        if (thread_state(pid_, std::stoi(e.path().filename())) == 'S') ++s;
      }
      if (s >= sleeping && n >= total) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return false;
  }

  // True if no thread is stopped or traced: the process was left running.
  bool running_free() const {
    for (auto& e : std::filesystem::directory_iterator("/proc/" + std::to_string(pid_) + "/task")) {
      char st = thread_state(pid_, std::stoi(e.path().filename()));
      if (st == 't' || st == 'T' || st == 0 || st == 'Z') return false;
    }
    std::ifstream status("/proc/" + std::to_string(pid_) + "/status");
    std::string line;
    while (std::getline(status, line))
      if (line.rfind("TracerPid:", 0) == 0) return std::stoi(line.substr(10)) == 0;
    return false;
  }

 private:
  pid_t pid_ = -1;
  int out_ = -1;
  std::string line_;
};

// Metadata from the validator, cached in a per-run directory.
inline MetadataProvider validator_metadata(std::shared_ptr<MetadataCache>& keep) {
  std::string dir =
      (std::filesystem::temp_directory_path() / ("framecert-test-cache-" + std::to_string(getpid()))).string();
  keep = std::make_shared<MetadataCache>(dir, "test", [](const std::string& path) -> Result<FrameTable> {
    auto r = check_object(path, CheckOptions{});
    if (!r) return tl::unexpected(r.error());
    return std::move(r->metadata);
  });
  auto cache = keep;
  return [cache](const ElfImage& img, std::string& error) -> std::shared_ptr<const FrameTable> {
    auto t = cache->get(img);
    if (!t) {
      error = t.error();
      return nullptr;
    }
    return *t;
  };
}

}  // namespace framecert::testing

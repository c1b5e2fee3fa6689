// Two pieces of one object's work at once: `there` on a thread of its own, `here` on the caller's. Returns when
// both are done; what `there` throws is thrown here (an exception must not leave a thread: std::terminate), and
// if `here` throws, `there` is still waited for first.
#pragma once

#include <exception>
#include <thread>

namespace framecert {

template <typename Here, typename There>
void run_beside(Here&& here, There&& there) {
  std::exception_ptr there_failed;
  {
    std::jthread worker([&] {
      try {
        there();
      } catch (...) {
        there_failed = std::current_exception();
      }
    });
    here();
  }
  if (there_failed) std::rethrow_exception(there_failed);
}

}  // namespace framecert

#pragma once
// ScopedFd: the owner of one descriptor that config/ opens for a moment (an input file, a probe
// socket), closed when it goes out of scope. (engine/unique_fd.h is the engine's; config/ and
// engine/ share only config/plan.h.)

#include <unistd.h>

namespace tp::config {

class ScopedFd {
  public:
    explicit ScopedFd(int fd) : fd_(fd) {}
    ScopedFd(const ScopedFd&) = delete;
    ScopedFd& operator=(const ScopedFd&) = delete;
    ~ScopedFd() {
        if (fd_ >= 0) {
            ::close(fd_);
        }
    }
    int get() const { return fd_; }

  private:
    int fd_;
};

}  // namespace tp::config

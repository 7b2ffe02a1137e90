#pragma once
// Small OS helpers for tpbench: ADDR:PORT parsing, RAII fds, socket set-up, CPU lists and
// pinning, the monotonic clock, and naming the cause of a failed connection.

#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace tp::bench {

class UniqueFd {
  public:
    UniqueFd() = default;
    explicit UniqueFd(int fd) : fd_(fd) {}
    UniqueFd(UniqueFd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
    UniqueFd& operator=(UniqueFd&& o) noexcept {
        if (this != &o) {
            reset(std::exchange(o.fd_, -1));
        }
        return *this;
    }
    ~UniqueFd() { reset(); }
    UniqueFd(const UniqueFd&) = delete;
    UniqueFd& operator=(const UniqueFd&) = delete;

    int get() const noexcept { return fd_; }
    int release() noexcept { return std::exchange(fd_, -1); }
    void reset(int fd = -1) noexcept {
        if (fd_ >= 0) {
            ::close(fd_);
        }
        fd_ = fd;
    }

  private:
    int fd_ = -1;
};

struct SockAddr {
    sockaddr_storage ss{};
    socklen_t len = 0;
    int family() const noexcept { return ss.ss_family; }
    const sockaddr* sa() const noexcept { return reinterpret_cast<const sockaddr*>(&ss); }
};

// "127.0.0.1:9000", "[::1]:9000", "localhost:9000". Returns false with `err` set.
bool parse_addr(std::string_view text, SockAddr& out, std::string& err);
std::string format_addr(const SockAddr& a);

// "0", "0,2", "0-3,6". Returns false on a malformed list.
bool parse_cpu_list(std::string_view text, std::vector<int>& out);
// Pins the calling thread to one CPU; returns 0 or -errno.
int pin_this_thread(int cpu);

// Listening socket with SO_REUSEADDR + SO_REUSEPORT (one per server thread). -errno on failure.
int listen_socket(const SockAddr& a, int backlog);
// Blocking connect with a timeout; returns the connected fd (TCP_NODELAY set) or -errno.
// A timeout is reported as -ETIMEDOUT.
int connect_blocking(const SockAddr& a, int timeout_ms);
void set_nodelay(int fd);

uint64_t now_ns() noexcept;

// Why a connection attempt or exchange failed, for error counts by cause.
enum class Cause : int { Refused, Unreachable, Timeout, Reset, Closed, NoPorts, Other, Count_ };
Cause cause_of(int err) noexcept;  // err: positive errno; 0 means "peer closed early"
const char* cause_name(Cause c) noexcept;

}  // namespace tp::bench

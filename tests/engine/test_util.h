#pragma once
// Small helpers the engine's in-process socket tests share: a loopback address, the port a
// socket got, polling with a bound (a hang fails the test; no timing is asserted), and the
// process's open descriptors (leak checks).
#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <thread>

#include "config/plan.h"

namespace tp::engine::test {

inline plan::SockAddr loopback(uint16_t port) {
    plan::SockAddr a;
    auto* s = reinterpret_cast<sockaddr_in*>(&a.storage);
    s->sin_family = AF_INET;
    s->sin_port = htons(port);
    s->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.len = sizeof(sockaddr_in);
    return a;
}

inline uint16_t local_port(int fd) {
    sockaddr_in6 s{};
    socklen_t len = sizeof s;
    getsockname(fd, reinterpret_cast<sockaddr*>(&s), &len);
    return ntohs(s.sin6_port);  // sin_port and sin6_port share their offset
}

// f() until it holds, for up to 5 s.
template <typename F>
bool eventually(F&& f) {
    for (int i = 0; i < 500; ++i) {
        if (f()) {
            return true;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return false;
}

inline size_t open_fds() {
    size_t n = 0;
    if (DIR* d = opendir("/proc/self/fd")) {
        while (readdir(d) != nullptr) {
            ++n;
        }
        closedir(d);
    }
    return n;
}

}  // namespace tp::engine::test

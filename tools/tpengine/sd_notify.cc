// sd_notify without libsystemd: the protocol is one AF_UNIX datagram per state change.
// NOTIFY_SOCKET is a path, or an abstract name written with a leading '@'.
#include "tools/tpengine/sd_notify.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <ctime>

#include "engine/unique_fd.h"

namespace tp::tools {

bool sd_notify_state(const std::string& state) {
    const char* path = std::getenv("NOTIFY_SOCKET");
    if (path == nullptr || path[0] == '\0') {
        return true;
    }
    size_t n = std::strlen(path);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if ((path[0] != '/' && path[0] != '@') || n >= sizeof addr.sun_path) {
        return false;
    }
    std::memcpy(addr.sun_path, path, n);
    if (path[0] == '@') {
        addr.sun_path[0] = '\0';  // abstract namespace; the length below carries the name
    }
    auto len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + n);
    engine::UniqueFd fd(socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    if (!fd.valid()) {
        return false;
    }
    ssize_t sent = sendto(fd.get(), state.data(), state.size(), MSG_NOSIGNAL,
                          reinterpret_cast<const sockaddr*>(&addr), len);
    return sent == static_cast<ssize_t>(state.size());
}

void notify_ready(const std::string& status) {
    (void)sd_notify_state("READY=1\nSTATUS=" + status);
}

void notify_reloading() {
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    unsigned long long usec = static_cast<unsigned long long>(ts.tv_sec) * 1'000'000ULL +
                              static_cast<unsigned long long>(ts.tv_nsec) / 1'000ULL;
    (void)sd_notify_state("RELOADING=1\nMONOTONIC_USEC=" + std::to_string(usec));
}

void notify_stopping() {
    (void)sd_notify_state("STOPPING=1");
}

}  // namespace tp::tools

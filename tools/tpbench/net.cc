// OS helpers for tpbench (see net.h).

#include "tools/tpbench/net.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <time.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace tp::bench {

bool parse_addr(std::string_view text, SockAddr& out, std::string& err) {
    std::string host;
    std::string port;
    if (!text.empty() && text.front() == '[') {
        const auto close = text.find(']');
        if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':') {
            err = "expected [ADDR]:PORT";
            return false;
        }
        host = std::string(text.substr(1, close - 1));
        port = std::string(text.substr(close + 2));
    } else {
        const auto colon = text.rfind(':');
        if (colon == std::string_view::npos) {
            err = "expected ADDR:PORT";
            return false;
        }
        host = std::string(text.substr(0, colon));
        port = std::string(text.substr(colon + 1));
    }
    if (port.empty() || port.find_first_not_of("0123456789") != std::string::npos) {
        err = "bad port '" + port + "'";
        return false;
    }
    if (host.empty() || host == "*") {
        host = "0.0.0.0";
    }
    addrinfo hints{};
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    addrinfo* res = nullptr;
    const int rc = getaddrinfo(host.c_str(), port.c_str(), &hints, &res);
    if (rc != 0 || res == nullptr) {
        err = "cannot resolve '" + host + "': " + gai_strerror(rc);
        return false;
    }
    std::memcpy(&out.ss, res->ai_addr, res->ai_addrlen);
    out.len = res->ai_addrlen;
    freeaddrinfo(res);
    return true;
}

std::string format_addr(const SockAddr& a) {
    char host[INET6_ADDRSTRLEN] = "?";
    char out[INET6_ADDRSTRLEN + 16];
    if (a.family() == AF_INET) {
        const auto* s = reinterpret_cast<const sockaddr_in*>(&a.ss);
        inet_ntop(AF_INET, &s->sin_addr, host, sizeof host);
        std::snprintf(out, sizeof out, "%s:%d", host, ntohs(s->sin_port));
    } else {
        const auto* s6 = reinterpret_cast<const sockaddr_in6*>(&a.ss);
        inet_ntop(AF_INET6, &s6->sin6_addr, host, sizeof host);
        std::snprintf(out, sizeof out, "[%s]:%d", host, ntohs(s6->sin6_port));
    }
    return out;
}

bool parse_cpu_list(std::string_view text, std::vector<int>& out) {
    out.clear();
    std::string s(text);
    char* p = s.data();
    while (*p != '\0') {
        char* end = nullptr;
        const long a = std::strtol(p, &end, 10);
        if (end == p || a < 0 || a > 4095) {
            return false;
        }
        long b = a;
        p = end;
        if (*p == '-') {
            ++p;
            b = std::strtol(p, &end, 10);
            if (end == p || b < a || b > 4095) {
                return false;
            }
            p = end;
        }
        for (long c = a; c <= b; ++c) {
            out.push_back(static_cast<int>(c));
        }
        if (*p == ',') {
            ++p;
        } else if (*p != '\0') {
            return false;
        }
    }
    return !out.empty();
}

int pin_this_thread(int cpu) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    const int rc = pthread_setaffinity_np(pthread_self(), sizeof set, &set);
    return -rc;
}

int listen_socket(const SockAddr& a, int backlog) {
    UniqueFd fd(::socket(a.family(), SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (fd.get() < 0) {
        return -errno;
    }
    const int one = 1;
    setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    setsockopt(fd.get(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    if (::bind(fd.get(), a.sa(), a.len) < 0 || ::listen(fd.get(), backlog) < 0) {
        return -errno;
    }
    return fd.release();
}

void set_nodelay(int fd) {
    const int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

int connect_blocking(const SockAddr& a, int timeout_ms) {
    UniqueFd fd(::socket(a.family(), SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (fd.get() < 0) {
        return -errno;
    }
    if (::connect(fd.get(), a.sa(), a.len) < 0) {
        if (errno != EINPROGRESS) {
            return -errno;
        }
        pollfd p{fd.get(), POLLOUT, 0};
        const int n = ::poll(&p, 1, timeout_ms);
        if (n == 0) {
            return -ETIMEDOUT;
        }
        if (n < 0) {
            return -errno;
        }
        int soerr = 0;
        socklen_t sl = sizeof soerr;
        getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &soerr, &sl);
        if (soerr != 0) {
            return -soerr;
        }
    }
    // Back to blocking: io_uring ops then wait in the kernel instead of returning EAGAIN.
    const int fl = ::fcntl(fd.get(), F_GETFL);
    ::fcntl(fd.get(), F_SETFL, fl & ~O_NONBLOCK);
    set_nodelay(fd.get());
    return fd.release();
}

uint64_t now_ns() noexcept {
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

Cause cause_of(int err) noexcept {
    switch (err) {
        case 0:
            return Cause::Closed;
        case ECONNREFUSED:
            return Cause::Refused;
        case ENETUNREACH:
        case EHOSTUNREACH:
        case ENETDOWN:
            return Cause::Unreachable;
        case ETIMEDOUT:
        case ETIME:
        case ECANCELED:
            return Cause::Timeout;
        case ECONNRESET:
        case EPIPE:
        case ECONNABORTED:
            return Cause::Reset;
        case EADDRNOTAVAIL:
        case EADDRINUSE:
            return Cause::NoPorts;
        default:
            return Cause::Other;
    }
}

const char* cause_name(Cause c) noexcept {
    switch (c) {
        case Cause::Refused:
            return "refused";
        case Cause::Unreachable:
            return "unreachable";
        case Cause::Timeout:
            return "timeout";
        case Cause::Reset:
            return "reset";
        case Cause::Closed:
            return "closed_early";
        case Cause::NoPorts:
            return "no_local_port";
        default:
            return "other";
    }
}

}  // namespace tp::bench

// Socket helpers around the ring: everything here runs once per connection or per listener.
#include "engine/sock.h"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <linux/netfilter_ipv4.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

namespace tp::engine {

namespace {
constexpr int kIp6tSoOriginalDst = 80;  // IP6T_SO_ORIGINAL_DST, linux/netfilter_ipv6/ip6_tables.h

int set_int(int fd, int level, int opt, int v) {
    return setsockopt(fd, level, opt, &v, sizeof v);
}

// Any address as 16 bytes (IPv4 as ::ffff:a.b.c.d) and its port.
bool to_v6(const sockaddr* sa, in6_addr& a, uint16_t& port) {
    if (sa->sa_family == AF_INET) {
        const auto* s4 = reinterpret_cast<const sockaddr_in*>(sa);
        std::memset(&a, 0, sizeof a);
        a.s6_addr[10] = 0xff;
        a.s6_addr[11] = 0xff;
        std::memcpy(&a.s6_addr[12], &s4->sin_addr, 4);
        port = s4->sin_port;
        return true;
    }
    if (sa->sa_family == AF_INET6) {
        const auto* s6 = reinterpret_cast<const sockaddr_in6*>(sa);
        a = s6->sin6_addr;
        port = s6->sin6_port;
        return true;
    }
    return false;
}

bool is_any(const in6_addr& a) {
    static const uint8_t v4any[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 0, 0};
    return IN6_IS_ADDR_UNSPECIFIED(&a) || std::memcmp(&a, v4any, 16) == 0;
}
}  // namespace

Result<UniqueFd> make_listener(const plan::Listener& l) {
    int family = l.address.family();
    UniqueFd fd(socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!fd.valid()) {
        return errno_error("socket");
    }
    set_int(fd.get(), SOL_SOCKET, SO_REUSEADDR, 1);
    if (set_int(fd.get(), SOL_SOCKET, SO_REUSEPORT, 1) != 0) {
        return errno_error("setsockopt SO_REUSEPORT");
    }
    if (family == AF_INET6) {
        if (set_int(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, l.v6only ? 1 : 0) != 0) {
            return errno_error("setsockopt IPV6_V6ONLY");
        }
    }
    if (l.transparent) {
        int rc = family == AF_INET6 ? set_int(fd.get(), IPPROTO_IPV6, IPV6_TRANSPARENT, 1)
                                    : set_int(fd.get(), IPPROTO_IP, IP_TRANSPARENT, 1);
        if (rc != 0) {
            return errno_error("setsockopt IP_TRANSPARENT");
        }
        if (family == AF_INET6) {  // a dual-stack transparent listener also takes IPv4
            set_int(fd.get(), IPPROTO_IP, IP_TRANSPARENT, 1);
        }
    }
    // Inherited by every accepted socket: no setsockopt per connection.
    set_int(fd.get(), IPPROTO_TCP, TCP_NODELAY, 1);
    if (l.fast_open) {
        set_int(fd.get(), IPPROTO_TCP, TCP_FASTOPEN, 256);
    }
    if (bind(fd.get(), l.address.get(), l.address.len) != 0) {
        return errno_error("bind");
    }
    if (listen(fd.get(), l.backlog) != 0) {
        return errno_error("listen");
    }
    return fd;
}

void update_listener(int fd, const plan::Listener& was, const plan::Listener& now) {
    if (was.fast_open != now.fast_open) {  // allowed in LISTEN state; 0 turns it off
        set_int(fd, IPPROTO_TCP, TCP_FASTOPEN, now.fast_open ? 256 : 0);
    }
    if (was.backlog != now.backlog) {
        listen(fd, now.backlog);  // on a listening socket: only the queue's limit changes
    }
}

plan::SockAddr unmap_v4(const plan::SockAddr& a) {
    if (a.family() != AF_INET6) {
        return a;
    }
    const auto* s6 = reinterpret_cast<const sockaddr_in6*>(&a.storage);
    if (!IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr)) {
        return a;
    }
    plan::SockAddr r;
    auto* s4 = reinterpret_cast<sockaddr_in*>(&r.storage);
    s4->sin_family = AF_INET;
    s4->sin_port = s6->sin6_port;
    std::memcpy(&s4->sin_addr, &s6->sin6_addr.s6_addr[12], 4);
    r.len = sizeof(sockaddr_in);
    return r;
}

plan::SockAddr peer_addr(int fd) {
    plan::SockAddr a;
    a.len = sizeof a.storage;
    if (getpeername(fd, reinterpret_cast<sockaddr*>(&a.storage), &a.len) != 0) {
        a.len = 0;
    }
    return a;
}

plan::SockAddr local_addr(int fd) {
    plan::SockAddr a;
    a.len = sizeof a.storage;
    if (getsockname(fd, reinterpret_cast<sockaddr*>(&a.storage), &a.len) != 0) {
        a.len = 0;
    }
    return a;
}

namespace {
// `family`: the client's (v4-mapped counts as AF_INET).
bool conntrack_destination(int fd, int family, plan::SockAddr& out) {
    out = plan::SockAddr{};
    if (family == AF_INET) {
        out.len = sizeof(sockaddr_in);
        if (getsockopt(fd, SOL_IP, SO_ORIGINAL_DST, &out.storage, &out.len) == 0) {
            return true;
        }
    } else if (family == AF_INET6) {
        out.len = sizeof(sockaddr_in6);
        if (getsockopt(fd, SOL_IPV6, kIp6tSoOriginalDst, &out.storage, &out.len) == 0) {
            return true;
        }
    }
    out.len = 0;
    return false;
}

// A non-transparent listener on one address and port: every connection it accepts has exactly
// that local address.
bool bound_to_one_address(const plan::Listener& l) {
    if (l.address.family() == AF_INET) {
        const auto* s = reinterpret_cast<const sockaddr_in*>(&l.address.storage);
        return s->sin_addr.s_addr != htonl(INADDR_ANY) && s->sin_port != 0;
    }
    if (l.address.family() == AF_INET6) {
        const auto* s = reinterpret_cast<const sockaddr_in6*>(&l.address.storage);
        return !IN6_IS_ADDR_UNSPECIFIED(&s->sin6_addr) && s->sin6_port != 0;
    }
    return false;
}
}  // namespace

bool original_destination(int fd, const plan::Listener& l, plan::SockAddr& out) {
    return original_destination(fd, l, out, plan::SockAddr{});
}

bool original_destination(int fd, const plan::Listener& l, plan::SockAddr& out,
                          const plan::SockAddr& peer) {
    // The client's family picks the conntrack option; asked for only when not known yet.
    auto family = [&] { return unmap_v4(peer.len != 0 ? peer : peer_addr(fd)).family(); };
    switch (l.orig_dst) {
        case plan::OrigDst::local_address:
            out = local_addr(fd);
            break;
        case plan::OrigDst::conntrack:
            conntrack_destination(fd, family(), out);
            break;
        case plan::OrigDst::automatic:
            // TPROXY keeps the original destination as the socket's local address; conntrack
            // would not know it (HAProxy skips SO_ORIGINAL_DST on transparent sockets too).
            if (l.transparent) {
                out = local_addr(fd);
            } else if (!conntrack_destination(fd, family(), out)) {
                // Not translated: the local address, which on a socket bound to one address
                // is that address (a system call fewer per connection while logging).
                out = bound_to_one_address(l) ? l.address : local_addr(fd);
            }
            break;
    }
    out = unmap_v4(out);
    return out.len != 0;
}

Result<UniqueFd> make_upstream(const plan::SockAddr& target, plan::SourceMode source,
                               const plan::SockAddr& client, uint32_t mark, bool fast_open) {
    int family = target.family();
    UniqueFd fd(socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!fd.valid()) {
        return errno_error("socket");
    }
    if (mark != 0 && set_int(fd.get(), SOL_SOCKET, SO_MARK, static_cast<int>(mark)) != 0) {
        return errno_error("setsockopt SO_MARK");
    }
    set_int(fd.get(), IPPROTO_TCP, TCP_NODELAY, 1);
    if (fast_open) {
        set_int(fd.get(), IPPROTO_TCP, TCP_FASTOPEN_CONNECT, 1);
    }
    if (source != plan::SourceMode::proxy) {
        plan::SockAddr src = unmap_v4(client);
        if (src.family() != family) {
            return Error{EAFNOSUPPORT, "client address family differs from upstream"};
        }
        int rc = family == AF_INET6 ? set_int(fd.get(), IPPROTO_IPV6, IPV6_TRANSPARENT, 1)
                                    : set_int(fd.get(), IPPROTO_IP, IP_TRANSPARENT, 1);
        if (rc != 0) {
            return errno_error("setsockopt IP_TRANSPARENT (upstream)");
        }
        auto any_port = [&] {
            if (family == AF_INET6) {
                reinterpret_cast<sockaddr_in6*>(&src.storage)->sin6_port = 0;
            } else {
                reinterpret_cast<sockaddr_in*>(&src.storage)->sin_port = 0;
                // Port 0 with a fixed source address: let connect() pick the port.
                set_int(fd.get(), IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1);
            }
        };
        if (source == plan::SourceMode::client) {
            any_port();
        } else {
            set_int(fd.get(), SOL_SOCKET, SO_REUSEADDR, 1);
        }
        int brc = bind(fd.get(), src.get(), src.len);
        if (brc != 0 && errno == EADDRINUSE && source == plan::SourceMode::client_port) {
            // The client's port is taken on this host (e.g. it is one of our own listening
            // ports, which lie inside the usual ephemeral range): keep the client's address,
            // let the kernel pick the port, rather than refuse the connection.
            any_port();
            brc = bind(fd.get(), src.get(), src.len);
        }
        if (brc != 0) {
            return errno_error("bind upstream source");
        }
    }
    return fd;
}

void set_linger_reset(int fd) {
    linger lg{1, 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
}

bool client_gone(int fd) {
    char b;
    ssize_t n = recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n > 0) {
        return false;  // a request is waiting: serve it even if the client closed since
    }
    if (n == 0) {
        return true;  // FIN without a byte: a client that gave up while queued
    }
    return errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR;  // ECONNRESET...
}

std::string format_addr(const plan::SockAddr& a) {
    // snprintf rather than string concatenation: g++ 12 -O3 warns falsely (-Wrestrict) on the
    // latter.
    char host[INET6_ADDRSTRLEN] = "?";
    char out[INET6_ADDRSTRLEN + 16];
    if (a.family() == AF_INET) {
        const auto* s = reinterpret_cast<const sockaddr_in*>(&a.storage);
        inet_ntop(AF_INET, &s->sin_addr, host, sizeof host);
        std::snprintf(out, sizeof out, "%s:%u", host, ntohs(s->sin_port));
        return out;
    }
    if (a.family() == AF_INET6) {
        const auto* s = reinterpret_cast<const sockaddr_in6*>(&a.storage);
        inet_ntop(AF_INET6, &s->sin6_addr, host, sizeof host);
        std::snprintf(out, sizeof out, "[%s]:%u", host, ntohs(s->sin6_port));
        return out;
    }
    return "-";
}

void SelfSet::add_listener(const plan::SockAddr& a) {
    Ep e{};
    if (a.len == 0 || !to_v6(a.get(), e.addr, e.port)) {
        return;
    }
    e.wildcard = is_any(e.addr);
    listeners_.push_back(e);
}

void SelfSet::load_local_addresses() {
    locals_.clear();
    ifaddrs* list = nullptr;
    if (getifaddrs(&list) != 0) {
        return;
    }
    for (ifaddrs* i = list; i != nullptr; i = i->ifa_next) {
        if (i->ifa_addr == nullptr) {
            continue;
        }
        in6_addr a;
        uint16_t port;
        if (to_v6(i->ifa_addr, a, port)) {
            locals_.push_back(a);
        }
    }
    freeifaddrs(list);
}

bool SelfSet::is_local(const in6_addr& a) const {
    if (IN6_IS_ADDR_LOOPBACK(&a) || (IN6_IS_ADDR_V4MAPPED(&a) && a.s6_addr[12] == 127)) {
        return true;
    }
    for (const in6_addr& l : locals_) {
        if (std::memcmp(&l, &a, sizeof a) == 0) {
            return true;
        }
    }
    return false;
}

bool SelfSet::contains(const plan::SockAddr& dst) const {
    in6_addr a;
    uint16_t port;
    if (dst.len == 0 || !to_v6(dst.get(), a, port)) {
        return false;
    }
    for (const Ep& e : listeners_) {
        if (e.port != port) {
            continue;
        }
        if (std::memcmp(&e.addr, &a, sizeof a) == 0 || (e.wildcard && is_local(a))) {
            return true;
        }
    }
    return false;
}

}  // namespace tp::engine

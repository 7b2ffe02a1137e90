// UDP sockets: listeners, upstream sockets and reply sockets (plain syscalls; each runs once per
// listener, flow or remote address, never per datagram).
#include "engine/udp_sock.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <netinet/ip6.h>
#include <netinet/udp.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <cerrno>
#include <cstring>

namespace tp::engine {

namespace {
int set_int(int fd, int level, int opt, int v) {
    return setsockopt(fd, level, opt, &v, sizeof v);
}

void set_rcvbuf(int fd) {
    if (set_int(fd, SOL_SOCKET, SO_RCVBUFFORCE, kUdpRcvBuf) != 0) {
        set_int(fd, SOL_SOCKET, SO_RCVBUF, kUdpRcvBuf);
    }
}

int set_transparent(int fd, int family) {
    if (family == AF_INET6) {
        int rc = set_int(fd, IPPROTO_IPV6, IPV6_TRANSPARENT, 1);
        set_int(fd, IPPROTO_IP, IP_TRANSPARENT, 1);  // dual-stack sockets also carry IPv4
        return rc;
    }
    return set_int(fd, IPPROTO_IP, IP_TRANSPARENT, 1);
}
}  // namespace

Result<UniqueFd> make_udp_listener(const plan::Listener& l) {
    int family = l.address.family();
    UniqueFd fd(socket(family, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (!fd.valid()) {
        return errno_error("socket");
    }
    set_int(fd.get(), SOL_SOCKET, SO_REUSEADDR, 1);
    if (set_int(fd.get(), SOL_SOCKET, SO_REUSEPORT, 1) != 0) {
        return errno_error("setsockopt SO_REUSEPORT");
    }
    if (family == AF_INET6 && set_int(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, l.v6only ? 1 : 0) != 0) {
        return errno_error("setsockopt IPV6_V6ONLY");
    }
    if (l.transparent) {
        if (set_transparent(fd.get(), family) != 0) {
            return errno_error("setsockopt IP_TRANSPARENT");
        }
        // The original destination of every datagram arrives as a control message.
        if (set_int(fd.get(), IPPROTO_IP, IP_RECVORIGDSTADDR, 1) != 0 && family == AF_INET) {
            return errno_error("setsockopt IP_RECVORIGDSTADDR");
        }
        if (family == AF_INET6 && set_int(fd.get(), IPPROTO_IPV6, IPV6_RECVORIGDSTADDR, 1) != 0) {
            return errno_error("setsockopt IPV6_RECVORIGDSTADDR");
        }
    }
    set_rcvbuf(fd.get());
    if (bind(fd.get(), l.address.get(), l.address.len) != 0) {
        return errno_error("bind");
    }
    return fd;
}

Result<UniqueFd> make_udp_upstream(int family, plan::SourceMode source,
                                   const plan::SockAddr& client, uint32_t mark) {
    UniqueFd fd(socket(family, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (!fd.valid()) {
        return errno_error("socket");
    }
    if (mark != 0 && set_int(fd.get(), SOL_SOCKET, SO_MARK, static_cast<int>(mark)) != 0) {
        return errno_error("setsockopt SO_MARK");
    }
    // No fragmentation by us: a datagram too large for the path fails with EMSGSIZE (counted)
    // instead of being split; ICMP errors are reported on this unconnected socket.
    if (family == AF_INET6) {
        set_int(fd.get(), IPPROTO_IPV6, IPV6_MTU_DISCOVER, IPV6_PMTUDISC_DO);
        set_int(fd.get(), IPPROTO_IPV6, IPV6_RECVERR, 1);
    } else {
        set_int(fd.get(), IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_DO);
        set_int(fd.get(), IPPROTO_IP, IP_RECVERR, 1);
    }
    set_rcvbuf(fd.get());
    if (source != plan::SourceMode::proxy) {
        if (set_transparent(fd.get(), family) != 0) {
            return errno_error("setsockopt IP_TRANSPARENT");
        }
        plan::SockAddr src = client;
        if (source == plan::SourceMode::client) {
            if (src.family() == AF_INET) {
                reinterpret_cast<sockaddr_in*>(&src.storage)->sin_port = 0;
            } else {
                reinterpret_cast<sockaddr_in6*>(&src.storage)->sin6_port = 0;
            }
        } else {
            set_int(fd.get(), SOL_SOCKET, SO_REUSEADDR, 1);
        }
        if (bind(fd.get(), src.get(), src.len) != 0) {
            return errno_error("bind upstream source");
        }
    }
    return fd;
}

Result<UniqueFd> make_udp_reply(const plan::SockAddr& local, uint32_t mark) {
    int family = local.family();
    UniqueFd fd(socket(family, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (!fd.valid()) {
        return errno_error("socket");
    }
    set_int(fd.get(), SOL_SOCKET, SO_REUSEADDR, 1);
    if (mark != 0 && set_int(fd.get(), SOL_SOCKET, SO_MARK, static_cast<int>(mark)) != 0) {
        return errno_error("setsockopt SO_MARK");
    }
    if (family == AF_INET6) {
        set_int(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, 1);
    }
    if (set_transparent(fd.get(), family) != 0) {
        return errno_error("setsockopt IP_TRANSPARENT");
    }
    // Nothing is read from it: a tiny receive buffer bounds what stray datagrams can pin.
    set_int(fd.get(), SOL_SOCKET, SO_RCVBUF, 1);
    if (bind(fd.get(), local.get(), local.len) != 0) {
        return errno_error("bind reply source");
    }
    return fd;
}

Result<UniqueFd> make_udp_raw(int family, uint32_t mark) {
    UniqueFd fd(socket(family, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, IPPROTO_RAW));
    if (!fd.valid()) {
        return errno_error("socket raw");
    }
    if (mark != 0 && set_int(fd.get(), SOL_SOCKET, SO_MARK, static_cast<int>(mark)) != 0) {
        return errno_error("setsockopt SO_MARK");
    }
    set_transparent(fd.get(), family);
    return fd;
}

namespace {
uint32_t sum16(const void* data, size_t len, uint32_t acc) {
    const auto* p = static_cast<const uint8_t*>(data);
    for (; len > 1; p += 2, len -= 2) {
        acc += static_cast<uint32_t>(p[0] << 8 | p[1]);
    }
    if (len) {
        acc += static_cast<uint32_t>(p[0] << 8);
    }
    return acc;
}

uint16_t fold(uint32_t acc) {
    while (acc >> 16) {
        acc = (acc & 0xFFFF) + (acc >> 16);
    }
    uint16_t c = static_cast<uint16_t>(~acc & 0xFFFF);
    return htons(c == 0 ? 0xFFFF : c);  // 0 means "no checksum" in UDP: send all ones instead
}
}  // namespace

int send_udp_raw(int fd, const sockaddr* from, const sockaddr* to, const void* payload,
                 uint32_t len) {
    uint8_t hdr[sizeof(ip6_hdr) + sizeof(udphdr)] = {};
    size_t ip_len;
    udphdr udp{};
    udp.uh_ulen = htons(static_cast<uint16_t>(sizeof udp + len));
    uint32_t acc = 0;
    sockaddr_storage dst{};
    socklen_t dst_len;
    if (from->sa_family == AF_INET) {
        const auto* f = reinterpret_cast<const sockaddr_in*>(from);
        const auto* t = reinterpret_cast<const sockaddr_in*>(to);
        ip ih{};
        ih.ip_v = 4;
        ih.ip_hl = 5;
        ih.ip_ttl = 64;
        ih.ip_p = IPPROTO_UDP;
        ih.ip_src = f->sin_addr;
        ih.ip_dst = t->sin_addr;  // length, id and header checksum: filled in by the kernel
        std::memcpy(hdr, &ih, sizeof ih);
        ip_len = sizeof ih;
        udp.uh_sport = f->sin_port;
        udp.uh_dport = t->sin_port;
        acc = sum16(&f->sin_addr, 4, acc);
        acc = sum16(&t->sin_addr, 4, acc);
        acc += IPPROTO_UDP + static_cast<uint32_t>(sizeof udp + len);
        auto* d = reinterpret_cast<sockaddr_in*>(&dst);
        *d = *t;
        d->sin_port = 0;
        dst_len = sizeof *d;
    } else {
        const auto* f = reinterpret_cast<const sockaddr_in6*>(from);
        const auto* t = reinterpret_cast<const sockaddr_in6*>(to);
        ip6_hdr ih{};
        ih.ip6_flow = htonl(6u << 28);
        ih.ip6_plen = htons(static_cast<uint16_t>(sizeof udp + len));
        ih.ip6_nxt = IPPROTO_UDP;
        ih.ip6_hlim = 64;
        ih.ip6_src = f->sin6_addr;
        ih.ip6_dst = t->sin6_addr;
        std::memcpy(hdr, &ih, sizeof ih);
        ip_len = sizeof ih;
        udp.uh_sport = f->sin6_port;
        udp.uh_dport = t->sin6_port;
        acc = sum16(&f->sin6_addr, 16, acc);
        acc = sum16(&t->sin6_addr, 16, acc);
        acc += IPPROTO_UDP + static_cast<uint32_t>(sizeof udp + len);
        auto* d = reinterpret_cast<sockaddr_in6*>(&dst);
        *d = *t;
        d->sin6_port = 0;
        dst_len = sizeof *d;
    }
    acc = sum16(&udp, sizeof udp, acc);
    acc = sum16(payload, len, acc);
    udp.uh_sum = fold(acc);
    std::memcpy(hdr + ip_len, &udp, sizeof udp);
    iovec iov[2] = {{hdr, ip_len + sizeof udp}, {const_cast<void*>(payload), len}};
    msghdr mh{};
    mh.msg_name = &dst;
    mh.msg_namelen = dst_len;
    mh.msg_iov = iov;
    mh.msg_iovlen = 2;
    ssize_t n = sendmsg(fd, &mh, MSG_DONTWAIT);
    return n < 0 ? -errno : static_cast<int>(n);
}

}  // namespace tp::engine

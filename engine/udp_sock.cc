// UDP sockets: listeners, upstream sockets and reply sockets (plain syscalls; each runs once per
// listener, flow or remote address, never per datagram).
#include "engine/udp_sock.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>

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

}  // namespace tp::engine

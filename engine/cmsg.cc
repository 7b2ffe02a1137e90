// Multishot recvmsg buffer layout, ORIGDSTADDR and UDP_GRO parsing.
#include "engine/cmsg.h"

#include <netinet/in.h>
#include <netinet/udp.h>

#include <cstring>

namespace tp::engine {

bool origdst_from_cmsg(const cmsghdr* c, plan::SockAddr& out) {
    if (c->cmsg_level == SOL_IP && c->cmsg_type == IP_ORIGDSTADDR &&
        c->cmsg_len >= CMSG_LEN(sizeof(sockaddr_in))) {
        out = plan::SockAddr{};
        std::memcpy(&out.storage, CMSG_DATA(c), sizeof(sockaddr_in));
        out.len = sizeof(sockaddr_in);
        return out.storage.ss_family == AF_INET;
    }
    if (c->cmsg_level == SOL_IPV6 && c->cmsg_type == IPV6_ORIGDSTADDR &&
        c->cmsg_len >= CMSG_LEN(sizeof(sockaddr_in6))) {
        sockaddr_in6 s6;
        std::memcpy(&s6, CMSG_DATA(c), sizeof s6);
        if (s6.sin6_family != AF_INET6) {
            return false;
        }
        out = plan::SockAddr{};
        if (IN6_IS_ADDR_V4MAPPED(&s6.sin6_addr)) {
            auto* s4 = reinterpret_cast<sockaddr_in*>(&out.storage);
            s4->sin_family = AF_INET;
            s4->sin_port = s6.sin6_port;
            std::memcpy(&s4->sin_addr, &s6.sin6_addr.s6_addr[12], 4);
            out.len = sizeof(sockaddr_in);
        } else {
            std::memcpy(&out.storage, &s6, sizeof s6);
            out.len = sizeof s6;
        }
        return true;
    }
    return false;
}

bool parse_recvmsg(void* buf, int res, const msghdr& mh, RecvView& out) {
    out = RecvView{};
    msghdr m = mh;  // the helpers take a non-const template
    io_uring_recvmsg_out* o = io_uring_recvmsg_validate(buf, res, &m);
    if (o == nullptr) {
        return false;
    }
    if (o->namelen > 0 && o->namelen <= static_cast<uint32_t>(mh.msg_namelen)) {
        out.name = static_cast<const sockaddr*>(io_uring_recvmsg_name(o));
        out.namelen = o->namelen;
    }
    if (mh.msg_controllen > 0 && !(o->flags & MSG_CTRUNC)) {
        for (cmsghdr* c = io_uring_recvmsg_cmsg_firsthdr(o, &m); c != nullptr;
             c = io_uring_recvmsg_cmsg_nexthdr(o, &m, c)) {
            if (origdst_from_cmsg(c, out.origdst)) {
                out.has_origdst = true;
            } else if (c->cmsg_level == SOL_UDP && c->cmsg_type == UDP_GRO &&
                       c->cmsg_len >= CMSG_LEN(sizeof(int))) {
                int seg = 0;
                std::memcpy(&seg, CMSG_DATA(c), sizeof seg);
                out.gro_size = seg > 0 ? static_cast<uint32_t>(seg) : 0;
            }
        }
    }
    out.payload = static_cast<const uint8_t*>(io_uring_recvmsg_payload(o, &m));
    out.len = io_uring_recvmsg_payload_length(o, res, &m);
    out.full_len = o->payloadlen;
    out.truncated = (o->flags & MSG_TRUNC) != 0 || o->payloadlen > out.len;
    if (out.gro_size >= out.len) {
        out.gro_size = 0;  // one segment: an ordinary datagram
    }
    return true;
}

}  // namespace tp::engine

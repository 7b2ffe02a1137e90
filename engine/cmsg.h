#pragma once
// Reading one multishot recvmsg completion: the io_uring_recvmsg_out layout in a provided
// buffer (header, source name, control messages, payload), the original destination
// carried by IP_ORIGDSTADDR / IPV6_ORIGDSTADDR, and the UDP_GRO segment size. Pure parsing,
// testable without sockets.

#include <liburing.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstdint>

#include "config/plan.h"

namespace tp::engine {

// Calls f(data, n) for each datagram of `len` bytes cut at `seg` (0: one datagram, which may be
// empty): the datagrams of a GRO buffer, each keeping its boundary.
template <typename F>
inline void for_each_segment(const uint8_t* data, uint32_t len, uint32_t seg, F&& f) {
    uint32_t off = 0;
    do {
        uint32_t n = seg == 0 ? len : std::min(seg, len - off);
        f(data + off, n);
        off += n;
    } while (off < len);
}

struct RecvView {
    const sockaddr* name = nullptr;  // the sender; nullptr when the name was cut short
    socklen_t namelen = 0;
    const uint8_t* payload = nullptr;
    uint32_t len = 0;        // bytes of payload in the buffer
    uint32_t full_len = 0;   // the datagram's real length (MSG_TRUNC)
    bool truncated = false;  // the datagram did not fit the buffer
    bool has_origdst = false;
    plan::SockAddr origdst;  // v4-mapped IPv6 unmapped to IPv4
    // UDP_GRO: the payload is several datagrams back to back, each `gro_size` bytes except the
    // last, which may be shorter (0: one datagram).
    uint32_t gro_size = 0;

    uint32_t dgrams() const { return gro_size == 0 ? 1 : (len + gro_size - 1) / gro_size; }
    uint32_t dgram_max() const { return gro_size == 0 ? full_len : gro_size; }
    template <typename F>
    void for_each_dgram(F&& f) const {
        for_each_segment(payload, len, gro_size, f);
    }
};

// Parses a completion of `res` bytes in `buf` received with the multishot template `mh`.
// False when the layout is invalid (should not happen; the datagram is dropped).
bool parse_recvmsg(void* buf, int res, const msghdr& mh, RecvView& out);

// The original destination in one control message, if it is one.
bool origdst_from_cmsg(const cmsghdr* c, plan::SockAddr& out);

// Name space the templates reserve: a sockaddr_in6 (28 bytes) rounded up to 8, because the
// kernel lays the control messages right after it in the buffer, and a cmsghdr must be aligned.
constexpr socklen_t kNameLen = (sizeof(sockaddr_in6) + 7) & ~size_t{7};

// Control space for the UDP_GRO segment size (an int), which every template reserves.
constexpr size_t kGroControlLen = CMSG_SPACE(sizeof(int));

// Control space the listener's template reserves: both families' ORIGDSTADDR, and UDP_GRO.
constexpr size_t kListenerControlLen =
    CMSG_SPACE(sizeof(sockaddr_in6)) + CMSG_SPACE(sizeof(sockaddr_in)) + kGroControlLen;

}  // namespace tp::engine

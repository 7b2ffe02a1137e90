// SOCKS5 UDP header codec (see socks5_udp.h).
#include "engine/handshake/socks5_udp.h"

#include <cstring>

namespace tp::engine::hs {

namespace {
constexpr uint8_t atyp_v4 = 0x01;
constexpr uint8_t atyp_domain = 0x03;
constexpr uint8_t atyp_v6 = 0x04;
}  // namespace

uint32_t socks5_udp_header(const plan::SockAddr& dst, uint8_t* out) {
    out[0] = 0;  // RSV
    out[1] = 0;
    out[2] = 0;  // FRAG: standalone datagram
    if (dst.family() == AF_INET) {
        const auto* s = reinterpret_cast<const sockaddr_in*>(dst.get());
        out[3] = atyp_v4;
        std::memcpy(out + 4, &s->sin_addr, 4);
        std::memcpy(out + 8, &s->sin_port, 2);
        return 10;
    }
    if (dst.family() != AF_INET6) {
        return 0;
    }
    const auto* s6 = reinterpret_cast<const sockaddr_in6*>(dst.get());
    if (IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr)) {
        out[3] = atyp_v4;
        std::memcpy(out + 4, &s6->sin6_addr.s6_addr[12], 4);
        std::memcpy(out + 8, &s6->sin6_port, 2);
        return 10;
    }
    out[3] = atyp_v6;
    std::memcpy(out + 4, &s6->sin6_addr, 16);
    std::memcpy(out + 20, &s6->sin6_port, 2);
    return 22;
}

Socks5UdpReply parse_socks5_udp(std::span<const uint8_t> in) {
    Socks5UdpReply r;
    if (in.size() < 4) {
        r.status = UdpHeader::short_input;
        return r;
    }
    if (in[0] != 0 || in[1] != 0) {
        r.status = UdpHeader::malformed;
        return r;
    }
    if (in[2] != 0) {
        r.status = UdpHeader::fragment;
        return r;
    }
    uint32_t addr_len = 0;
    uint32_t addr_at = 4;
    switch (in[3]) {
        case atyp_v4:
            addr_len = 4;
            break;
        case atyp_v6:
            addr_len = 16;
            break;
        case atyp_domain:
            if (in.size() < 5) {
                r.status = UdpHeader::short_input;
                return r;
            }
            addr_len = in[4];
            addr_at = 5;
            if (addr_len == 0) {
                r.status = UdpHeader::malformed;
                return r;
            }
            break;
        default:
            r.status = UdpHeader::malformed;
            return r;
    }
    uint32_t len = addr_at + addr_len + 2;
    if (in.size() < len) {
        r.status = UdpHeader::short_input;
        return r;
    }
    const uint8_t* a = in.data() + addr_at;
    const uint8_t* p = a + addr_len;
    r.port = static_cast<uint16_t>((p[0] << 8) | p[1]);
    if (in[3] == atyp_v4) {
        auto* s = reinterpret_cast<sockaddr_in*>(&r.from.storage);
        s->sin_family = AF_INET;
        std::memcpy(&s->sin_addr, a, 4);
        std::memcpy(&s->sin_port, p, 2);
        r.from.len = sizeof(sockaddr_in);
    } else if (in[3] == atyp_v6) {
        auto* s6 = reinterpret_cast<sockaddr_in6*>(&r.from.storage);
        s6->sin6_family = AF_INET6;
        std::memcpy(&s6->sin6_addr, a, 16);
        std::memcpy(&s6->sin6_port, p, 2);
        r.from.len = sizeof(sockaddr_in6);
    } else {
        r.domain = std::string_view(reinterpret_cast<const char*>(a), addr_len);
    }
    r.status = UdpHeader::ok;
    r.header_len = len;
    return r;
}

plan::SockAddr socks5_relay_address(const plan::SockAddr& bound, const plan::SockAddr& server) {
    auto port = [](const plan::SockAddr& a) -> uint16_t {
        return a.family() == AF_INET ? reinterpret_cast<const sockaddr_in*>(a.get())->sin_port
                                     : reinterpret_cast<const sockaddr_in6*>(a.get())->sin6_port;
    };
    plan::SockAddr r = bound;
    bool any = false;
    if (r.family() == AF_INET) {
        any = reinterpret_cast<const sockaddr_in*>(r.get())->sin_addr.s_addr == INADDR_ANY;
    } else if (r.family() == AF_INET6) {
        any = IN6_IS_ADDR_UNSPECIFIED(&reinterpret_cast<const sockaddr_in6*>(r.get())->sin6_addr);
    } else {
        return {};
    }
    if (any) {
        uint16_t p = port(bound);
        r = server;
        if (r.family() == AF_INET) {
            reinterpret_cast<sockaddr_in*>(&r.storage)->sin_port = p;
        } else {
            reinterpret_cast<sockaddr_in6*>(&r.storage)->sin6_port = p;
        }
    }
    if (r.family() != server.family() || port(r) == 0) {
        return {};
    }
    return r;
}

}  // namespace tp::engine::hs

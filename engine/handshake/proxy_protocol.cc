// PROXY protocol v1/v2 encoders and decoder (see proxy_protocol.h).
#include "engine/handshake/proxy_protocol.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cstdio>
#include <cstring>

namespace tp::engine::hs {

namespace {
constexpr uint8_t v2_sig[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};
constexpr uint8_t tlv_authority = 0x02;

// An address as the header carries it: family, 4 or 16 bytes, port (host order).
struct Addr {
    int family = AF_UNSPEC;
    uint8_t ip[16] = {};
    uint16_t port = 0;
};

Addr split(const plan::SockAddr& a) {
    Addr r;
    if (a.family() == AF_INET) {
        auto* s = reinterpret_cast<const sockaddr_in*>(a.get());
        r.family = AF_INET;
        std::memcpy(r.ip, &s->sin_addr, 4);
        r.port = ntohs(s->sin_port);
    } else if (a.family() == AF_INET6) {
        auto* s = reinterpret_cast<const sockaddr_in6*>(a.get());
        r.family = AF_INET6;
        std::memcpy(r.ip, &s->sin6_addr, 16);
        r.port = ntohs(s->sin6_port);
    }
    return r;
}

bool is_mapped(const Addr& a) {
    static constexpr uint8_t prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF};
    return a.family == AF_INET6 && std::memcmp(a.ip, prefix, 12) == 0;
}

void to_v4(Addr& a) {
    std::memmove(a.ip, a.ip + 12, 4);
    a.family = AF_INET;
}

void to_v6(Addr& a) {
    uint8_t v4[4];
    std::memcpy(v4, a.ip, 4);
    std::memset(a.ip, 0, 10);
    a.ip[10] = a.ip[11] = 0xFF;
    std::memcpy(a.ip + 12, v4, 4);
    a.family = AF_INET6;
}

// Both addresses in one family, as the header requires: v4 when both are (or map to) v4.
bool pair(const plan::SockAddr& src, const plan::SockAddr& dst, Addr& s, Addr& d) {
    s = split(src);
    d = split(dst);
    if (s.family == AF_UNSPEC || d.family == AF_UNSPEC) {
        return false;
    }
    bool s4 = s.family == AF_INET || is_mapped(s);
    bool d4 = d.family == AF_INET || is_mapped(d);
    if (s4 && d4) {
        if (s.family == AF_INET6) {
            to_v4(s);
        }
        if (d.family == AF_INET6) {
            to_v4(d);
        }
    } else {
        if (s.family == AF_INET) {
            to_v6(s);
        }
        if (d.family == AF_INET) {
            to_v6(d);
        }
    }
    return true;
}

plan::SockAddr make(int family, const uint8_t* ip, uint16_t port) {
    plan::SockAddr a;
    if (family == AF_INET) {
        auto* s = reinterpret_cast<sockaddr_in*>(&a.storage);
        s->sin_family = AF_INET;
        std::memcpy(&s->sin_addr, ip, 4);
        s->sin_port = htons(port);
        a.len = sizeof(sockaddr_in);
    } else {
        auto* s = reinterpret_cast<sockaddr_in6*>(&a.storage);
        s->sin6_family = AF_INET6;
        std::memcpy(&s->sin6_addr, ip, 16);
        s->sin6_port = htons(port);
        a.len = sizeof(sockaddr_in6);
    }
    return a;
}

ProxyHeader fail() {
    ProxyHeader h;
    h.status = Status::failed;
    return h;
}

// A v1 port: 1-5 digits, no leading zero (except "0"), at most 65535.
bool parse_port(std::string_view s, uint16_t& port) {
    if (s.empty() || s.size() > 5 || (s.size() > 1 && s[0] == '0')) {
        return false;
    }
    uint32_t v = 0;
    for (char c : s) {
        if (c < '0' || c > '9') {
            return false;
        }
        v = v * 10 + static_cast<uint32_t>(c - '0');
    }
    if (v > 65535) {
        return false;
    }
    port = static_cast<uint16_t>(v);
    return true;
}

ProxyHeader decode_v1(std::span<const uint8_t> data) {
    static constexpr std::string_view magic = "PROXY ";
    size_t n = std::min(data.size(), magic.size());
    if (std::memcmp(data.data(), magic.data(), n) != 0) {
        return fail();
    }
    size_t lf = 0;
    for (size_t i = 0; i < data.size() && i < proxy_v1_max; ++i) {
        if (data[i] == '\n') {
            lf = i + 1;
            break;
        }
    }
    if (lf == 0) {
        return data.size() >= proxy_v1_max ? fail() : ProxyHeader{};
    }
    if (lf < 2 || data[lf - 2] != '\r') {
        return fail();
    }
    std::string_view line(reinterpret_cast<const char*>(data.data()) + magic.size(),
                          lf - 2 - magic.size());
    std::string_view f[5];
    int nf = 0;
    while (!line.empty() && nf < 5) {
        size_t sp = line.find(' ');
        f[nf++] = line.substr(0, sp);
        line = sp == std::string_view::npos ? std::string_view{} : line.substr(sp + 1);
    }
    ProxyHeader h;
    h.status = Status::done;
    h.length = static_cast<uint32_t>(lf);
    if (nf >= 1 && f[0] == "UNKNOWN") {
        h.local = true;  // the rest of the line is to be ignored
        return h;
    }
    if (nf != 5 || !line.empty() || (f[0] != "TCP4" && f[0] != "TCP6")) {
        return fail();
    }
    int family = f[0] == "TCP4" ? AF_INET : AF_INET6;
    uint8_t sip[16], dip[16];
    char tmp[INET6_ADDRSTRLEN];
    uint16_t sport, dport;
    for (int i = 0; i < 2; ++i) {
        if (f[1 + i].size() >= sizeof tmp) {
            return fail();
        }
        std::memcpy(tmp, f[1 + i].data(), f[1 + i].size());
        tmp[f[1 + i].size()] = '\0';
        if (inet_pton(family, tmp, i == 0 ? sip : dip) != 1) {
            return fail();
        }
    }
    if (!parse_port(f[3], sport) || !parse_port(f[4], dport)) {
        return fail();
    }
    h.src = make(family, sip, sport);
    h.dst = make(family, dip, dport);
    return h;
}

ProxyHeader decode_v2(std::span<const uint8_t> data) {
    size_t n = std::min(data.size(), sizeof v2_sig);
    if (std::memcmp(data.data(), v2_sig, n) != 0) {
        return fail();
    }
    if (data.size() < proxy_v2_fixed) {
        return ProxyHeader{};
    }
    uint8_t ver_cmd = data[12];
    uint8_t fam = data[13];
    uint32_t len = (uint32_t(data[14]) << 8) | data[15];
    if ((ver_cmd >> 4) != 2 || (ver_cmd & 0x0F) > 1) {
        return fail();
    }
    if (data.size() < proxy_v2_fixed + len) {
        return ProxyHeader{};
    }
    ProxyHeader h;
    h.status = Status::done;
    h.length = proxy_v2_fixed + len;
    const uint8_t* p = data.data() + proxy_v2_fixed;
    uint32_t addr_len = 0;
    if ((ver_cmd & 0x0F) == 0) {
        h.local = true;  // LOCAL: health checks and the like; the block is skipped
        return h;
    }
    switch (fam) {
        case 0x11:  // TCP over IPv4
            addr_len = 12;
            if (len < addr_len) {
                return fail();
            }
            h.src = make(AF_INET, p, uint16_t((p[8] << 8) | p[9]));
            h.dst = make(AF_INET, p + 4, uint16_t((p[10] << 8) | p[11]));
            break;
        case 0x21:  // TCP over IPv6
            addr_len = 36;
            if (len < addr_len) {
                return fail();
            }
            h.src = make(AF_INET6, p, uint16_t((p[32] << 8) | p[33]));
            h.dst = make(AF_INET6, p + 16, uint16_t((p[34] << 8) | p[35]));
            break;
        case 0x00:  // UNSPEC: the receiver keeps its own addresses
            h.local = true;
            return h;
        default:  // UDP or unix on a TCP listener
            return fail();
    }
    // TLVs: only AUTHORITY is kept; any malformed length rejects the header.
    uint32_t off = addr_len;
    while (off < len) {
        if (len - off < 3) {
            return fail();
        }
        uint8_t type = p[off];
        uint32_t tlen = (uint32_t(p[off + 1]) << 8) | p[off + 2];
        off += 3;
        if (len - off < tlen) {
            return fail();
        }
        if (type == tlv_authority && tlen < sizeof h.authority) {
            std::memcpy(h.authority, p + off, tlen);
            h.authority[tlen] = '\0';
        }
        off += tlen;
    }
    return h;
}
}  // namespace

uint32_t proxy_v1_encode(const plan::SockAddr& src, const plan::SockAddr& dst, uint8_t* out,
                         uint32_t cap) {
    Addr s, d;
    if (!pair(src, dst, s, d)) {
        return 0;
    }
    char sip[INET6_ADDRSTRLEN], dip[INET6_ADDRSTRLEN];
    inet_ntop(s.family, s.ip, sip, sizeof sip);
    inet_ntop(d.family, d.ip, dip, sizeof dip);
    char line[proxy_v1_max + 1];
    int n = std::snprintf(line, sizeof line, "PROXY %s %s %s %u %u\r\n",
                          s.family == AF_INET ? "TCP4" : "TCP6", sip, dip, unsigned(s.port),
                          unsigned(d.port));
    if (n <= 0 || static_cast<uint32_t>(n) > cap || n > static_cast<int>(proxy_v1_max)) {
        return 0;
    }
    std::memcpy(out, line, static_cast<size_t>(n));
    return static_cast<uint32_t>(n);
}

uint32_t proxy_v2_encode(const plan::SockAddr& src, const plan::SockAddr& dst,
                         std::string_view authority, uint8_t* out, uint32_t cap) {
    Addr s, d;
    if (!pair(src, dst, s, d) || authority.size() > 255) {
        return 0;
    }
    uint32_t addr_len = s.family == AF_INET ? 12 : 36;
    uint32_t tlv_len = authority.empty() ? 0 : 3 + static_cast<uint32_t>(authority.size());
    uint32_t total = proxy_v2_fixed + addr_len + tlv_len;
    if (total > cap) {
        return 0;
    }
    std::memcpy(out, v2_sig, sizeof v2_sig);
    out[12] = 0x21;  // version 2, PROXY
    out[13] = s.family == AF_INET ? 0x11 : 0x21;
    out[14] = static_cast<uint8_t>((addr_len + tlv_len) >> 8);
    out[15] = static_cast<uint8_t>((addr_len + tlv_len) & 0xFF);
    uint8_t* p = out + proxy_v2_fixed;
    uint32_t alen = s.family == AF_INET ? 4 : 16;
    std::memcpy(p, s.ip, alen);
    std::memcpy(p + alen, d.ip, alen);
    p += 2 * alen;
    *p++ = static_cast<uint8_t>(s.port >> 8);
    *p++ = static_cast<uint8_t>(s.port & 0xFF);
    *p++ = static_cast<uint8_t>(d.port >> 8);
    *p++ = static_cast<uint8_t>(d.port & 0xFF);
    if (tlv_len > 0) {
        *p++ = tlv_authority;
        *p++ = 0;
        *p++ = static_cast<uint8_t>(authority.size());
        std::memcpy(p, authority.data(), authority.size());
    }
    return total;
}

ProxyHeader proxy_decode(std::span<const uint8_t> data, ProxyAccept accept) {
    if (data.empty()) {
        return ProxyHeader{};
    }
    bool v2 = data[0] == v2_sig[0];
    bool v1 = data[0] == 'P';
    if (v2 && accept != ProxyAccept::v1) {
        return decode_v2(data);
    }
    if (v1 && accept != ProxyAccept::v2) {
        return decode_v1(data);
    }
    return fail();
}

}  // namespace tp::engine::hs

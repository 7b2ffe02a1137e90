#pragma once
// PROXY protocol (HAProxy doc/proxy-protocol.txt) as pure codecs: v1 (text) and v2 (binary)
// headers for an upstream connection, v2 with the AUTHORITY TLV carrying a sniffed name, and the
// decoder behind a listener's accept_proxy. The decoder works on the bytes received so far from
// the start of the connection, so it can run on MSG_PEEK data and the caller then consumes
// exactly the header.

#include <cstdint>
#include <span>
#include <string_view>

#include "config/plan.h"
#include "engine/handshake/common.h"

namespace tp::engine::hs {

constexpr uint32_t proxy_v1_max = 107;
constexpr uint32_t proxy_v2_fixed = 16;
// v2: fixed part + IPv6 addresses + one AUTHORITY TLV of up to 255 bytes.
constexpr uint32_t proxy_v2_max_out = proxy_v2_fixed + 36 + 3 + 255;

// Header for a TCP connection from `src` to `dst`. Returns its length, 0 when `cap` is short or
// an address is neither v4 nor v6. v4-mapped v6 addresses are written as v4 when both are.
uint32_t proxy_v1_encode(const plan::SockAddr& src, const plan::SockAddr& dst, uint8_t* out,
                         uint32_t cap);
uint32_t proxy_v2_encode(const plan::SockAddr& src, const plan::SockAddr& dst,
                         std::string_view authority, uint8_t* out, uint32_t cap);

enum class ProxyAccept : uint8_t { v1, v2, any };

struct ProxyHeader {
    Status status = Status::need_more;
    uint32_t length = 0;  // header bytes (done)
    bool local = false;   // v2 LOCAL or v1 UNKNOWN: keep the connection's own addresses
    plan::SockAddr src;
    plan::SockAddr dst;
    char authority[256] = {};  // v2 AUTHORITY TLV, NUL-terminated; empty if none
};

// Decodes a header at the start of `data`. need_more: a valid prefix, more bytes are needed.
ProxyHeader proxy_decode(std::span<const uint8_t> data, ProxyAccept accept);

}  // namespace tp::engine::hs

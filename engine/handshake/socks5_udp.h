#pragma once
// The SOCKS5 UDP request header (RFC 1928 section 7) as a pure codec: RSV(2) FRAG(1) ATYP(1)
// DST.ADDR DST.PORT before every datagram relayed through a UDP ASSOCIATE. No sockets, no
// allocation: the UDP relay (engine/udp_socks.cc) prepends and strips it.

#include <cstdint>
#include <span>
#include <string_view>

#include "config/plan.h"

namespace tp::engine::hs {

// Longest header we write: IPv6 (4 + 16 + 2).
constexpr uint32_t kSocks5UdpMaxHeader = 22;

// Writes the header naming `dst` (v4 or v6; v4-mapped written as v4) into `out` and returns its
// length (10 or 22); 0 for any other family.
uint32_t socks5_udp_header(const plan::SockAddr& dst, uint8_t* out);

enum class UdpHeader : uint8_t {
    ok,
    short_input,  // shorter than the header its ATYP implies
    fragment,     // FRAG != 0: we never reassemble (the RFC allows dropping them)
    malformed,    // RSV != 0 or an unknown ATYP
};

// A parsed reply header. `from` is set for v4/v6; a domain ATYP leaves it unset and names
// the domain instead.
struct Socks5UdpReply {
    UdpHeader status = UdpHeader::malformed;
    uint32_t header_len = 0;  // payload starts here
    plan::SockAddr from;      // the remote's address and port (ATYP 1 or 4)
    std::string_view domain;  // ATYP 3: points into the input
    uint16_t port = 0;        // host order (every ATYP)
};

Socks5UdpReply parse_socks5_udp(std::span<const uint8_t> in);

// Where to send datagrams after a UDP ASSOCIATE reply naming `bound` (BND.ADDR/PORT), the
// server having been reached at `server`: an unspecified address (0.0.0.0, ::) means the
// server's own address (with BND.PORT). Unset (len 0) when unusable: port 0, or a family other
// than the server's (our UDP socket is of the server's family).
plan::SockAddr socks5_relay_address(const plan::SockAddr& bound, const plan::SockAddr& server);

}  // namespace tp::engine::hs

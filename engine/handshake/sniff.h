#pragma once
// Domain sniffers for routing and logs: the server name of a TLS ClientHello (SNI) and the Host
// header of an HTTP/1.x request. They read the client's first bytes as peeked so far (they never
// consume them) and tell "need more bytes" from "not this protocol"; the caller bounds the bytes
// and the time it waits.

#include <cstdint>
#include <span>
#include <string_view>

namespace tp::engine::hs {

enum class SniffStatus : uint8_t {
    need_more,  // a valid prefix of the protocol: more bytes could give a name
    found,      // `name` holds the (lower-cased) name
    none,       // not this protocol, or it carries no usable name
};

struct SniffResult {
    SniffStatus status = SniffStatus::need_more;
    uint8_t len = 0;
    char name[256] = {};  // NUL-terminated
    std::string_view view() const { return {name, len}; }
};

SniffResult sniff_tls_sni(std::span<const uint8_t> data);
SniffResult sniff_http_host(std::span<const uint8_t> data);
// TLS first, then HTTP: the first byte tells them apart (0x16 vs an upper-case letter).
SniffResult sniff_name(std::span<const uint8_t> data);

}  // namespace tp::engine::hs

#pragma once
// Shared vocabulary of the pure handshake codecs (SOCKS5, HTTP CONNECT, PROXY protocol, sniffers):
// the outcome of feeding bytes and the cause of a failed upstream handshake. No sockets, no
// allocation: the relay state machine feeds them bytes and sends what they produce.

#include <cstdint>

namespace tp::engine::hs {

enum class Status : uint8_t {
    need_more,  // every byte given was consumed; the message is not complete yet
    done,       // the handshake is complete; bytes past `consumed` belong to the client
    failed,     // the upstream refused or broke the protocol: `cause` says why
};

// Why an upstream handshake failed; each one is counted apart.
enum class Cause : uint8_t {
    none,
    closed,                  // the proxy closed the connection mid-handshake
    malformed,               // the reply broke the protocol
    socks_no_method,         // the server accepts none of the methods offered (0xFF)
    socks_auth_refused,      // RFC 1929 status != 0
    socks_general,           // REP 1
    socks_not_allowed,       // REP 2: connection not allowed by ruleset
    socks_net_unreachable,   // REP 3
    socks_host_unreachable,  // REP 4
    socks_refused,           // REP 5
    socks_ttl_expired,       // REP 6
    socks_cmd_unsupported,   // REP 7
    socks_atyp_unsupported,  // REP 8
    socks_unknown_reply,     // REP 9..255
    http_auth_required,      // 407
    http_forbidden,          // 403
    http_server_error,       // 5xx
    http_other,              // any other non-2xx status
    timeout,                 // handshake_timeout expired
    count_,
};

const char* cause_name(Cause c);

struct Step {
    Status status = Status::need_more;
    uint32_t consumed = 0;  // bytes of the input that belong to the handshake
    Cause cause = Cause::none;
};

}  // namespace tp::engine::hs

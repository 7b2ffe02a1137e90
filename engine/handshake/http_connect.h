#pragma once
// HTTP CONNECT client (RFC 9110 §9.3.6, Basic credentials RFC 7617) as a pure codec. The reply
// head is consumed up to its blank line and no further: bytes the proxy sends right after a 2xx
// head (a server's banner) are left to the caller for the client, never lost. 407, 403 and 5xx
// map to causes of their own.

#include <cstdint>
#include <span>
#include <string_view>

#include "engine/handshake/common.h"

namespace tp::engine::hs {

class HttpConnectClient {
  public:
    static constexpr uint32_t max_out = 1536;
    static constexpr uint32_t max_head = 16 * 1024;  // a longer reply head is malformed

    // `authority` is "host:port" or "[v6]:port"; `credentials` is "user:password" (empty: no
    // Proxy-Authorization). Returns the request (empty: too long to fit).
    std::span<const uint8_t> start(std::string_view authority, std::string_view credentials);

    // Consumes the reply head. After done, input past `consumed` is tunnel data.
    Step feed(std::span<const uint8_t> in);
    static Step on_eof() { return Step{Status::failed, 0, Cause::closed}; }
    int status_code() const { return code_; }

  private:
    Step decide_status(uint32_t used);

    uint32_t seen_ = 0;     // bytes of the head consumed
    uint8_t line_len_ = 0;  // bytes of the status line kept (up to sizeof line_)
    bool status_done_ = false;
    uint8_t crlf_ = 0;  // end-of-head matcher: blank line after the status line
    bool finished_ = false;
    int code_ = 0;
    char line_[16];
    uint8_t out_[max_out];
};

// Base64 (RFC 4648, with padding) of `in` into `out`; returns the length, 0 if `cap` is short.
uint32_t base64_encode(std::string_view in, char* out, uint32_t cap);

}  // namespace tp::engine::hs

#pragma once
// One upstream handshake of a connection, whichever protocol it speaks: SOCKS5, HTTP CONNECT or
// a PROXY protocol header (which expects no reply). The worker builds it before connecting (it
// owns the memory; only connections that need one have one) and the relay state machine drives
// it: the bytes to send, then the proxy's replies fed as they arrive.

#include <cstdint>
#include <span>
#include <string_view>
#include <variant>

#include "engine/handshake/http_connect.h"
#include "engine/handshake/proxy_protocol.h"
#include "engine/handshake/socks5.h"

namespace tp::engine::hs {

class Upstream {
  public:
    // Each returns false when nothing can be sent (invalid options or target).
    bool socks5(const Socks5Options& opt, const Socks5Target& target);
    bool http_connect(std::string_view authority, std::string_view credentials);
    bool proxy_v1(const plan::SockAddr& src, const plan::SockAddr& dst);
    bool proxy_v2(const plan::SockAddr& src, const plan::SockAddr& dst, std::string_view authority);

    // The proxy answers (SOCKS5, HTTP); a PROXY header is done once sent.
    bool expects_reply() const { return !std::holds_alternative<ProxyOut>(v_); }
    // Bytes to send now (the first message, or the next one after a feed); empty if none.
    std::span<const uint8_t> take_out();
    Step feed(std::span<const uint8_t> in);

  private:
    struct ProxyOut {
        uint32_t len = 0;
        uint8_t bytes[proxy_v2_max_out];
    };
    std::variant<std::monostate, Socks5Client, HttpConnectClient, ProxyOut> v_;
    std::span<const uint8_t> pending_;
};

}  // namespace tp::engine::hs

#pragma once
// SOCKS5 CONNECT and UDP ASSOCIATE client (RFC 1928, username/password RFC 1929) as a pure
// codec: it produces the bytes to send and consumes the proxy's replies, however they are split
// across reads. One method is offered (none, or username/password when a username is set), so
// the server's choice is predictable and pipelining (greeting, credentials and request in one
// write) is possible.

#include <cstdint>
#include <span>
#include <string_view>

#include "config/plan.h"
#include "engine/handshake/common.h"

namespace tp::engine::hs {

struct Socks5Options {
    std::string_view username;  // empty: method 0 (no authentication)
    std::string_view password;
    bool pipeline = false;  // greeting + credentials + request in the first write
};

// Where the proxy should connect: by address, or by name when `domain` is set.
// With `udp_associate` the request is UDP ASSOCIATE (command 3) instead of CONNECT and the
// address is where our datagrams will come from (0.0.0.0:0 or [::]:0: not known yet).
struct Socks5Target {
    const plan::SockAddr* address = nullptr;  // used when domain is empty
    std::string_view domain;                  // 1..255 bytes
    uint16_t port = 0;                        // host order; used with domain
    bool udp_associate = false;
};

class Socks5Client {
  public:
    // Largest first write: greeting (3) + credentials (3 + 255 + 255) + request (7 + 255).
    static constexpr uint32_t max_out = 3 + 513 + 262;

    // Starts the handshake; returns the bytes to send first (empty: the options or the target
    // are invalid: a username or password longer than 255 bytes, an empty or long domain).
    std::span<const uint8_t> start(const Socks5Options& opt, const Socks5Target& target);

    // Consumes bytes from the proxy. After need_more, `take_out()` may hold the next message to
    // send (credentials or request, unless pipelined). After done, input past `consumed` is
    // data from the destination for the client.
    Step feed(std::span<const uint8_t> in);
    std::span<const uint8_t> take_out();

    // After done: the reply's BND.ADDR and BND.PORT (for UDP ASSOCIATE, the relay address).
    // False when the server named a domain instead of an address.
    bool bound(plan::SockAddr& out) const;

    // The proxy closed its side before the handshake completed.
    static Step on_eof() { return Step{Status::failed, 0, Cause::closed}; }

  private:
    enum class State : uint8_t { idle, method, auth, reply, done, failed };
    uint32_t need() const;
    uint8_t version() const;  // the first byte the current reply must carry
    Step fail(uint32_t consumed, Cause c);
    Step next_message(std::span<const uint8_t> in, uint32_t used);
    uint32_t put_auth(uint8_t* p) const;
    uint32_t put_request(uint8_t* p) const;

    Socks5Options opt_{};
    Socks5Target target_{};
    State state_ = State::idle;
    uint8_t method_ = 0;
    uint16_t have_ = 0;  // bytes of the current reply gathered in msg_
    uint32_t out_len_ = 0;
    uint8_t msg_[4 + 1 + 255 + 2];
    uint8_t out_[max_out];
};

// The cause a SOCKS5 REP code maps to (0 maps to Cause::none).
Cause socks5_reply_cause(uint8_t rep);

}  // namespace tp::engine::hs

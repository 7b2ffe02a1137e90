// The per-connection upstream handshake (see upstream.h).
#include "engine/handshake/upstream.h"

namespace tp::engine::hs {

bool Upstream::socks5(const Socks5Options& opt, const Socks5Target& target) {
    pending_ = v_.emplace<Socks5Client>().start(opt, target);
    return !pending_.empty();
}

bool Upstream::http_connect(std::string_view authority, std::string_view credentials) {
    pending_ = v_.emplace<HttpConnectClient>().start(authority, credentials);
    return !pending_.empty();
}

bool Upstream::proxy_v1(const plan::SockAddr& src, const plan::SockAddr& dst) {
    ProxyOut& p = v_.emplace<ProxyOut>();
    p.len = proxy_v1_encode(src, dst, p.bytes, sizeof p.bytes);
    pending_ = {p.bytes, p.len};
    return p.len > 0;
}

bool Upstream::proxy_v2(const plan::SockAddr& src, const plan::SockAddr& dst,
                        std::string_view authority) {
    ProxyOut& p = v_.emplace<ProxyOut>();
    p.len = proxy_v2_encode(src, dst, authority, p.bytes, sizeof p.bytes);
    pending_ = {p.bytes, p.len};
    return p.len > 0;
}

std::span<const uint8_t> Upstream::take_out() {
    std::span<const uint8_t> s = pending_;
    pending_ = {};
    if (s.empty()) {
        if (auto* c = std::get_if<Socks5Client>(&v_)) {
            s = c->take_out();
        }
    }
    return s;
}

Step Upstream::feed(std::span<const uint8_t> in) {
    if (auto* c = std::get_if<Socks5Client>(&v_)) {
        return c->feed(in);
    }
    if (auto* c = std::get_if<HttpConnectClient>(&v_)) {
        return c->feed(in);
    }
    return Step{Status::failed, 0, Cause::malformed};  // nothing should answer a PROXY header
}

}  // namespace tp::engine::hs

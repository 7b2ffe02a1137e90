// Routed connections (issue 10): choosing a listener route's upstream for an accepted
// connection, from its original destination and, when a route asks for it, the name sniffed
// from the client's first bytes; then the upstream socket and the handshake the upstream
// needs (SOCKS5, HTTP CONNECT, a PROXY header). Listeners without routes never come here.
#include <arpa/inet.h>

#include <cstdio>
#include <cstring>

#include "engine/handshake/proxy_protocol.h"
#include "engine/handshake/sniff.h"
#include "engine/worker.h"
#include "engine/worker_internal.h"

namespace tp::engine {
using namespace worker_detail;

namespace {
constexpr uint32_t kSniffMax = 8192;  // bytes looked at; a ClientHello fits well within

// "192.0.2.1:443", "[2001:db8::1]:443" or "name:443" for HTTP CONNECT.
bool authority(const plan::SockAddr& a, std::string_view name, char* out, size_t cap) {
    uint16_t port = a.port();
    int n;
    if (!name.empty()) {
        n = std::snprintf(out, cap, "%.*s:%u", static_cast<int>(name.size()), name.data(), port);
    } else {
        char ip[INET6_ADDRSTRLEN];
        const void* src =
            a.family() == AF_INET
                ? static_cast<const void*>(&reinterpret_cast<const sockaddr_in*>(a.get())->sin_addr)
                : static_cast<const void*>(
                      &reinterpret_cast<const sockaddr_in6*>(a.get())->sin6_addr);
        if (inet_ntop(a.family(), src, ip, sizeof ip) == nullptr) {
            return false;
        }
        n = std::snprintf(out, cap, a.family() == AF_INET ? "%s:%u" : "[%s]:%u", ip, port);
    }
    return n > 0 && static_cast<size_t>(n) < cap;
}
}  // namespace

StartOutcome Worker::start_routed(Conn& c, const plan::SockAddr& client,
                                  const plan::SockAddr& orig) {
    c.routed = std::make_unique<Routed>();
    c.routed->client = client;
    c.routed->orig = unmap_v4(orig);
    return route_conn(c, false);
}

StartOutcome Worker::route_conn(Conn& c, bool sniffed) {
    ListenerState& l = *listeners_[c.listener];
    const plan::Listener& lc = l.shared->cfg;
    Routed& r = *c.routed;
    std::string_view name(r.name, r.name_len);
    int m = l.shared->routes.match(r.orig, sniffed, name);
    if (m == RouteTable::need_name) {
        return StartOutcome::sniff;
    }
    r.upstream = m >= 0 ? static_cast<int>(lc.routes[static_cast<size_t>(m)].upstream) : -1;
    plan::SourceMode source = lc.source;
    hs::Upstream* h = nullptr;
    if (r.upstream >= 0) {
        const plan::Upstream& u = lc.upstreams[static_cast<size_t>(r.upstream)];
        bool ok = true;
        switch (u.kind) {
            case plan::UpstreamKind::reject:
                return StartOutcome::rejected;
            case plan::UpstreamKind::direct:
                c.target =
                    u.target == plan::UpstreamTarget::original ? r.orig : unmap_v4(u.address);
                source = u.source;
                if (u.proxy_protocol == plan::ProxyProtocol::v1) {
                    ok = r.hs.proxy_v1(r.client, r.orig);
                    h = &r.hs;
                } else if (u.proxy_protocol == plan::ProxyProtocol::v2) {
                    ok = r.hs.proxy_v2(r.client, r.orig, name);
                    h = &r.hs;
                }
                break;
            case plan::UpstreamKind::socks5: {
                c.target = unmap_v4(u.address);
                source = plan::SourceMode::proxy;
                hs::Socks5Target t{&r.orig, {}, 0};
                if (u.by_domain && !name.empty()) {
                    t = hs::Socks5Target{nullptr, name, r.orig.port()};
                }
                ok = r.hs.socks5({u.username, u.password, u.pipeline}, t);
                h = &r.hs;
                break;
            }
            case plan::UpstreamKind::http: {
                c.target = unmap_v4(u.address);
                source = plan::SourceMode::proxy;
                char auth[300];
                ok =
                    authority(r.orig, u.by_domain ? name : std::string_view{}, auth, sizeof auth) &&
                    r.hs.http_connect(auth, u.credentials);
                h = &r.hs;
                break;
            }
        }
        if (!ok) {
            log_limited("upstream handshake cannot be built", EINVAL);
            return StartOutcome::error;
        }
    }
    if (c.target.len == 0) {
        return StartOutcome::no_origdst;
    }
    auto up = make_upstream(c.target, source, r.client, cfg_.bypass_mark, lc.fast_open);
    if (!up) {
        log_limited(up.error().what, up.error().code);
        return StartOutcome::error;
    }
    c.fd[1] = up.value().release();
    c.relay.set_handshake(h);
    if (cfg_.log_connections) {
        std::fprintf(stderr, "tpengine: worker %u: client %s original %s name %.*s upstream %s\n",
                     cfg_.index, format_addr(unmap_v4(r.client)).c_str(),
                     format_addr(r.orig).c_str(), static_cast<int>(name.size()), name.data(),
                     r.upstream >= 0 ? lc.upstreams[static_cast<size_t>(r.upstream)].name.c_str()
                                     : "(listener)");
    }
    return StartOutcome::ok;
}

void Worker::sniff_conn(Conn& c, bool final, Actions& acts) {
    if (c.relay.phase() != Relay::Phase::sniffing || !c.routed) {
        return;  // decided already (a late sniff request)
    }
    // The queued client bytes, in order, as far as kSniffMax: they stay queued for the upstream.
    uint8_t bytes[kSniffMax];
    uint32_t n = 0;
    uint16_t b = c.relay.queued_head(Side::client);
    uint32_t off = c.relay.queued_off(Side::client);
    for (int i = 0; i < c.relay.queued(Side::client) && n < kSniffMax; ++i) {
        if (b >= token_base_) {
            break;  // bytes in a pipe (cannot happen while sniffing: splicing waits)
        }
        uint32_t len = chain_len_[b] - off;
        uint32_t take = len < kSniffMax - n ? len : kSniffMax - n;
        std::memcpy(bytes + n, bufs_.addr(b) + off, take);
        n += take;
        off = 0;
        b = chain_next_[b];
    }
    if (c.routed->await_proxy) {
        proxy_header(c, {bytes, n}, final || n >= kSniffMax, acts);
        return;
    }
    hs::SniffResult s = hs::sniff_name({bytes, n});
    if (s.status == hs::SniffStatus::need_more && !final && n < kSniffMax) {
        return;  // wait for more bytes (or the sniff timeout)
    }
    if (s.status == hs::SniffStatus::found) {
        std::memcpy(c.routed->name, s.name, s.len);
        c.routed->name_len = s.len;
    }
    c.relay.on_routed(now_, route_conn(c, true), acts);
}

void Worker::proxy_header(Conn& c, std::span<const uint8_t> bytes, bool final, Actions& acts) {
    ListenerState& l = *listeners_[c.listener];
    const plan::Listener& lc = l.shared->cfg;
    hs::ProxyAccept mode = lc.accept_proxy == plan::AcceptProxy::v1   ? hs::ProxyAccept::v1
                           : lc.accept_proxy == plan::AcceptProxy::v2 ? hs::ProxyAccept::v2
                                                                      : hs::ProxyAccept::any;
    hs::ProxyHeader h = hs::proxy_decode(bytes, mode);
    if (h.status == hs::Status::need_more && !final) {
        return;  // the rest of the header is on its way
    }
    if (h.status != hs::Status::done) {
        c.relay.on_routed(now_, StartOutcome::bad_proxy_header, acts);
        return;
    }
    c.relay.consume(Side::client, h.length, acts);
    Routed& r = *c.routed;
    r.await_proxy = false;
    int fd = c.fd[0];
    plan::SockAddr orig;
    if (!h.local) {
        r.client = h.src;  // the proxy's client becomes ours (source: client spoofs it)
        orig = unmap_v4(h.dst);
    } else if (!original_destination(fd, lc, orig)) {
        orig = plan::SockAddr{};
    }
    r.orig = unmap_v4(orig);
    StartOutcome outcome = StartOutcome::ok;
    if (lc.target == plan::UpstreamTarget::original) {
        if (r.orig.len == 0) {
            outcome = StartOutcome::no_origdst;
        } else if (self_set_ && self_set_->contains(r.orig)) {
            outcome = StartOutcome::self_connect;
        }
        c.target = r.orig;
    } else if (l.shared->fixed_is_self) {
        outcome = StartOutcome::self_connect;
    } else {
        c.target = unmap_v4(lc.upstream_address);
    }
    if (outcome == StartOutcome::ok) {
        outcome = route_conn(c, false);
    }
    c.relay.on_routed(now_, outcome, acts);
}

}  // namespace tp::engine

// SOCKS5 client codec (see socks5.h). Replies are gathered into msg_ only up to the length the
// bytes seen so far imply, so a reply split at any position completes exactly once and nothing
// past it is taken from the client's data.
#include "engine/handshake/socks5.h"

#include <cstring>

namespace tp::engine::hs {

namespace {
constexpr uint8_t ver5 = 0x05;
constexpr uint8_t method_none = 0x00;
constexpr uint8_t method_userpass = 0x02;
constexpr uint8_t no_acceptable = 0xFF;
constexpr uint8_t cmd_connect = 0x01;
constexpr uint8_t cmd_udp_associate = 0x03;
constexpr uint8_t atyp_v4 = 0x01;
constexpr uint8_t atyp_domain = 0x03;
constexpr uint8_t atyp_v6 = 0x04;
}  // namespace

Cause socks5_reply_cause(uint8_t rep) {
    switch (rep) {
        case 0:
            return Cause::none;
        case 1:
            return Cause::socks_general;
        case 2:
            return Cause::socks_not_allowed;
        case 3:
            return Cause::socks_net_unreachable;
        case 4:
            return Cause::socks_host_unreachable;
        case 5:
            return Cause::socks_refused;
        case 6:
            return Cause::socks_ttl_expired;
        case 7:
            return Cause::socks_cmd_unsupported;
        case 8:
            return Cause::socks_atyp_unsupported;
        default:
            return Cause::socks_unknown_reply;
    }
}

uint32_t Socks5Client::put_auth(uint8_t* p) const {
    uint32_t n = 0;
    p[n++] = 0x01;  // RFC 1929 sub-negotiation version
    p[n++] = static_cast<uint8_t>(opt_.username.size());
    std::memcpy(p + n, opt_.username.data(), opt_.username.size());
    n += static_cast<uint32_t>(opt_.username.size());
    p[n++] = static_cast<uint8_t>(opt_.password.size());
    std::memcpy(p + n, opt_.password.data(), opt_.password.size());
    n += static_cast<uint32_t>(opt_.password.size());
    return n;
}

uint32_t Socks5Client::put_request(uint8_t* p) const {
    uint32_t n = 0;
    p[n++] = ver5;
    p[n++] = target_.udp_associate ? cmd_udp_associate : cmd_connect;
    p[n++] = 0x00;
    uint16_t port = target_.port;
    if (!target_.domain.empty()) {
        p[n++] = atyp_domain;
        p[n++] = static_cast<uint8_t>(target_.domain.size());
        std::memcpy(p + n, target_.domain.data(), target_.domain.size());
        n += static_cast<uint32_t>(target_.domain.size());
    } else if (target_.address->family() == AF_INET) {
        auto* sin = reinterpret_cast<const sockaddr_in*>(target_.address->get());
        p[n++] = atyp_v4;
        std::memcpy(p + n, &sin->sin_addr, 4);
        n += 4;
        port = ntohs(sin->sin_port);
    } else {
        auto* sin6 = reinterpret_cast<const sockaddr_in6*>(target_.address->get());
        p[n++] = atyp_v6;
        std::memcpy(p + n, &sin6->sin6_addr, 16);
        n += 16;
        port = ntohs(sin6->sin6_port);
    }
    p[n++] = static_cast<uint8_t>(port >> 8);
    p[n++] = static_cast<uint8_t>(port & 0xFF);
    return n;
}

std::span<const uint8_t> Socks5Client::start(const Socks5Options& opt, const Socks5Target& target) {
    opt_ = opt;
    target_ = target;
    have_ = 0;
    out_len_ = 0;
    state_ = State::failed;
    if (opt.username.size() > 255 || opt.password.size() > 255 ||
        (opt.username.empty() && !opt.password.empty())) {
        return {};
    }
    if (target.domain.empty()) {
        if (target.address == nullptr ||
            (target.address->family() != AF_INET && target.address->family() != AF_INET6)) {
            return {};
        }
    } else if (target.domain.size() > 255) {
        return {};
    }
    method_ = opt.username.empty() ? method_none : method_userpass;
    uint32_t n = 0;
    out_[n++] = ver5;
    out_[n++] = 1;  // one method offered
    out_[n++] = method_;
    if (opt.pipeline) {
        if (method_ == method_userpass) {
            n += put_auth(out_ + n);
        }
        n += put_request(out_ + n);
    }
    state_ = State::method;
    return {out_, n};
}

bool Socks5Client::bound(plan::SockAddr& out) const {
    if (state_ != State::done) {
        return false;
    }
    out = plan::SockAddr{};
    if (msg_[3] == atyp_v4) {
        auto* sin = reinterpret_cast<sockaddr_in*>(&out.storage);
        sin->sin_family = AF_INET;
        std::memcpy(&sin->sin_addr, msg_ + 4, 4);
        std::memcpy(&sin->sin_port, msg_ + 8, 2);
        out.len = sizeof(sockaddr_in);
        return true;
    }
    if (msg_[3] == atyp_v6) {
        auto* sin6 = reinterpret_cast<sockaddr_in6*>(&out.storage);
        sin6->sin6_family = AF_INET6;
        std::memcpy(&sin6->sin6_addr, msg_ + 4, 16);
        std::memcpy(&sin6->sin6_port, msg_ + 20, 2);
        out.len = sizeof(sockaddr_in6);
        return true;
    }
    return false;
}

std::span<const uint8_t> Socks5Client::take_out() {
    std::span<const uint8_t> s{out_, out_len_};
    out_len_ = 0;
    return s;
}

uint32_t Socks5Client::need() const {
    switch (state_) {
        case State::method:
        case State::auth:
            return 2;
        case State::reply:
            if (have_ < 4) {
                return 4;
            }
            switch (msg_[3]) {
                case atyp_v4:
                    return 4 + 4 + 2;
                case atyp_v6:
                    return 4 + 16 + 2;
                case atyp_domain:
                    return have_ < 5 ? 5 : 5 + msg_[4] + 2;
                default:
                    return 4;
            }
        default:
            return 0;
    }
}

uint8_t Socks5Client::version() const {
    return state_ == State::auth ? 0x01 : ver5;
}

Step Socks5Client::fail(uint32_t consumed, Cause c) {
    state_ = State::failed;
    return Step{Status::failed, consumed, c};
}

Step Socks5Client::next_message(std::span<const uint8_t> in, uint32_t used) {
    // The server answers our next message; bytes before we sent it break the protocol.
    if (used < in.size()) {
        return fail(used, Cause::malformed);
    }
    return Step{Status::need_more, used, Cause::none};
}

Step Socks5Client::feed(std::span<const uint8_t> in) {
    uint32_t used = 0;
    while (state_ != State::done && state_ != State::failed) {
        uint32_t want = need();
        while (have_ < want && used < in.size()) {
            msg_[have_++] = in[used++];
            if (have_ == 1 && msg_[0] != version()) {
                break;  // not the protocol: decide now
            }
            if (state_ == State::reply) {
                if (have_ == 2 && msg_[1] != 0) {
                    break;  // a refusal: decide now rather than wait for its address
                }
                if (have_ == 4 || have_ == 5) {
                    want = need();  // the length follows from ATYP (and the name length)
                }
            }
        }
        bool early = (have_ >= 1 && msg_[0] != version()) ||
                     (state_ == State::reply && have_ >= 2 && msg_[1] != 0);
        if (have_ < want && !early) {
            return Step{Status::need_more, used, Cause::none};
        }
        switch (state_) {
            case State::method:
                if (msg_[0] != ver5) {
                    return fail(used, Cause::malformed);
                }
                if (msg_[1] == no_acceptable) {
                    return fail(used, Cause::socks_no_method);
                }
                if (msg_[1] != method_) {
                    return fail(used, Cause::malformed);  // not the one method offered
                }
                have_ = 0;
                if (method_ == method_userpass) {
                    state_ = State::auth;
                    if (!opt_.pipeline) {
                        out_len_ = put_auth(out_);
                    }
                } else {
                    state_ = State::reply;
                    if (!opt_.pipeline) {
                        out_len_ = put_request(out_);
                    }
                }
                if (out_len_ > 0) {
                    return next_message(in, used);
                }
                break;
            case State::auth:
                if (msg_[0] != 0x01) {
                    return fail(used, Cause::malformed);
                }
                if (msg_[1] != 0) {
                    return fail(used, Cause::socks_auth_refused);
                }
                have_ = 0;
                state_ = State::reply;
                if (!opt_.pipeline) {
                    out_len_ = put_request(out_);
                    return next_message(in, used);
                }
                break;
            case State::reply:
                if (msg_[0] != ver5) {
                    return fail(used, Cause::malformed);
                }
                if (msg_[1] != 0) {
                    return fail(used, socks5_reply_cause(msg_[1]));
                }
                if (msg_[3] != atyp_v4 && msg_[3] != atyp_v6 && msg_[3] != atyp_domain) {
                    return fail(used, Cause::malformed);
                }
                state_ = State::done;
                return Step{Status::done, used, Cause::none};
            default:
                break;
        }
    }
    return Step{state_ == State::done ? Status::done : Status::failed, used,
                state_ == State::done ? Cause::none : Cause::malformed};
}

}  // namespace tp::engine::hs

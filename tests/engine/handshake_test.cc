// Unit tests of the pure handshake codecs (engine/handshake/): SOCKS5 and HTTP CONNECT clients,
// PROXY protocol v1/v2 encode/decode and the SNI/Host sniffers, byte by byte: every reply is
// also fed split at every position, and malformed input must fail, never hang or overrun.
#include <arpa/inet.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "engine/handshake/http_connect.h"
#include "engine/handshake/proxy_protocol.h"
#include "engine/handshake/sniff.h"
#include "engine/handshake/socks5.h"
#include "engine/handshake/socks5_udp.h"

namespace tp::engine::hs {
namespace {

using Bytes = std::vector<uint8_t>;

Bytes B(std::initializer_list<int> v) {
    Bytes b;
    for (int x : v) {
        b.push_back(static_cast<uint8_t>(x));
    }
    return b;
}
Bytes S(std::string_view s) {
    return Bytes(s.begin(), s.end());
}
Bytes cat(const Bytes& a, const Bytes& b) {
    Bytes r = a;
    r.insert(r.end(), b.begin(), b.end());
    return r;
}
Bytes span_bytes(std::span<const uint8_t> s) {
    return Bytes(s.begin(), s.end());
}

plan::SockAddr v4(const char* ip, uint16_t port) {
    plan::SockAddr a;
    auto* s = reinterpret_cast<sockaddr_in*>(&a.storage);
    s->sin_family = AF_INET;
    inet_pton(AF_INET, ip, &s->sin_addr);
    s->sin_port = htons(port);
    a.len = sizeof *s;
    return a;
}
plan::SockAddr v6(const char* ip, uint16_t port) {
    plan::SockAddr a;
    auto* s = reinterpret_cast<sockaddr_in6*>(&a.storage);
    s->sin6_family = AF_INET6;
    inet_pton(AF_INET6, ip, &s->sin6_addr);
    s->sin6_port = htons(port);
    a.len = sizeof *s;
    return a;
}

std::string format_for_test(const plan::SockAddr& a) {
    char ip[INET6_ADDRSTRLEN] = "";
    if (a.family() == AF_INET) {
        auto* s = reinterpret_cast<const sockaddr_in*>(a.get());
        inet_ntop(AF_INET, &s->sin_addr, ip, sizeof ip);
        return std::string(ip) + ":" + std::to_string(ntohs(s->sin_port));
    }
    if (a.family() == AF_INET6) {
        auto* s = reinterpret_cast<const sockaddr_in6*>(a.get());
        inet_ntop(AF_INET6, &s->sin6_addr, ip, sizeof ip);
        return "[" + std::string(ip) + "]:" + std::to_string(ntohs(s->sin6_port));
    }
    return "-";
}

// ---------------------------------------------------------------------------------------------
// SOCKS5

const Bytes greet_none = B({5, 1, 0});
const Bytes greet_user = B({5, 1, 2});
const Bytes auth_ab = B({1, 1, 'a', 2, 'p', 'w'});
// CONNECT 192.0.2.7:443
const Bytes req_v4 = B({5, 1, 0, 1, 192, 0, 2, 7, 0x01, 0xBB});
const Bytes ok_v4 = B({5, 0, 0, 1, 198, 51, 100, 1, 0x10, 0x00});

// Drives a client through a scripted server whose bytes arrive in two reads split at `split`.
// Only a pipelined client may be given several replies in one read. Returns the last step, the
// writes the client made and the bytes past the handshake.
struct Script {
    Step last;
    std::vector<Bytes> sent;
    Bytes leftover;  // bytes past the handshake (client data)
};

Script drive(const Socks5Options& opt, const Socks5Target& t, const Bytes& server, size_t split) {
    Socks5Client c;
    Script r;
    r.sent.push_back(span_bytes(c.start(opt, t)));
    Bytes pieces[2] = {Bytes(server.begin(), server.begin() + static_cast<long>(split)),
                       Bytes(server.begin() + static_cast<long>(split), server.end())};
    for (int i = 0; i < 2; ++i) {
        const Bytes& p = pieces[i];
        Step s = c.feed({p.data(), p.size()});
        r.last = s;
        auto out = c.take_out();
        if (!out.empty()) {
            r.sent.push_back(span_bytes(out));
        }
        if (s.status != Status::need_more) {
            r.leftover.assign(p.begin() + static_cast<long>(s.consumed), p.end());
            if (i == 0) {
                r.leftover = cat(r.leftover, pieces[1]);
            }
            return r;
        }
        EXPECT_EQ(s.consumed, p.size()) << "need_more consumes everything";
    }
    return r;
}

TEST(Socks5, NoAuthByAddressAtEverySplit) {
    plan::SockAddr dst = v4("192.0.2.7", 443);
    Bytes server = cat(cat(B({5, 0}), ok_v4), S("banner"));
    for (size_t split = 0; split <= server.size(); ++split) {
        // Not pipelined: the reply to the request must not come before the request is sent, so
        // the script feeds the method reply and the CONNECT reply in separate feeds.
        Socks5Client c;
        EXPECT_EQ(span_bytes(c.start({}, {&dst, {}, 0})), greet_none);
        Bytes all = server;
        size_t off = 0;
        std::vector<Bytes> sent;
        Step s;
        // First feed up to min(split, 2) then the rest after the request went out.
        size_t first = std::min<size_t>(split, 2);
        s = c.feed({all.data(), first});
        off += s.consumed;
        ASSERT_EQ(s.status, Status::need_more);
        if (first < 2) {
            s = c.feed({all.data() + off, 2 - off});
            off += s.consumed;
        }
        ASSERT_EQ(s.status, Status::need_more);
        EXPECT_EQ(span_bytes(c.take_out()), req_v4);
        s = c.feed({all.data() + off, std::max(split, off) - off});
        off += s.consumed;
        if (s.status == Status::need_more) {
            s = c.feed({all.data() + off, all.size() - off});
            off += s.consumed;
        }
        ASSERT_EQ(s.status, Status::done) << "split " << split;
        EXPECT_EQ(off, 2 + ok_v4.size()) << "split " << split;
        EXPECT_EQ(Bytes(all.begin() + static_cast<long>(off), all.end()), S("banner"));
    }
}

TEST(Socks5, ByteByByteWithAuth) {
    plan::SockAddr dst = v4("192.0.2.7", 443);
    Socks5Client c;
    EXPECT_EQ(span_bytes(c.start({"a", "pw", false}, {&dst, {}, 0})), greet_user);
    Bytes method = B({5, 2});
    for (size_t i = 0; i < method.size(); ++i) {
        Step s = c.feed({&method[i], 1});
        EXPECT_EQ(s.status, Status::need_more);
        EXPECT_EQ(s.consumed, 1u);
    }
    EXPECT_EQ(span_bytes(c.take_out()), auth_ab);
    EXPECT_TRUE(c.take_out().empty());
    Bytes auth = B({1, 0});
    for (uint8_t b : auth) {
        EXPECT_EQ(c.feed({&b, 1}).status, Status::need_more);
    }
    EXPECT_EQ(span_bytes(c.take_out()), req_v4);
    for (size_t i = 0; i < ok_v4.size(); ++i) {
        Step s = c.feed({&ok_v4[i], 1});
        EXPECT_EQ(s.status, i + 1 == ok_v4.size() ? Status::done : Status::need_more) << i;
        EXPECT_EQ(s.consumed, 1u);
    }
}

TEST(Socks5, PipelinedSendsAllAtOnceAndReadsThreeRepliesAtEverySplit) {
    plan::SockAddr dst = v4("192.0.2.7", 443);
    Bytes server = cat(cat(B({5, 2, 1, 0}), ok_v4), S("xy"));
    for (size_t split = 0; split <= server.size(); ++split) {
        Script r = drive({"a", "pw", true}, {&dst, {}, 0}, server, split);
        ASSERT_EQ(r.sent.size(), 1u) << "pipelined: one write";
        EXPECT_EQ(r.sent[0], cat(cat(greet_user, auth_ab), req_v4));
        ASSERT_EQ(r.last.status, Status::done) << split;
        EXPECT_EQ(r.leftover, S("xy")) << split;
    }
}

TEST(Socks5, DomainAndV6Requests) {
    Socks5Client c;
    Bytes g = span_bytes(c.start({"", "", true}, {nullptr, "example.com", 8080}));
    Bytes want = cat(greet_none, B({5, 1, 0, 3, 11}));
    want = cat(cat(want, S("example.com")), B({0x1F, 0x90}));
    EXPECT_EQ(g, want);

    plan::SockAddr dst6 = v6("2001:db8::1", 22);
    Bytes g6 = span_bytes(c.start({"", "", true}, {&dst6, {}, 0}));
    Bytes want6 =
        cat(greet_none,
            B({5, 1, 0, 4, 0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 22}));
    EXPECT_EQ(g6, want6);
}

TEST(Socks5, RepliesWithDomainAndV6BoundAddressesAtEverySplit) {
    plan::SockAddr dst = v4("192.0.2.7", 443);
    Bytes dom = cat(cat(B({5, 0, 0, 3, 4}), S("prox")), B({0, 80}));
    Bytes six = B({5, 0, 0, 4, 0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9, 0, 80});
    for (const Bytes& rep : {dom, six}) {
        Bytes server = cat(cat(B({5, 0}), rep), S("Z"));
        for (size_t split = 0; split <= server.size(); ++split) {
            Script r = drive({"", "", true}, {&dst, {}, 0}, server, split);
            ASSERT_EQ(r.last.status, Status::done) << split;
            EXPECT_EQ(r.leftover, S("Z")) << split;
        }
    }
}

TEST(Socks5, EveryReplyCodeMapsToItsCause) {
    plan::SockAddr dst = v4("192.0.2.7", 443);
    const Cause want[] = {Cause::none,
                          Cause::socks_general,
                          Cause::socks_not_allowed,
                          Cause::socks_net_unreachable,
                          Cause::socks_host_unreachable,
                          Cause::socks_refused,
                          Cause::socks_ttl_expired,
                          Cause::socks_cmd_unsupported,
                          Cause::socks_atyp_unsupported,
                          Cause::socks_unknown_reply};
    for (int rep = 1; rep <= 9; ++rep) {
        // A refusal fails as soon as REP is seen, without waiting for the bound address.
        Script r = drive({"", "", true}, {&dst, {}, 0}, B({5, 0, 5, rep}), 4);
        EXPECT_EQ(r.last.status, Status::failed) << rep;
        EXPECT_EQ(r.last.cause, want[rep]) << rep;
        EXPECT_STRNE(cause_name(r.last.cause), "?");
    }
    EXPECT_EQ(socks5_reply_cause(0xFF), Cause::socks_unknown_reply);
}

// ---------------------------------------------------------------------------------------------
// SOCKS5 UDP ASSOCIATE (RFC 1928 section 7): the control connection's handshake and the UDP
// header of every datagram.

// Feeds the server's replies to a non-pipelined client one message at a time, each message
// split in two reads at `split` (clamped): a client that answered early or consumed too much
// fails. Returns the last step and every write.
struct Assoc {
    Step last;
    std::vector<Bytes> sent;
};
Assoc associate(Socks5Client& c, const Socks5Options& opt, const plan::SockAddr& any,
                const std::vector<Bytes>& replies, size_t split) {
    Assoc r;
    r.sent.push_back(span_bytes(c.start(opt, {&any, {}, 0, true})));
    for (const Bytes& m : replies) {
        size_t k = std::min(split, m.size());
        Bytes pieces[2] = {Bytes(m.begin(), m.begin() + static_cast<long>(k)),
                           Bytes(m.begin() + static_cast<long>(k), m.end())};
        for (const Bytes& p : pieces) {
            if (p.empty()) {
                continue;
            }
            r.last = c.feed({p.data(), p.size()});
            auto out = c.take_out();
            if (!out.empty()) {
                r.sent.push_back(span_bytes(out));
            }
            if (r.last.status != Status::need_more) {
                return r;
            }
            EXPECT_EQ(r.last.consumed, p.size());
        }
    }
    return r;
}

const Bytes assoc_any4 = B({5, 3, 0, 1, 0, 0, 0, 0, 0, 0});
// BND 198.51.100.1:4000 (0x0FA0)
const Bytes assoc_ok = B({5, 0, 0, 1, 198, 51, 100, 1, 0x0F, 0xA0});

TEST(Socks5UdpAssociate, NoAuthRequestAndRelayAtEverySplit) {
    plan::SockAddr any = v4("0.0.0.0", 0);
    for (size_t split = 0; split <= assoc_ok.size(); ++split) {
        Socks5Client c;
        Assoc r = associate(c, {}, any, {B({5, 0}), assoc_ok}, split);
        ASSERT_EQ(r.last.status, Status::done) << split;
        EXPECT_EQ(r.last.consumed, split == 0 || split >= assoc_ok.size()
                                       ? assoc_ok.size()
                                       : assoc_ok.size() - split);
        ASSERT_EQ(r.sent.size(), 2u);
        EXPECT_EQ(r.sent[0], greet_none);
        EXPECT_EQ(r.sent[1], assoc_any4);  // command 3, DST 0.0.0.0:0: our port is not known
        plan::SockAddr b;
        ASSERT_TRUE(c.bound(b));
        EXPECT_EQ(format_for_test(b), "198.51.100.1:4000");
    }
}

TEST(Socks5UdpAssociate, ByteByByteWithAuthOverIPv6) {
    plan::SockAddr any = v6("::", 0);
    Bytes ok6 = B({5, 0, 0, 4, 0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9, 0x13, 0x88});
    Socks5Client c;
    Assoc r = associate(c, {"a", "pw", false}, any, {B({5, 2}), B({1, 0}), ok6}, 1);
    ASSERT_EQ(r.last.status, Status::done);
    ASSERT_EQ(r.sent.size(), 3u);
    EXPECT_EQ(r.sent[0], greet_user);
    EXPECT_EQ(r.sent[1], auth_ab);
    Bytes want = B({5, 3, 0, 4});
    want.resize(4 + 16 + 2, 0);  // [::]:0
    EXPECT_EQ(r.sent[2], want);
    plan::SockAddr b;
    ASSERT_TRUE(c.bound(b));
    EXPECT_EQ(format_for_test(b), "[2001:db8::9]:5000");
    // Every byte of the final reply alone.
    Socks5Client d;
    r = associate(d, {"a", "pw", false}, any, {B({5, 2}), B({1, 0})}, 1);
    for (size_t i = 0; i < ok6.size(); ++i) {
        Step s = d.feed({&ok6[i], 1});
        EXPECT_EQ(s.status, i + 1 == ok6.size() ? Status::done : Status::need_more) << i;
    }
}

TEST(Socks5UdpAssociate, RefusalsAndBadAuthMapToCauses) {
    plan::SockAddr any = v4("0.0.0.0", 0);
    // Dante without a `command: udpassociate` rule answers REP 2; servers without UDP, REP 7.
    for (auto [rep, cause] :
         {std::pair{2, Cause::socks_not_allowed}, std::pair{7, Cause::socks_cmd_unsupported},
          std::pair{1, Cause::socks_general}, std::pair{8, Cause::socks_atyp_unsupported}}) {
        for (size_t split = 0; split <= 4; ++split) {
            Socks5Client c;
            Assoc r = associate(c, {}, any, {B({5, 0}), B({5, rep, 0, 1})}, split);
            EXPECT_EQ(r.last.status, Status::failed) << rep << " " << split;
            EXPECT_EQ(r.last.cause, cause) << rep;
        }
    }
    Socks5Client c;
    EXPECT_EQ(associate(c, {"a", "pw", false}, any, {B({5, 2}), B({1, 1})}, 1).last.cause,
              Cause::socks_auth_refused);
    Socks5Client n;
    EXPECT_EQ(associate(n, {}, any, {B({5, 0xFF})}, 1).last.cause, Cause::socks_no_method);
    // A relay named by domain is not an address we could send to.
    Socks5Client d;
    Bytes dom = cat(cat(B({5, 0, 0, 3, 4}), S("prox")), B({0, 80}));
    ASSERT_EQ(associate(d, {}, any, {B({5, 0}), dom}, 3).last.status, Status::done);
    plan::SockAddr b;
    EXPECT_FALSE(d.bound(b));
}

TEST(Socks5UdpAssociate, UnspecifiedRelayIsTheServersAddress) {
    plan::SockAddr server = v4("192.0.2.10", 1080);
    plan::SockAddr r = socks5_relay_address(v4("0.0.0.0", 4000), server);
    ASSERT_EQ(r.family(), AF_INET);
    EXPECT_EQ(format_for_test(r), "192.0.2.10:4000");
    EXPECT_EQ(format_for_test(socks5_relay_address(v4("198.51.100.1", 4001), server)),
              "198.51.100.1:4001");
    plan::SockAddr server6 = v6("2001:db8::10", 1080);
    EXPECT_EQ(format_for_test(socks5_relay_address(v6("::", 4002), server6)),
              "[2001:db8::10]:4002");
    // [::] from a server reached over IPv4: still the server's address.
    EXPECT_EQ(format_for_test(socks5_relay_address(v6("::", 4003), server)), "192.0.2.10:4003");
    // Unusable: port 0, or a concrete address of the other family.
    EXPECT_EQ(socks5_relay_address(v4("198.51.100.1", 0), server).len, 0u);
    EXPECT_EQ(socks5_relay_address(v6("2001:db8::1", 9), server).len, 0u);
    EXPECT_EQ(socks5_relay_address(plan::SockAddr{}, server).len, 0u);
}

TEST(Socks5UdpHeader, EncodesV4V6AndMapped) {
    uint8_t h[kSocks5UdpMaxHeader];
    uint32_t n = socks5_udp_header(v4("203.0.113.5", 53), h);
    EXPECT_EQ(Bytes(h, h + n), B({0, 0, 0, 1, 203, 0, 113, 5, 0, 53}));
    n = socks5_udp_header(v6("::ffff:203.0.113.5", 53), h);
    EXPECT_EQ(Bytes(h, h + n), B({0, 0, 0, 1, 203, 0, 113, 5, 0, 53}));
    n = socks5_udp_header(v6("2001:db8::5", 443), h);
    EXPECT_EQ(Bytes(h, h + n),
              B({0, 0, 0, 4, 0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5, 1, 0xBB}));
    EXPECT_EQ(socks5_udp_header(plan::SockAddr{}, h), 0u);
}

TEST(Socks5UdpHeader, ParsesRepliesAndRejectsBadOnes) {
    Bytes p4 = cat(B({0, 0, 0, 1, 203, 0, 113, 5, 0, 53}), S("answer"));
    Socks5UdpReply r = parse_socks5_udp({p4.data(), p4.size()});
    ASSERT_EQ(r.status, UdpHeader::ok);
    EXPECT_EQ(r.header_len, 10u);
    EXPECT_EQ(r.port, 53);
    EXPECT_EQ(format_for_test(r.from), "203.0.113.5:53");
    Bytes p6 = cat(B({0, 0, 0, 4, 0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5, 1, 0xBB}),
                   S("x"));
    r = parse_socks5_udp({p6.data(), p6.size()});
    ASSERT_EQ(r.status, UdpHeader::ok);
    EXPECT_EQ(r.header_len, 22u);
    EXPECT_EQ(format_for_test(r.from), "[2001:db8::5]:443");
    Bytes pd = cat(cat(B({0, 0, 0, 3, 11}), S("example.com")), B({0, 53}));
    r = parse_socks5_udp({pd.data(), pd.size()});  // a header with no payload is valid
    ASSERT_EQ(r.status, UdpHeader::ok);
    EXPECT_EQ(r.header_len, pd.size());
    EXPECT_EQ(r.domain, "example.com");
    EXPECT_EQ(r.from.len, 0u);
    EXPECT_EQ(r.port, 53);
    // Every prefix shorter than a header is short, never read past the end.
    for (const Bytes* full : {&p4, &p6, &pd}) {
        size_t hlen = full == &p4 ? 10 : full == &p6 ? 22 : pd.size();
        for (size_t len = 0; len < hlen; ++len) {
            EXPECT_EQ(parse_socks5_udp({full->data(), len}).status, UdpHeader::short_input) << len;
        }
    }
    Bytes frag = p4;
    frag[2] = 1;
    EXPECT_EQ(parse_socks5_udp({frag.data(), frag.size()}).status, UdpHeader::fragment);
    Bytes rsv = p4;
    rsv[1] = 1;
    EXPECT_EQ(parse_socks5_udp({rsv.data(), rsv.size()}).status, UdpHeader::malformed);
    Bytes atyp = p4;
    atyp[3] = 2;
    EXPECT_EQ(parse_socks5_udp({atyp.data(), atyp.size()}).status, UdpHeader::malformed);
    Bytes empty_name = B({0, 0, 0, 3, 0, 0, 53});
    EXPECT_EQ(parse_socks5_udp({empty_name.data(), empty_name.size()}).status,
              UdpHeader::malformed);
}

TEST(Socks5, MethodAndAuthFailures) {
    plan::SockAddr dst = v4("192.0.2.7", 443);
    EXPECT_EQ(drive({}, {&dst, {}, 0}, B({5, 0xFF}), 2).last.cause, Cause::socks_no_method);
    // The server picks a method we did not offer.
    EXPECT_EQ(drive({}, {&dst, {}, 0}, B({5, 2}), 2).last.cause, Cause::malformed);
    EXPECT_EQ(drive({}, {&dst, {}, 0}, B({4, 0}), 2).last.cause, Cause::malformed);
    Script r = drive({"a", "pw", true}, {&dst, {}, 0}, B({5, 2, 1, 1}), 4);
    EXPECT_EQ(r.last.status, Status::failed);
    EXPECT_EQ(r.last.cause, Cause::socks_auth_refused);
    // Bad ATYP in the CONNECT reply; a version-4 reply.
    Socks5Options pipe{"", "", true};
    EXPECT_EQ(drive(pipe, {&dst, {}, 0}, B({5, 0, 5, 0, 0, 9}), 6).last.cause, Cause::malformed);
    EXPECT_EQ(drive(pipe, {&dst, {}, 0}, B({5, 0, 4, 0, 0, 1}), 6).last.cause, Cause::malformed);
    EXPECT_EQ(drive(pipe, {&dst, {}, 0}, B({5, 0, 4, 0, 0, 1}), 6).last.status, Status::failed);
    EXPECT_EQ(Socks5Client::on_eof().cause, Cause::closed);
}

TEST(Socks5, BytesBeforeOurNextMessageBreakTheProtocol) {
    plan::SockAddr dst = v4("192.0.2.7", 443);
    Socks5Client c;
    (void)c.start({}, {&dst, {}, 0});
    Bytes early = cat(B({5, 0}), ok_v4);  // the reply to a request not yet sent
    Step s = c.feed({early.data(), early.size()});
    EXPECT_EQ(s.status, Status::failed);
    EXPECT_EQ(s.cause, Cause::malformed);
}

TEST(Socks5, InvalidOptionsGiveNothingToSend) {
    plan::SockAddr dst = v4("192.0.2.7", 443);
    Socks5Client c;
    std::string long_name(256, 'a');
    EXPECT_TRUE(c.start({long_name, "x", false}, {&dst, {}, 0}).empty());
    EXPECT_TRUE(c.start({"", "", false}, {nullptr, long_name, 1}).empty());
    EXPECT_TRUE(c.start({"", "pw", false}, {&dst, {}, 0}).empty());
    EXPECT_TRUE(c.start({}, {nullptr, {}, 0}).empty());
    std::string max(255, 'u');
    auto g = c.start({max, max, true}, {nullptr, max, 1});
    EXPECT_EQ(g.size(), Socks5Client::max_out);
}

// ---------------------------------------------------------------------------------------------
// HTTP CONNECT

TEST(HttpConnect, RequestWithAndWithoutCredentials) {
    HttpConnectClient c;
    EXPECT_EQ(span_bytes(c.start("192.0.2.7:443", "")),
              S("CONNECT 192.0.2.7:443 HTTP/1.1\r\nHost: 192.0.2.7:443\r\n\r\n"));
    // RFC 7617's example: Aladdin:open sesame.
    EXPECT_EQ(span_bytes(c.start("example.com:80", "Aladdin:open sesame")),
              S("CONNECT example.com:80 HTTP/1.1\r\nHost: example.com:80\r\n"
                "Proxy-Authorization: Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==\r\n\r\n"));
    EXPECT_TRUE(c.start("", "").empty());
    EXPECT_TRUE(c.start(std::string(2000, 'h'), "").empty());
}

TEST(HttpConnect, Base64Padding) {
    char out[16];
    EXPECT_EQ(std::string(out, base64_encode("f", out, sizeof out)), "Zg==");
    EXPECT_EQ(std::string(out, base64_encode("fo", out, sizeof out)), "Zm8=");
    EXPECT_EQ(std::string(out, base64_encode("foo", out, sizeof out)), "Zm9v");
    EXPECT_EQ(std::string(out, base64_encode("foob", out, sizeof out)), "Zm9vYg==");
    EXPECT_EQ(base64_encode("foobar", out, 4), 0u);
}

TEST(HttpConnect, BytesAfterThe2xxHeadAreKeptAtEverySplit) {
    Bytes head =
        S("HTTP/1.1 200 Connection established\r\nProxy-Agent: x\r\n"
          "Content-Length: 5\r\n\r\n");
    Bytes all = cat(head, S("220 smtp ready\r\n"));
    for (size_t split = 0; split <= all.size(); ++split) {
        HttpConnectClient c;
        (void)c.start("192.0.2.7:25", "");
        Step s = c.feed({all.data(), split});
        uint32_t off = s.consumed;
        if (s.status == Status::need_more) {
            EXPECT_EQ(off, split);
            s = c.feed({all.data() + off, all.size() - off});
            off += s.consumed;
        }
        ASSERT_EQ(s.status, Status::done) << split;
        EXPECT_EQ(off, head.size()) << split;
        EXPECT_EQ(c.status_code(), 200);
    }
}

TEST(HttpConnect, BareLfAndHttp10) {
    HttpConnectClient c;
    (void)c.start("h:1", "");
    Bytes r = S("HTTP/1.0 200 OK\n\nX");
    Step s = c.feed({r.data(), r.size()});
    EXPECT_EQ(s.status, Status::done);
    EXPECT_EQ(s.consumed, r.size() - 1);
}

TEST(HttpConnect, FailureCodesByteByByte) {
    struct Case {
        const char* reply;
        Cause cause;
    } cases[] = {
        {"HTTP/1.1 407 Proxy Authentication Required\r\n", Cause::http_auth_required},
        {"HTTP/1.1 403 Forbidden\r\n", Cause::http_forbidden},
        {"HTTP/1.1 502 Bad Gateway\r\n", Cause::http_server_error},
        {"HTTP/1.1 503\r\n", Cause::http_server_error},
        {"HTTP/1.1 404 Not Found\r\n", Cause::http_other},
        {"HTTP/1.1 301 Moved\r\n", Cause::http_other},
        {"SSH-2.0-OpenSSH\r\n", Cause::malformed},
        {"HTTP/2 200\r\n", Cause::malformed},
        {"HTTP/1.1 2000 x\r\n", Cause::malformed},
        {"HTTP/1.1 20x\r\n", Cause::malformed},
    };
    for (const Case& k : cases) {
        HttpConnectClient c;
        (void)c.start("h:1", "");
        Bytes r = S(k.reply);
        Step s;
        for (size_t i = 0; i < r.size(); ++i) {
            s = c.feed({&r[i], 1});
            if (s.status != Status::need_more) {
                EXPECT_EQ(i + 1, r.size()) << k.reply << ": decided at the status line's end";
                break;
            }
        }
        EXPECT_EQ(s.status, Status::failed) << k.reply;
        EXPECT_EQ(s.cause, k.cause) << k.reply;
    }
}

TEST(HttpConnect, EndlessHeadIsMalformed) {
    HttpConnectClient c;
    (void)c.start("h:1", "");
    Bytes st = S("HTTP/1.1 200 OK\r\n");
    ASSERT_EQ(c.feed({st.data(), st.size()}).status, Status::need_more);
    Bytes junk(HttpConnectClient::max_head, 'a');
    Step s = c.feed({junk.data(), junk.size()});
    EXPECT_EQ(s.status, Status::failed);
    EXPECT_EQ(s.cause, Cause::malformed);
}

// ---------------------------------------------------------------------------------------------
// PROXY protocol

TEST(ProxyProtocol, V1Encode) {
    uint8_t out[proxy_v1_max];
    uint32_t n = proxy_v1_encode(v4("192.0.2.1", 56324), v4("198.51.100.2", 443), out, sizeof out);
    EXPECT_EQ(std::string(reinterpret_cast<char*>(out), n),
              "PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n");
    n = proxy_v1_encode(v6("2001:db8::1", 1), v6("2001:db8::2", 2), out, sizeof out);
    EXPECT_EQ(std::string(reinterpret_cast<char*>(out), n),
              "PROXY TCP6 2001:db8::1 2001:db8::2 1 2\r\n");
    // A dual-stack listener sees v4 clients as mapped v6: written as TCP4.
    n = proxy_v1_encode(v6("::ffff:192.0.2.1", 5), v4("192.0.2.9", 6), out, sizeof out);
    EXPECT_EQ(std::string(reinterpret_cast<char*>(out), n),
              "PROXY TCP4 192.0.2.1 192.0.2.9 5 6\r\n");
    // A v4 client to a v6 destination: both as v6.
    n = proxy_v1_encode(v4("192.0.2.1", 5), v6("2001:db8::2", 6), out, sizeof out);
    EXPECT_EQ(std::string(reinterpret_cast<char*>(out), n),
              "PROXY TCP6 ::ffff:192.0.2.1 2001:db8::2 5 6\r\n");
    // The longest v1 line fits the 107 bytes the spec allows.
    n = proxy_v1_encode(v6("ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe", 65535),
                        v6("ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe", 65535), out, sizeof out);
    EXPECT_GT(n, 0u);
    EXPECT_LE(n, proxy_v1_max);
    EXPECT_EQ(proxy_v1_encode(v4("192.0.2.1", 1), v4("192.0.2.2", 2), out, 10), 0u);
    EXPECT_EQ(proxy_v1_encode(plan::SockAddr{}, v4("192.0.2.2", 2), out, sizeof out), 0u);
}

TEST(ProxyProtocol, V2EncodeWithAuthority) {
    uint8_t out[proxy_v2_max_out];
    uint32_t n = proxy_v2_encode(v4("192.0.2.1", 0x1234), v4("198.51.100.2", 443), "example.com",
                                 out, sizeof out);
    Bytes want = B({0x0D, 0x0A, 0x0D, 0x0A, 0x00,        0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54,
                    0x0A, 0x21, 0x11, 0x00, 12 + 3 + 11, 192,  0,    2,    1,    198,  51,
                    100,  2,    0x12, 0x34, 0x01,        0xBB, 0x02, 0x00, 11});
    want = cat(want, S("example.com"));
    EXPECT_EQ(Bytes(out, out + n), want);
    n = proxy_v2_encode(v6("2001:db8::1", 1), v6("2001:db8::2", 2), "", out, sizeof out);
    EXPECT_EQ(n, 16u + 36u);
    EXPECT_EQ(out[13], 0x21);
    EXPECT_EQ(proxy_v2_encode(v4("192.0.2.1", 1), v4("192.0.2.2", 2), "", out, 27), 0u);
}

TEST(ProxyProtocol, RoundTripAtEveryPrefix) {
    uint8_t out[proxy_v2_max_out];
    for (bool two : {false, true}) {
        for (auto [s, d] : {std::pair{v4("192.0.2.1", 1000), v4("203.0.113.5", 80)},
                            std::pair{v6("2001:db8::7", 9), v6("2001:db8::8", 10)}}) {
            uint32_t n = two ? proxy_v2_encode(s, d, "a.example", out, sizeof out)
                             : proxy_v1_encode(s, d, out, sizeof out);
            ASSERT_GT(n, 0u);
            Bytes all(out, out + n);
            all.push_back('Q');  // the client's first byte follows the header
            for (uint32_t k = 0; k < n; ++k) {
                ProxyHeader h = proxy_decode({all.data(), k}, ProxyAccept::any);
                EXPECT_EQ(h.status, Status::need_more) << "prefix " << k;
            }
            ProxyHeader h =
                proxy_decode({all.data(), all.size()}, two ? ProxyAccept::v2 : ProxyAccept::v1);
            ASSERT_EQ(h.status, Status::done);
            EXPECT_EQ(h.length, n);
            EXPECT_FALSE(h.local);
            EXPECT_EQ(h.src.len, s.len);
            EXPECT_EQ(0, memcmp(h.src.get(), s.get(), s.len));
            EXPECT_EQ(0, memcmp(h.dst.get(), d.get(), d.len));
            EXPECT_STREQ(h.authority, two ? "a.example" : "");
            // The other version only is refused.
            EXPECT_EQ(
                proxy_decode({all.data(), all.size()}, two ? ProxyAccept::v1 : ProxyAccept::v2)
                    .status,
                Status::failed);
        }
    }
}

TEST(ProxyProtocol, DecodeLocalAndUnknown) {
    Bytes local = B({0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A, 0x20,
                     0x00, 0x00, 0x00});
    ProxyHeader h = proxy_decode({local.data(), local.size()}, ProxyAccept::any);
    EXPECT_EQ(h.status, Status::done);
    EXPECT_TRUE(h.local);
    EXPECT_EQ(h.length, 16u);
    Bytes unk = S("PROXY UNKNOWN whatever\r\nGET");
    h = proxy_decode({unk.data(), unk.size()}, ProxyAccept::v1);
    EXPECT_EQ(h.status, Status::done);
    EXPECT_TRUE(h.local);
    EXPECT_EQ(h.length, 24u);
}

TEST(ProxyProtocol, DecodeRejectsMalformed) {
    const char* bad_v1[] = {
        "GET / HTTP/1.1\r\n",
        "PROXY TCP4 192.0.2.1 192.0.2.2 1 2\n",        // no CR
        "PROXY TCP4 192.0.2.1 192.0.2.2 01 2\r\n",     // leading zero
        "PROXY TCP4 192.0.2.1 192.0.2.2 1 65536\r\n",  // port too big
        "PROXY TCP4 2001:db8::1 192.0.2.2 1 2\r\n",    // family mismatch
        "PROXY TCP4 192.0.2.1 192.0.2.2 1\r\n",        // a field missing
        "PROXY TCP4 192.0.2.1 192.0.2.2 1 2 3\r\n",    // a field too many
        "PROXY UDP4 192.0.2.1 192.0.2.2 1 2\r\n",
        "PROXY  TCP4 192.0.2.1 192.0.2.2 1 2\r\n",
    };
    for (const char* s : bad_v1) {
        Bytes b = S(s);
        EXPECT_EQ(proxy_decode({b.data(), b.size()}, ProxyAccept::any).status, Status::failed) << s;
    }
    // No LF within 107 bytes.
    Bytes long_line = S("PROXY TCP4 ");
    long_line.resize(200, '1');
    EXPECT_EQ(proxy_decode({long_line.data(), long_line.size()}, ProxyAccept::v1).status,
              Status::failed);
    Bytes sig = B({0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A});
    auto v2 = [&](std::initializer_list<int> rest) { return cat(sig, B(rest)); };
    Bytes bad_v2[] = {
        v2({0x11, 0x11, 0, 12}),                                            // version 1
        v2({0x22, 0x11, 0, 12}),                                            // command 2
        v2({0x21, 0x12, 0, 12, 1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 0, 2}),        // UDP on TCP
        v2({0x21, 0x11, 0, 4, 1, 2, 3, 4}),                                 // short address block
        v2({0x21, 0x11, 0, 14, 1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 0, 2, 2, 0}),  // cut TLV
        v2({0x21, 0x11, 0, 15, 1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 0, 2, 2, 0, 9}),  // TLV overruns
    };
    for (const Bytes& b : bad_v2) {
        EXPECT_EQ(proxy_decode({b.data(), b.size()}, ProxyAccept::any).status, Status::failed);
    }
    Bytes almost = sig;
    almost[11] = 0x0B;
    EXPECT_EQ(proxy_decode({almost.data(), almost.size()}, ProxyAccept::v2).status, Status::failed);
}

// ---------------------------------------------------------------------------------------------
// Sniffers

// A TLS 1.3-style ClientHello for `sni`, optionally split into records of `rec` payload bytes.
Bytes client_hello(const std::string& sni, size_t rec = 16384) {
    Bytes body = B({0x03, 0x03});
    body.resize(body.size() + 32, 0x11);  // random
    body = cat(body, B({32}));            // session id
    body.resize(body.size() + 32, 0x22);
    body = cat(body, B({0, 4, 0x13, 0x01, 0x13, 0x02}));  // cipher suites
    body = cat(body, B({1, 0}));                          // compression
    Bytes ext;
    ext = cat(ext, B({0x00, 0x2b, 0, 3, 2, 3, 4}));  // supported_versions first
    if (!sni.empty()) {
        size_t n = sni.size();
        ext = cat(ext, B({0, 0, int((n + 5) >> 8), int((n + 5) & 255), int((n + 3) >> 8),
                          int((n + 3) & 255), 0, int(n >> 8), int(n & 255)}));
        ext = cat(ext, S(sni));
    }
    ext = cat(ext, B({0x00, 0x10, 0, 5, 0, 3, 2, 'h', '2'}));  // ALPN after it
    body = cat(body, B({int(ext.size() >> 8), int(ext.size() & 255)}));
    body = cat(body, ext);
    Bytes hs = B({1, 0, int(body.size() >> 8), int(body.size() & 255)});
    hs = cat(hs, body);
    Bytes out;
    for (size_t off = 0; off < hs.size(); off += rec) {
        size_t n = std::min(rec, hs.size() - off);
        out = cat(out, B({0x16, 0x03, 0x01, int(n >> 8), int(n & 255)}));
        out.insert(out.end(), hs.begin() + long(off), hs.begin() + long(off + n));
    }
    return out;
}

TEST(Sniff, TlsSniAtEveryPrefix) {
    for (size_t rec : {size_t(16384), size_t(50), size_t(1)}) {
        Bytes ch = client_hello("WWW.Example.COM", rec);
        for (size_t k = 0; k < ch.size(); ++k) {
            SniffResult r = sniff_name({ch.data(), k});
            // Once the name's bytes are in, the answer is known before the end of the hello.
            if (r.status == SniffStatus::found) {
                EXPECT_EQ(r.view(), "www.example.com");
                continue;
            }
            EXPECT_EQ(r.status, SniffStatus::need_more) << "rec " << rec << " prefix " << k;
        }
        SniffResult r = sniff_name({ch.data(), ch.size()});
        ASSERT_EQ(r.status, SniffStatus::found) << rec;
        EXPECT_EQ(r.view(), "www.example.com");
    }
}

TEST(Sniff, TlsWithoutSniOrNotTls) {
    Bytes ch = client_hello("");
    EXPECT_EQ(sniff_tls_sni({ch.data(), ch.size()}).status, SniffStatus::none);
    Bytes ssh = S("SSH-2.0-OpenSSH_9.2\r\n");
    EXPECT_EQ(sniff_name({ssh.data(), ssh.size()}).status, SniffStatus::none);
    // Not a handshake record, not a ClientHello, a bad record version.
    Bytes alert = B({0x15, 0x03, 0x03, 0, 2, 2, 40});
    EXPECT_EQ(sniff_name({alert.data(), alert.size()}).status, SniffStatus::none);
    Bytes sh = B({0x16, 0x03, 0x03, 0, 4, 2, 0, 0, 0});
    EXPECT_EQ(sniff_name({sh.data(), sh.size()}).status, SniffStatus::none);
    Bytes v2 = B({0x16, 0x02});
    EXPECT_EQ(sniff_name({v2.data(), v2.size()}).status, SniffStatus::none);
    // A name with a byte no DNS name has.
    Bytes odd = client_hello("bad name");
    EXPECT_EQ(sniff_name({odd.data(), odd.size()}).status, SniffStatus::none);
    // Cut lengths: an extension longer than the extensions block.
    Bytes cut = client_hello("a.example");
    cut[cut.size() - 10] = 0xFF;
    EXPECT_NE(sniff_name({cut.data(), cut.size()}).status, SniffStatus::found);
}

TEST(Sniff, HttpHostAtEveryPrefix) {
    Bytes req =
        S("GET /index.html HTTP/1.1\r\nUser-Agent: t\r\nhOsT:  Shop.Example.org:8080 \r\n"
          "\r\n");
    for (size_t k = 0; k < req.size(); ++k) {
        SniffResult r = sniff_name({req.data(), k});
        if (r.status == SniffStatus::found) {
            EXPECT_EQ(r.view(), "shop.example.org");
            continue;
        }
        EXPECT_EQ(r.status, SniffStatus::need_more) << k;
    }
    SniffResult r = sniff_name({req.data(), req.size()});
    ASSERT_EQ(r.status, SniffStatus::found);
    EXPECT_EQ(r.view(), "shop.example.org");
}

TEST(Sniff, HttpWithoutHostOrNotHttp) {
    const char* none_cases[] = {
        "GET / HTTP/1.1\r\nAccept: */*\r\n\r\n",  // no Host
        "GET / HTTP/1.1\r\nHost: [2001:db8::1]:80\r\n\r\n",
        "get / HTTP/1.1\r\n",                 // lower-case method
        "GET / HTTP/2.0\r\nHost: a\r\n\r\n",  // not 1.x
        "220 mail.example ESMTP\r\n",         // a server banner shape
        "VERYLONGMETHODNAMEXX / HTTP/1.1\r\n",
        "\x01\x02\x03",
    };
    for (const char* s : none_cases) {
        Bytes b = S(s);
        EXPECT_EQ(sniff_name({b.data(), b.size()}).status, SniffStatus::none) << s;
    }
    Bytes b = S("CONNECT a.example:443 HTTP/1.1\r\nHost: a.example:443\r\n\r\n");
    EXPECT_EQ(sniff_name({b.data(), b.size()}).view(), "a.example");
}

}  // namespace
}  // namespace tp::engine::hs

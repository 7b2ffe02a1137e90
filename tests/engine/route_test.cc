// Route lookups: first match wins over destination prefixes, ports and sniffed domains (exact
// and suffix), and a route that needs a name asks for sniffing only when nothing before it
// matched. Destination lists (sorted, merged intervals) agree with a plain scan of the prefixes.
#include "engine/route.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>

#include <cstring>
#include <random>

namespace tp::engine {
namespace {

plan::SockAddr addr(const char* ip, uint16_t port) {
    plan::SockAddr a;
    if (std::string_view(ip).find(':') == std::string_view::npos) {
        auto* s = reinterpret_cast<sockaddr_in*>(&a.storage);
        s->sin_family = AF_INET;
        inet_pton(AF_INET, ip, &s->sin_addr);
        s->sin_port = htons(port);
        a.len = sizeof *s;
    } else {
        auto* s = reinterpret_cast<sockaddr_in6*>(&a.storage);
        s->sin6_family = AF_INET6;
        inet_pton(AF_INET6, ip, &s->sin6_addr);
        s->sin6_port = htons(port);
        a.len = sizeof *s;
    }
    return a;
}

plan::Prefix prefix(const char* ip, uint8_t len) {
    plan::Prefix p;
    p.family = std::string_view(ip).find(':') == std::string_view::npos ? AF_INET : AF_INET6;
    inet_pton(p.family, ip, p.addr);
    p.len = len;
    return p;
}

TEST(Route, DestinationsAndPortsFirstMatchWins) {
    plan::Listener l;
    plan::Route a;
    a.destinations = {prefix("198.51.100.0", 25)};
    a.ports = {{443, 443}};
    a.upstream = 7;
    plan::Route b;
    b.destinations = {prefix("198.51.100.0", 24), prefix("2001:db8::", 32)};
    l.routes = {a, b};
    RouteTable t(l);
    EXPECT_FALSE(t.wants_name());
    EXPECT_EQ(t.match(addr("198.51.100.5", 443), false, ""), 0);
    EXPECT_EQ(t.match(addr("198.51.100.5", 80), false, ""), 1);
    EXPECT_EQ(t.match(addr("198.51.100.200", 443), false, ""), 1);
    EXPECT_EQ(t.match(addr("::ffff:198.51.100.5", 443), false, ""), 0) << "v4-mapped is v4";
    EXPECT_EQ(t.match(addr("2001:db8:1::9", 1), false, ""), 1);
    EXPECT_EQ(t.match(addr("203.0.113.1", 443), false, ""), RouteTable::no_match);
}

TEST(Route, DomainsExactAndSuffixNeedTheName) {
    plan::Listener l;
    plan::Route direct_lan;
    direct_lan.destinations = {prefix("192.0.2.0", 24)};
    plan::Route by_name;
    by_name.domains = {"exact.example"};
    by_name.suffixes = {"proxied.example"};
    plan::Route rest;
    l.routes = {direct_lan, by_name, rest};
    RouteTable t(l);
    EXPECT_TRUE(t.wants_name());
    // A route before the named one matched: no sniffing needed.
    EXPECT_EQ(t.match(addr("192.0.2.1", 443), false, ""), 0);
    EXPECT_EQ(t.match(addr("203.0.113.1", 443), false, ""), RouteTable::need_name);
    EXPECT_EQ(t.match(addr("203.0.113.1", 443), true, "exact.example"), 1);
    EXPECT_EQ(t.match(addr("203.0.113.1", 443), true, "a.exact.example"), 2);
    EXPECT_EQ(t.match(addr("203.0.113.1", 443), true, "proxied.example"), 1);
    EXPECT_EQ(t.match(addr("203.0.113.1", 443), true, "x.y.proxied.example"), 1);
    EXPECT_EQ(t.match(addr("203.0.113.1", 443), true, "notproxied.example"), 2);
    EXPECT_EQ(t.match(addr("203.0.113.1", 443), true, ""), 2) << "no name: skip named routes";
}

TEST(Route, PrefixLengthsAtBitBoundaries) {
    plan::Listener l;
    plan::Route r;
    r.destinations = {prefix("203.0.113.128", 25), prefix("2001:db8::", 33)};
    l.routes = {r};
    RouteTable t(l);
    EXPECT_EQ(t.match(addr("203.0.113.127", 1), false, ""), RouteTable::no_match);
    EXPECT_EQ(t.match(addr("203.0.113.128", 1), false, ""), 0);
    EXPECT_EQ(t.match(addr("2001:db8:7fff::1", 1), false, ""), 0);
    EXPECT_EQ(t.match(addr("2001:db8:8000::1", 1), false, ""), RouteTable::no_match);
}

TEST(Route, OverlappingAdjacentAndWholeSpacePrefixes) {
    plan::Listener l;
    plan::Route r;
    // 192.0.2.0/25 and 192.0.2.128/25 are adjacent (one interval); /26 lies inside the first.
    r.destinations = {prefix("192.0.2.128", 25), prefix("192.0.2.0", 26), prefix("192.0.2.0", 25),
                      prefix("2001:db8::", 127), prefix("2001:db8::2", 128)};
    plan::Route all4;
    all4.destinations = {prefix("0.0.0.0", 0)};
    l.routes = {r, all4};
    RouteTable t(l);
    EXPECT_EQ(t.match(addr("192.0.1.255", 1), false, ""), 1);
    EXPECT_EQ(t.match(addr("192.0.2.0", 1), false, ""), 0);
    EXPECT_EQ(t.match(addr("192.0.2.127", 1), false, ""), 0);
    EXPECT_EQ(t.match(addr("192.0.2.128", 1), false, ""), 0);
    EXPECT_EQ(t.match(addr("192.0.2.255", 1), false, ""), 0);
    EXPECT_EQ(t.match(addr("192.0.3.0", 1), false, ""), 1);
    EXPECT_EQ(t.match(addr("255.255.255.255", 1), false, ""), 1);
    EXPECT_EQ(t.match(addr("2001:db8::2", 1), false, ""), 0);
    EXPECT_EQ(t.match(addr("2001:db8::3", 1), false, ""), RouteTable::no_match);
    EXPECT_EQ(t.match(addr("::", 1), false, ""), RouteTable::no_match) << "a v4 /0 is not v6";
}

// A long list, generated here: random small prefixes and a few large ones in a corner of each
// family (so they nest, overlap and touch), checked against the linear in_prefixes at random
// addresses.
TEST(Route, LongListAgreesWithPlainScan) {
    std::mt19937 rng(12345);
    std::vector<plan::Prefix> list;
    for (int i = 0; i < 3000; ++i) {
        plan::Prefix p;
        p.family = i % 3 == 0 ? AF_INET6 : AF_INET;
        // 198.51.0.0/16 or 2001:db8::/112 with random low bits: dense, so lists collide.
        if (p.family == AF_INET) {
            p.addr[0] = 198;
            p.addr[1] = 51;
            p.addr[2] = static_cast<uint8_t>(rng());
            p.addr[3] = static_cast<uint8_t>(rng());
            p.len = static_cast<uint8_t>(i % 400 == 1 ? 20 : 26 + rng() % 7);
        } else {
            inet_pton(AF_INET6, "2001:db8::", p.addr);
            p.addr[14] = static_cast<uint8_t>(rng());
            p.addr[15] = static_cast<uint8_t>(rng());
            p.len = static_cast<uint8_t>(i % 400 == 3 ? 116 : 122 + rng() % 7);
        }
        list.push_back(p);
    }
    plan::Listener l;
    plan::Route r;
    r.destinations = list;
    l.routes = {r};
    RouteTable t(l);
    int hits = 0;
    for (int i = 0; i < 20000; ++i) {
        plan::SockAddr a;
        if (i % 2 == 0) {
            a = addr("198.51.0.0", 1);
            auto* s = reinterpret_cast<sockaddr_in*>(&a.storage);
            uint8_t* b = reinterpret_cast<uint8_t*>(&s->sin_addr);
            b[1] = static_cast<uint8_t>(50 + rng() % 3);  // also just outside the /16
            b[2] = static_cast<uint8_t>(rng());
            b[3] = static_cast<uint8_t>(rng());
        } else {
            a = addr("2001:db8::", 1);
            auto* s = reinterpret_cast<sockaddr_in6*>(&a.storage);
            s->sin6_addr.s6_addr[13] = static_cast<uint8_t>(rng() % 2);
            s->sin6_addr.s6_addr[14] = static_cast<uint8_t>(rng());
            s->sin6_addr.s6_addr[15] = static_cast<uint8_t>(rng());
        }
        const bool want = in_prefixes(list, a);
        hits += want;
        ASSERT_EQ(t.match(a, false, ""), want ? 0 : RouteTable::no_match) << "address " << i;
    }
    EXPECT_GT(hits, 1000);
    EXPECT_LT(hits, 19000) << "both answers are exercised";
}

TEST(Route, TrustedSources) {
    std::vector<plan::Prefix> trusted = {prefix("127.0.0.0", 8), prefix("2001:db8::", 64)};
    EXPECT_TRUE(in_prefixes(trusted, addr("127.0.0.1", 1)));
    EXPECT_TRUE(in_prefixes(trusted, addr("::ffff:127.9.9.9", 1)));
    EXPECT_TRUE(in_prefixes(trusted, addr("2001:db8::5", 1)));
    EXPECT_FALSE(in_prefixes(trusted, addr("192.0.2.1", 1)));
    EXPECT_FALSE(in_prefixes(trusted, addr("2001:db8:1::5", 1)));
    EXPECT_FALSE(in_prefixes({}, addr("127.0.0.1", 1)));
}

}  // namespace
}  // namespace tp::engine

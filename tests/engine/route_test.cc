// Route lookups: first match wins over destination prefixes, ports and sniffed domains (exact
// and suffix), and a route that needs a name asks for sniffing only when nothing before it
// matched.
#include "engine/route.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>

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

// `upstreams:` and listener `routes:` (issue 10): what a valid file turns into, and every
// rejection with its position: unknown upstream names, unreadable credential files (whose
// content is never printed), malformed domains inline and in @files, udp on a TCP listener.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "config/load.h"

namespace tp::config {
namespace {

namespace fs = std::filesystem;

struct TmpDir {
    fs::path dir;
    TmpDir() {
        char t[] = "/tmp/tp-upstreams-XXXXXX";
        dir = mkdtemp(t);
    }
    ~TmpDir() { fs::remove_all(dir); }
    std::string write(const std::string& name, const std::string& text) const {
        std::ofstream(dir / name) << text;
        return (dir / name).string();
    }
};

std::vector<std::string> errors(const std::string& yaml) {
    LoadResult r = load_config_text(yaml, "t.yaml");
    std::vector<std::string> out;
    if (auto* d = std::get_if<std::vector<Diagnostic>>(&r)) {
        for (const Diagnostic& x : *d) {
            out.push_back(x.format());
        }
    }
    return out;
}

std::string first_error(const std::string& yaml) {
    auto e = errors(yaml);
    return e.empty() ? "(accepted)" : e.front();
}

std::string upstreams(const std::string& pass_file) {
    return "upstreams:\n"
           "  - name: socks\n"
           "    type: socks5\n"
           "    address: 192.0.2.10:1080\n"
           "    username: alice\n"
           "    password_file: " +
           pass_file +
           "\n"
           "    pipeline: true\n"
           "    connect_by: domain\n"
           "  - name: block\n"
           "    type: reject\n"
           "  - name: pp\n"
           "    to: 198.51.100.5:8080\n"
           "    proxy_protocol: v2\n";
}

std::string listener(const std::string& routes) {
    return "listeners:\n"
           "  - name: web\n"
           "    port: 50080\n"
           "    timeouts: {sniff: 200ms, handshake: 3s}\n"
           "    routes:\n" +
           routes;
}

TEST(ConfigUpstreams, ValidFileBecomesListenerRoutes) {
    TmpDir t;
    std::string pass = t.write("pass", "s3cret\n");
    std::string list = t.write("names.txt", "# proxied\n.Video.example\nexact.example  # one\n");
    std::string yaml = upstreams(pass) + listener("      - domains: [a.example, '@" + list +
                                                  "']\n"
                                                  "        upstream: socks\n"
                                                  "      - destinations: [203.0.113.0/24]\n"
                                                  "        ports: [25, 8000-8100]\n"
                                                  "        upstream: block\n"
                                                  "      - upstream: pp\n");
    LoadResult r = load_config_text(yaml, "t.yaml");
    ASSERT_TRUE(std::holds_alternative<LoadedConfig>(r)) << first_error(yaml);
    const plan::Listener& l = std::get<LoadedConfig>(r).plan.listeners.at(0);
    EXPECT_EQ(l.timeouts.sniff_ms, 200u);
    EXPECT_EQ(l.timeouts.handshake_ms, 3000u);
    ASSERT_EQ(l.upstreams.size(), 3u);
    EXPECT_EQ(l.upstreams[0].kind, plan::UpstreamKind::socks5);
    EXPECT_EQ(l.upstreams[0].username, "alice");
    EXPECT_EQ(l.upstreams[0].password, "s3cret");
    EXPECT_TRUE(l.upstreams[0].pipeline);
    EXPECT_TRUE(l.upstreams[0].by_domain);
    EXPECT_EQ(l.upstreams[1].kind, plan::UpstreamKind::reject);
    EXPECT_EQ(l.upstreams[2].kind, plan::UpstreamKind::direct);
    EXPECT_EQ(l.upstreams[2].target, plan::UpstreamTarget::fixed);
    EXPECT_EQ(l.upstreams[2].proxy_protocol, plan::ProxyProtocol::v2);
    ASSERT_EQ(l.routes.size(), 3u);
    EXPECT_EQ(l.routes[0].domains, (std::vector<std::string>{"a.example", "exact.example"}));
    EXPECT_EQ(l.routes[0].suffixes, (std::vector<std::string>{"video.example"}));
    EXPECT_EQ(l.routes[0].upstream, 0u);
    ASSERT_EQ(l.routes[1].destinations.size(), 1u);
    EXPECT_EQ(l.routes[1].destinations[0].len, 24);
    EXPECT_EQ(l.routes[1].ports.size(), 2u);
    EXPECT_EQ(l.routes[1].upstream, 1u);
    EXPECT_EQ(l.routes[2].upstream, 2u);
}

TEST(ConfigUpstreams, UnknownUpstreamName) {
    TmpDir t;
    std::string yaml = upstreams(t.write("pass", "pw\n")) + listener("      - upstream: sock\n");
    EXPECT_EQ(first_error(yaml),
              "t.yaml:19:19: listeners[0].routes[0].upstream: unknown upstream \"sock\" "
              "(defined: block, pp, socks)");
}

TEST(ConfigUpstreams, UnreadableCredentialFileNeverShowsASecret) {
    TmpDir t;
    std::string missing = (t.dir / "nope").string();
    auto e = first_error(upstreams(missing) + listener("      - upstream: socks\n"));
    EXPECT_EQ(e, "t.yaml:6:20: upstreams[0].password_file: cannot read " + missing +
                     ": No such file or directory");
    std::string cred = t.write("cred", "nocolonhere-secret\n");
    std::string yaml =
        "upstreams:\n  - name: h\n    type: http\n    address: 192.0.2.1:3128\n"
        "    credentials_file: " +
        cred + "\n" + listener("      - upstream: h\n");
    e = first_error(yaml);
    EXPECT_NE(e.find("USER:PASSWORD"), std::string::npos) << e;
    EXPECT_EQ(e.find("secret"), std::string::npos) << e;
}

TEST(ConfigUpstreams, MalformedDomainsInlineAndInFiles) {
    TmpDir t;
    std::string pass = t.write("pass", "pw\n");
    EXPECT_EQ(
        first_error(upstreams(pass) +
                    listener("      - domains: ['*.example.com']\n        upstream: socks\n")),
        "t.yaml:19:19: listeners[0].routes[0].domains[0]: \"*.example.com\" is not a domain "
        "name (bad character '*'; write \".example.com\" for a suffix)");
    EXPECT_NE(first_error(upstreams(pass) +
                          listener("      - domains: [a..b]\n        upstream: socks\n"))
                  .find("empty label"),
              std::string::npos);
    std::string bad = t.write("bad.txt", "good.example\n\n  bad name.example\n");
    EXPECT_EQ(first_error(upstreams(pass) +
                          listener("      - domains: '@" + bad + "'\n        upstream: socks\n")),
              bad +
                  ":3:3: listeners[0].routes[0].domains: \"bad name.example\" is not a domain "
                  "name (bad character ' '; write \".example.com\" for a suffix)");
    EXPECT_NE(first_error(upstreams(pass) + listener("      - domains: '@" + t.dir.string() +
                                                     "/none'\n        upstream: socks\n"))
                  .find("cannot read domain list"),
              std::string::npos);
}

TEST(ConfigUpstreams, UdpUpstreamOnATcpListener) {
    std::string yaml =
        "upstreams:\n  - name: s\n    type: socks5\n    address: 192.0.2.1:1080\n"
        "    udp: true\n" +
        listener("      - upstream: s\n");
    EXPECT_EQ(first_error(yaml),
              "t.yaml:11:19: listeners[0].routes[0].upstream: upstream \"s\" "
              "has udp: true, but listener \"web\" is TCP-only");
}

// Routes on listeners that serve UDP (issue 10): every upstream they name must carry UDP, and
// domain routes, which no datagram can match, are refused on a UDP-only listener.
std::string udp_listener(const std::string& protocol, const std::string& routes) {
    return "listeners:\n"
           "  - name: dns\n"
           "    port: 50053\n"
           "    protocol: " +
           protocol +
           "\n"
           "    routes:\n" +
           routes;
}

TEST(ConfigUpstreams, UdpRoutesNeedUpstreamsThatCarryUdp) {
    std::string ups =
        "upstreams:\n  - name: s\n    type: socks5\n    address: 192.0.2.1:1080\n"
        "  - name: h\n    type: http\n    address: 192.0.2.1:3128\n"
        "  - name: su\n    type: socks5\n    address: 192.0.2.1:1080\n    udp: true\n"
        "  - name: drop\n    type: reject\n";
    EXPECT_EQ(first_error(ups + udp_listener("udp", "      - upstream: s\n")),
              "t.yaml:19:19: listeners[0].routes[0].upstream: upstream \"s\" is socks5 without "
              "udp: true, but listener \"dns\" serves udp; set udp: true on the upstream (UDP "
              "ASSOCIATE) or protocol: tcp on the listener");
    EXPECT_NE(first_error(ups + udp_listener("both", "      - upstream: h\n"))
                  .find("t.yaml:19:19: listeners[0].routes[0].upstream: upstream \"h\" is http"),
              std::string::npos);
    std::string pp = "upstreams:\n  - name: pp\n    to: 198.51.100.5:53\n";
    EXPECT_EQ(first_error(pp + udp_listener("udp", "      - upstream: pp\n")),
              "t.yaml:9:19: listeners[0].routes[0].upstream: upstream \"pp\" sets to, source or "
              "proxy_protocol, which UDP flows do not use, and listener \"dns\" serves udp "
              "only; set them in the listener's upstream: instead");
    std::string ok = ups + udp_listener("udp",
                                        "      - ports: [53]\n        upstream: su\n"
                                        "      - destinations: [198.51.100.0/24]\n"
                                        "        upstream: drop\n");
    auto r = load_config_text(ok, "t.yaml");
    ASSERT_TRUE(std::holds_alternative<LoadedConfig>(r)) << first_error(ok);
    const plan::Listener& l = std::get<LoadedConfig>(r).plan.listeners.at(0);
    ASSERT_EQ(l.routes.size(), 2u);
    EXPECT_TRUE(l.upstreams.at(l.routes[0].upstream).udp);
    EXPECT_EQ(l.upstreams.at(l.routes[1].upstream).kind, plan::UpstreamKind::reject);
}

TEST(ConfigUpstreams, DomainRoutesOnAUdpOnlyListenerAreRefused) {
    std::string ups =
        "upstreams:\n  - name: su\n    type: socks5\n    address: 192.0.2.1:1080\n    udp: true\n";
    EXPECT_EQ(first_error(ups + udp_listener("udp",
                                             "      - domains: [example.com]\n"
                                             "        upstream: su\n")),
              "t.yaml:11:18: listeners[0].routes[0].domains: domains never match UDP flows (no "
              "name is sniffed from datagrams), and listener \"dns\" serves udp only; route by "
              "destinations or ports");
    // On a listener serving both, the route is for its TCP connections (docs/config.md).
    EXPECT_EQ(first_error(ups + udp_listener("both",
                                             "      - domains: [example.com]\n"
                                             "        upstream: su\n")),
              "(accepted)");
}

TEST(ConfigUpstreams, KeysByType) {
    std::string yaml = "upstreams:\n  - name: r\n    type: reject\n    address: 192.0.2.1:1\n" +
                       listener("      - upstream: r\n");
    EXPECT_NE(first_error(yaml).find("address"), std::string::npos);
    yaml = "upstreams:\n  - name: s\n    type: socks5\n" + listener("      - upstream: s\n");
    EXPECT_NE(first_error(yaml).find("needs an address"), std::string::npos);
    yaml = "upstreams:\n  - name: s\n    type: socks6\n" + listener("      - upstream: s\n");
    EXPECT_NE(first_error(yaml).find("type"), std::string::npos);
}

TEST(ConfigUpstreams, FilesWithoutUpstreamsKeepTheirMeaning) {
    LoadResult r = load_config_text("listeners:\n  - name: web\n    port: 50080\n", "t.yaml");
    ASSERT_TRUE(std::holds_alternative<LoadedConfig>(r));
    EXPECT_TRUE(std::get<LoadedConfig>(r).plan.listeners.at(0).routes.empty());
    EXPECT_TRUE(std::get<LoadedConfig>(r).plan.listeners.at(0).upstreams.empty());
}

TEST(ConfigUpstreams, AcceptProxyNeedsTrustedSources) {
    std::string base = "listeners:\n  - name: pin\n    port: 50090\n    transparent: false\n";
    LoadResult r = load_config_text(
        base + "    accept_proxy: any\n    accept_proxy_from: [127.0.0.0/8, \"2001:db8::/64\"]\n",
        "t.yaml");
    ASSERT_TRUE(std::holds_alternative<LoadedConfig>(r));
    const plan::Listener& l = std::get<LoadedConfig>(r).plan.listeners.at(0);
    EXPECT_EQ(l.accept_proxy, plan::AcceptProxy::any);
    EXPECT_EQ(l.accept_proxy_from.size(), 2u);
    EXPECT_EQ(first_error(base + "    accept_proxy: v2\n"),
              "t.yaml:5:19: listeners[0].accept_proxy: needs accept_proxy_from: the trusted "
              "proxies' addresses (a header from anyone else could claim any client)");
    EXPECT_EQ(first_error(base + "    accept_proxy_from: [127.0.0.1]\n"),
              "t.yaml:5:24: listeners[0].accept_proxy_from: only with accept_proxy");
    EXPECT_NE(first_error(base + "    accept_proxy: v3\n    accept_proxy_from: [127.0.0.1]\n")
                  .find("accept_proxy"),
              std::string::npos);
}

}  // namespace
}  // namespace tp::config

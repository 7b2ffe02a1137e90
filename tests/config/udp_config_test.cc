// The UDP keys of the rule set (issue 9): listener and rule protocols, the udp: limits, block_quic,
// reply_mark, and the nft lines they turn into (UDP tproxy for both families, the divert that
// stays TCP-only unless a UDP listener spoofs the client, and then only for upstream sockets).

#include <gtest/gtest.h>

#include <string>

#include "config/load.h"

namespace tp::config {
namespace {

std::string first_error(const std::string& yaml) {
    LoadResult r = load_config_text(yaml, "t.yaml");
    if (auto* d = std::get_if<std::vector<Diagnostic>>(&r)) {
        return d->empty() ? "(no diagnostics)" : d->front().format();
    }
    return "(accepted)";
}

LoadedConfig load_ok(const std::string& yaml) {
    LoadResult r = load_config_text(yaml, "t.yaml");
    if (auto* d = std::get_if<std::vector<Diagnostic>>(&r)) {
        std::string all;
        for (const Diagnostic& x : *d) {
            all += x.format() + "\n";
        }
        ADD_FAILURE() << "rejected:\n" << all;
        return {};
    }
    return std::get<LoadedConfig>(r);
}

// A UDP listener (`listener_extra` appended to its keys) and one tproxy rule using it.
std::string udp_file(const std::string& listener_extra, const std::string& rule_extra = "",
                     const std::string& protocol = "udp") {
    return "listeners:\n"
           "  - name: u\n"
           "    port: 50053\n"
           "    protocol: " +
           protocol + "\n" + listener_extra +
           "rules:\n"
           "  - name: r\n"
           "    interfaces: [lan0]\n"
           "    action: tproxy\n"
           "    listener: u\n" +
           rule_extra;
}

bool has_line(const std::string& text, const std::string& line) {
    return text.find("\t\t" + line + "\n") != std::string::npos;
}

// --- bad input: rejected with a position, nothing produced ---

TEST(UdpConfigBad, UdpRuleOnTcpOnlyListener) {
    EXPECT_EQ(first_error("listeners:\n  - {name: web, port: 50080}\n"
                          "rules:\n  - {name: dns, interfaces: [lan0], protocol: udp, ports: [53], "
                          "action: tproxy, listener: web}\n"),
              "t.yaml:4:47: rules[0].protocol: the rule catches UDP but listener \"web\" serves "
              "tcp only; set protocol: udp or both on the listener");
    // `both` on the rule needs both on the listener too.
    EXPECT_EQ(first_error(udp_file("", "    protocol: both\n")),
              "t.yaml:10:15: rules[0].protocol: the rule catches TCP but listener \"u\" serves udp "
              "only; set protocol: tcp or both on the listener");
}

TEST(UdpConfigBad, FlowLimitsOfZero) {
    EXPECT_EQ(first_error(udp_file("    udp: {max_flows_per_worker: 0}\n")),
              "t.yaml:5:33: listeners[0].udp.max_flows_per_worker: 0 is out of range for a flow "
              "limit from 1 (1-16777216)");
    EXPECT_EQ(first_error(udp_file("    udp: {max_flows_per_client: 0}\n")),
              "t.yaml:5:33: listeners[0].udp.max_flows_per_client: 0 is out of range for a flow "
              "limit from 1 (1-16777216)");
}

TEST(UdpConfigBad, DatagramLimitAbove65507) {
    EXPECT_EQ(first_error(udp_file("    udp: {max_datagram: 65508}\n")),
              "t.yaml:5:25: listeners[0].udp.max_datagram: 65508 is out of range for a datagram "
              "size in bytes (1-65507)");
    EXPECT_EQ(
        load_ok(udp_file("    udp: {max_datagram: 65507}\n")).plan.listeners[0].udp.max_datagram,
        65'507u);
}

TEST(UdpConfigBad, Others) {
    EXPECT_EQ(first_error(udp_file("", "", "tcpp")),
              "t.yaml:4:15: listeners[0].protocol: \"tcpp\" is not one of: tcp | udp | both");
    EXPECT_EQ(first_error(udp_file("    udp: {idle: 0s}\n")),
              "t.yaml:5:17: listeners[0].udp.idle: duration must be more than 0");
    EXPECT_EQ(first_error(udp_file("    udp: {idle: 5s, colour: red}\n")),
              "t.yaml:5:21: listeners[0].udp.colour: unknown key \"colour\" (allowed here: idle, "
              "dns_idle, dns_close_after_answer, quic_idle, max_flows_per_worker, "
              "max_flows_per_client, max_datagram)");
    EXPECT_EQ(first_error(udp_file("    udp: {idle: 5s}\n", "", "tcp")),
              "t.yaml:5:10: listeners[0].udp: udp settings on a listener that serves tcp only; add "
              "protocol: udp or both");
    EXPECT_EQ(first_error(udp_file("    fast_open: true\n")),
              "t.yaml:5:16: listeners[0].fast_open: fast_open is TCP only; this listener serves "
              "udp");
    EXPECT_EQ(
        first_error("listeners:\n  - {name: u, port: 50053, protocol: udp}\n"
                    "rules:\n  - {name: b, interfaces: [lan0], action: bypass, block_quic: "
                    "true}\n  - {name: r, interfaces: [lan0], action: tproxy, listener: u}\n"),
        "t.yaml:4:63: rules[0].block_quic: block_quic drops what a rule would intercept; a "
        "bypass rule intercepts nothing");
    // REDIRECT leaves a UDP socket no way to learn the original destination.
    EXPECT_EQ(first_error("listeners:\n  - {name: u, port: 50053, protocol: udp, transparent: "
                          "false}\nrules:\n  - {name: r, interfaces: [lan0], protocol: udp, "
                          "action: redirect, listener: u}\n"),
              "t.yaml:4:45: rules[0].protocol: redirect rewrites a datagram's destination and a "
              "UDP socket cannot ask conntrack for the original one; use action: tproxy for UDP, "
              "or give listener \"u\" a fixed upstream");
    EXPECT_EQ(first_error(udp_file("", "", "udp") + "routing: {reply_mark: 0xfe}\n"),
              "t.yaml:10:23: routing.reply_mark: reply_mark equals bypass_mark 0xfe: the UDP "
              "divert rule tells upstream sockets from reply sockets by it; set "
              "routing.reply_mark to another mark");
    EXPECT_EQ(first_error(udp_file("", "", "udp") + "routing: {reply_mark: 0x3}\n"),
              "t.yaml:10:23: routing.reply_mark: reply_mark 0x3 under mask 0x1 equals the "
              "intercept mark 0x1: UDP replies to clients would be routed back to this host");
}

// --- valid files: the plan and the rules ---

TEST(UdpConfig, DefaultsReachThePlan) {
    LoadedConfig c = load_ok(udp_file(""));
    const plan::Listener& l = c.plan.listeners[0];
    EXPECT_EQ(l.protocol, plan::Protocol::udp);
    EXPECT_EQ(l.udp.idle_ms, 60'000u);
    EXPECT_EQ(l.udp.dns_idle_ms, 10'000u);
    EXPECT_TRUE(l.udp.dns_close_after_answer);
    EXPECT_EQ(l.udp.quic_idle_ms, 30'000u);
    EXPECT_EQ(l.udp.max_datagram, 65'507u);
    EXPECT_EQ(c.plan.udp_reply_mark, 0xfcu);
    EXPECT_EQ(c.plan.bypass_mark, 0xfeu);
    // Without a protocol key a listener stays TCP: existing files keep their meaning.
    LoadedConfig t = load_ok("listeners:\n  - {name: web, port: 50080}\n");
    EXPECT_EQ(t.plan.listeners[0].protocol, plan::Protocol::tcp);
}

TEST(UdpConfig, ValuesReachThePlan) {
    LoadedConfig c = load_ok(
        udp_file("    udp:\n      idle: 2m\n      dns_idle: 3s\n      dns_close_after_answer: "
                 "false\n      quic_idle: 45s\n      max_flows_per_worker: 1000\n      "
                 "max_flows_per_client: 10\n      max_datagram: 1472\n",
                 "", "both") +
        "routing: {reply_mark: 0x40}\n");
    const plan::Listener& l = c.plan.listeners[0];
    EXPECT_EQ(l.protocol, plan::Protocol::both);
    EXPECT_EQ(l.udp.idle_ms, 120'000u);
    EXPECT_EQ(l.udp.dns_idle_ms, 3'000u);
    EXPECT_FALSE(l.udp.dns_close_after_answer);
    EXPECT_EQ(l.udp.quic_idle_ms, 45'000u);
    EXPECT_EQ(l.udp.max_flows_per_worker, 1'000u);
    EXPECT_EQ(l.udp.max_flows_per_client, 10u);
    EXPECT_EQ(l.udp.max_datagram, 1'472u);
    EXPECT_EQ(c.plan.udp_reply_mark, 0x40u);
}

TEST(UdpConfig, TcpAndUdpListenersShareAPort) {
    load_ok("listeners:\n  - {name: t, port: 50053}\n  - {name: u, port: 50053, protocol: udp}\n");
    EXPECT_EQ(first_error("listeners:\n  - {name: t, port: 50053}\n  - {name: u, port: 50053, "
                          "protocol: both}\n"),
              "t.yaml:3:21: listeners[1].port: port 50053 on :: clashes with listeners[0] (::)");
}

TEST(UdpConfig, UdpTproxyBothFamiliesAndTcpOnlyDivert) {
    std::string nft = load_ok(udp_file("", "    ports: [53, 443]\n")).kernel.nft_batch;
    EXPECT_TRUE(has_line(nft,
                         "iifname \"lan0\" meta nfproto ipv4 meta l4proto udp udp dport { 53, "
                         "443 } counter name \"rule-r\" tproxy ip to :50053 meta mark set "
                         "meta mark & 0xfffffffe | 0x1 accept"))
        << nft;
    EXPECT_TRUE(has_line(nft,
                         "iifname \"lan0\" meta nfproto ipv6 meta l4proto udp udp dport { 53, "
                         "443 } counter name \"rule-r\" tproxy ip6 to :50053 meta mark set "
                         "meta mark & 0xfffffffe | 0x1 accept"))
        << nft;
    // source: proxy: nothing is bound to a client's address, so no UDP divert at all.
    EXPECT_TRUE(has_line(nft,
                         "meta l4proto tcp socket transparent 1 meta mark set meta mark & "
                         "0xfffffffe | 0x1 accept"));
    EXPECT_EQ(nft.find("meta l4proto udp socket"), std::string::npos) << nft;
}

TEST(UdpConfig, ClientSourceDivertsUpstreamSocketsOnly) {
    std::string nft = load_ok(udp_file("    upstream: {source: client-port}\n")).kernel.nft_batch;
    EXPECT_TRUE(has_line(nft,
                         "meta l4proto udp socket transparent 1 socket mark 0xfe meta mark "
                         "set meta mark & 0xfffffffe | 0x1 accept"))
        << nft;
}

TEST(UdpConfig, BothProtocolsOneLine) {
    std::string nft = load_ok(udp_file("", "    ports: [80, 443]\n", "both")).kernel.nft_batch;
    EXPECT_TRUE(has_line(nft,
                         "iifname \"lan0\" meta nfproto ipv4 meta l4proto { tcp, udp } th "
                         "dport { 80, 443 } counter name \"rule-r\" tproxy ip to :50053 meta "
                         "mark set meta mark & 0xfffffffe | 0x1 accept"))
        << nft;
}

TEST(UdpConfig, RuleProtocolNarrowsABothListener) {
    std::string nft =
        load_ok(udp_file("", "    protocol: tcp\n    ports: [80]\n", "both")).kernel.nft_batch;
    EXPECT_TRUE(has_line(nft,
                         "iifname \"lan0\" meta nfproto ipv4 meta l4proto tcp tcp dport 80 "
                         "counter name \"rule-r\" tproxy ip to :50053 meta mark set meta mark "
                         "& 0xfffffffe | 0x1 accept"))
        << nft;
}

TEST(UdpConfig, BlockQuicDropsUdp443BeforeTheRule) {
    std::string yaml =
        "listeners:\n  - {name: web, port: 50080}\nrules:\n"
        "  - {name: web, interfaces: [lan0], ports: [80, 443], action: tproxy, listener: web, "
        "block_quic: true}\n";
    std::string nft = load_ok(yaml).kernel.nft_batch;
    std::string drop4 =
        "iifname \"lan0\" meta nfproto ipv4 meta l4proto udp udp dport 443 counter "
        "name \"quic-web\" drop";
    std::string rule4 =
        "iifname \"lan0\" meta nfproto ipv4 meta l4proto tcp tcp dport { 80, 443 "
        "} counter name \"rule-web\" tproxy";
    ASSERT_TRUE(has_line(nft, drop4)) << nft;
    EXPECT_TRUE(has_line(nft,
                         "iifname \"lan0\" meta nfproto ipv6 meta l4proto udp udp dport 443 "
                         "counter name \"quic-web\" drop"));
    EXPECT_LT(nft.find(drop4), nft.find(rule4)) << nft;
    EXPECT_NE(nft.find("\tcounter quic-web {\n\t}\n"), std::string::npos);
}

TEST(UdpConfig, BypassCoversWhatTheRuleSetIntercepts) {
    std::string yaml =
        "listeners:\n  - {name: u, port: 50053, protocol: both}\nrules:\n"
        "  - {name: lan, destinations: [192.0.2.0/24], action: bypass}\n"
        "  - {name: r, interfaces: [lan0], action: tproxy, listener: u}\n";
    std::string nft = load_ok(yaml).kernel.nft_batch;
    EXPECT_TRUE(has_line(nft,
                         "meta l4proto { tcp, udp } ip daddr @dst4-lan counter name "
                         "\"rule-lan\" return"))
        << nft;
    // A TCP-only rule set keeps its bypass TCP-only (the existing goldens hold the rest).
    std::string tcp = load_ok(
                          "listeners:\n  - {name: t, port: 50080}\nrules:\n"
                          "  - {name: lan, destinations: [192.0.2.0/24], action: bypass}\n"
                          "  - {name: r, interfaces: [lan0], action: tproxy, listener: t}\n")
                          .kernel.nft_batch;
    EXPECT_TRUE(has_line(tcp,
                         "meta l4proto tcp ip daddr @dst4-lan counter name \"rule-lan\" "
                         "return"))
        << tcp;
}

TEST(UdpConfig, FailClosedDropsUdpToo) {
    std::string nft =
        load_ok(udp_file("", "    ports: [53]\n") + "nftables: {fail: closed}\n").kernel.nft_batch;
    EXPECT_TRUE(has_line(nft,
                         "iifname \"lan0\" meta nfproto ipv4 meta l4proto udp udp dport 53 "
                         "counter name \"drop-r\" drop"))
        << nft;
}

TEST(UdpConfig, DnatOfUdp) {
    std::string nft = load_ok(
                          "rules:\n  - {name: d, interfaces: [lan0], protocol: udp, ports: "
                          "[53], action: dnat, to: \"192.0.2.53\"}\n")
                          .kernel.nft_batch;
    EXPECT_TRUE(has_line(nft,
                         "iifname \"lan0\" meta nfproto ipv4 meta l4proto udp udp dport 53 "
                         "counter name \"rule-d\" dnat ip to 192.0.2.53"))
        << nft;
}

}  // namespace
}  // namespace tp::config

// The pure parts of the UDP preflight and conntrack flush (issue 9), without root: the sysctl
// checks against a stand-in /proc/sys tree, and which conntrack tuples the rules intercept.

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "config/conntrack_flush.h"
#include "config/load.h"
#include "config/preflight_tproxy.h"

namespace tp::config {
namespace {

namespace fs = std::filesystem;

LoadedConfig load_ok(const std::string& yaml) {
    LoadResult r = load_config_text(yaml, "t.yaml");
    EXPECT_TRUE(std::holds_alternative<LoadedConfig>(r));
    return std::holds_alternative<LoadedConfig>(r) ? std::get<LoadedConfig>(r) : LoadedConfig{};
}

const char* kUdpGateway = R"(listeners:
  - {name: u, port: 50053, protocol: udp}
rules:
  - {name: keep, sources: [192.0.2.9/32], action: bypass}
  - {name: dns, interfaces: [lan0], ports: [53, 5000-5010], destinations: [198.51.100.0/24, "2001:db8:2::/64"], action: tproxy, listener: u}
)";

// A stand-in for /proc/sys/net/ipv4/conf with the given values.
class FakeProc {
  public:
    FakeProc() {
        root_ = fs::temp_directory_path() / ("tp-udp-proc-" + std::to_string(getpid()));
        fs::remove_all(root_);
        for (const char* i : {"all", "default", "lan0", "wan0", "lo"}) {
            set(i, "src_valid_mark", 0);
            set(i, "rp_filter", 0);
        }
    }
    ~FakeProc() { fs::remove_all(root_); }
    void set(const std::string& iface, const std::string& key, int v) {
        fs::path dir = root_ / "net/ipv4/conf" / iface;
        fs::create_directories(dir);
        std::ofstream(dir / key) << v << "\n";
    }
    std::string root() const { return root_.string(); }

  private:
    fs::path root_;
};

TEST(UdpPreflight, SrcValidMarkRefused) {
    LoadedConfig c = load_ok(kUdpGateway);
    FakeProc proc;
    PreflightReport r;
    check_tproxy_sysctls(c, r, proc.root());
    EXPECT_TRUE(r.ok());
    EXPECT_TRUE(r.warnings.empty());

    proc.set("lan0", "src_valid_mark", 1);
    r = {};
    check_tproxy_sysctls(c, r, proc.root());
    ASSERT_EQ(r.failures.size(), 1u);
    EXPECT_NE(r.failures[0].find("net.ipv4.conf.lan0.src_valid_mark is 1"), std::string::npos)
        << r.failures[0];
    // An interface no rule names does not matter.
    proc.set("lan0", "src_valid_mark", 0);
    proc.set("wan0", "src_valid_mark", 1);
    r = {};
    check_tproxy_sysctls(c, r, proc.root());
    EXPECT_TRUE(r.ok());
    proc.set("all", "src_valid_mark", 1);
    r = {};
    check_tproxy_sysctls(c, r, proc.root());
    ASSERT_EQ(r.failures.size(), 1u);
    EXPECT_NE(r.failures[0].find("net.ipv4.conf.all.src_valid_mark is 1"), std::string::npos);
}

TEST(UdpPreflight, StrictRpFilterWarned) {
    LoadedConfig c = load_ok(kUdpGateway);
    FakeProc proc;
    proc.set("all", "rp_filter", 1);
    PreflightReport r;
    check_tproxy_sysctls(c, r, proc.root());
    EXPECT_TRUE(r.ok());
    ASSERT_EQ(r.warnings.size(), 1u);
    EXPECT_NE(r.warnings[0].find("rp_filter is strict (1) for lan0"), std::string::npos);
    proc.set("all", "rp_filter", 2);  // loose: fine
    r = {};
    check_tproxy_sysctls(c, r, proc.root());
    EXPECT_TRUE(r.warnings.empty());
}

TEST(UdpPreflight, RuleWithoutInterfacesChecksEveryInterface) {
    LoadedConfig c = load_ok(
        "listeners:\n  - {name: u, port: 50053, protocol: udp}\nrules:\n  - {name: d, "
        "destinations: [198.51.100.0/24], action: tproxy, listener: u}\n");
    FakeProc proc;
    proc.set("wan0", "src_valid_mark", 1);
    PreflightReport r;
    check_tproxy_sysctls(c, r, proc.root());
    ASSERT_EQ(r.failures.size(), 1u);
    EXPECT_NE(r.failures[0].find("wan0"), std::string::npos);
}

IpAddr ip(const char* s) {
    return *parse_ip(s);
}

TEST(UdpConntrack, WhatTheRulesIntercept) {
    LoadedConfig c = load_ok(kUdpGateway);
    const KernelSetup& k = c.kernel;
    EXPECT_TRUE(udp_entry_intercepted(k, ip("192.0.2.2"), ip("198.51.100.2"), 53));
    EXPECT_TRUE(udp_entry_intercepted(k, ip("192.0.2.2"), ip("198.51.100.2"), 5005));
    EXPECT_TRUE(udp_entry_intercepted(k, ip("2001:db8:1::2"), ip("2001:db8:2::2"), 53));
    EXPECT_FALSE(udp_entry_intercepted(k, ip("192.0.2.2"), ip("198.51.100.2"), 54));
    EXPECT_FALSE(udp_entry_intercepted(k, ip("192.0.2.2"), ip("203.0.113.2"), 53));
    // The bypass rule comes first: its client's flows keep their entries.
    EXPECT_FALSE(udp_entry_intercepted(k, ip("192.0.2.9"), ip("198.51.100.2"), 53));
    // A TCP-only rule set flushes nothing.
    LoadedConfig t = load_ok(
        "listeners:\n  - {name: t, port: 50080}\nrules:\n  - {name: r, "
        "interfaces: [lan0], action: tproxy, listener: t}\n");
    EXPECT_TRUE(t.kernel.udp_catches.empty());
    EXPECT_FALSE(udp_entry_intercepted(t.kernel, ip("192.0.2.2"), ip("198.51.100.2"), 53));
}

}  // namespace
}  // namespace tp::config

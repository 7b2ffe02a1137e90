// Pure parts of the apply library: the undo journal's order and failure reporting, nft error
// explanation with numbered batch lines, sweep summaries and entry descriptions, the in-place
// reload batch, the preflight's reading of other tables in `nft list ruleset`.
#include <gtest/gtest.h>
#include <sys/socket.h>

#include <string>
#include <vector>

#include "config/apply_journal.h"
#include "config/cleanup.h"
#include "config/kernel_apply.h"
#include "config/nft_apply.h"
#include "config/preflight_env.h"
#include "config/route_apply.h"

namespace tp::config {
namespace {

TEST(UndoJournal, RollsBackNewestFirstAndReportsFailures) {
    std::vector<std::string> order;
    UndoJournal j;
    j.record("a", [&] {
        order.push_back("a");
        return std::string();
    });
    j.record("b", [&] {
        order.push_back("b");
        return std::string("kernel said no");
    });
    j.record("c", [&] {
        order.push_back("c");
        return std::string();
    });
    std::string failures = j.rollback();
    EXPECT_EQ(order, (std::vector<std::string>{"c", "b", "a"}));
    EXPECT_EQ(failures, "cannot undo `b`: kernel said no\n");
    EXPECT_EQ(j.size(), 0u);
    EXPECT_EQ(j.rollback(), "");
}

TEST(UndoJournal, CommitKeepsChangesAndDestructorUndoesTheRest) {
    int undone = 0;
    {
        UndoJournal j;
        j.record("kept", [&] {
            ++undone;
            return std::string();
        });
        j.commit();
        j.record("dropped", [&] {
            ++undone;
            return std::string();
        });
    }
    EXPECT_EQ(undone, 1);
}

TEST(ExplainNftError, NumbersTheBatchLinesNamed) {
    std::string batch = "table inet t {\n  chain c {\n    ip daddr 1.2.3.4/33 accept\n  }\n}\n";
    std::string err =
        "batch:3:14-23: Error: Prefix length 33 is invalid for type of 32 bits width\n"
        "    ip daddr 1.2.3.4/33 accept\n"
        "             ^^^^^^^^^^\n";
    std::string text = explain_nft_error(err, batch);
    EXPECT_NE(text.find("nft rejected the batch:\n  batch:3:14-23: Error: Prefix length 33"),
              std::string::npos)
        << text;
    EXPECT_NE(text.find("batch lines it refers to:\n     3 |     ip daddr 1.2.3.4/33 accept\n"),
              std::string::npos)
        << text;
}

TEST(ExplainNftError, WithoutLocationsKeepsTheMessage) {
    std::string text = explain_nft_error("Error: Could not process rule: No such file\n", "x\n");
    EXPECT_EQ(text, "nft rejected the batch:\n  Error: Could not process rule: No such file\n");
}

TEST(ExplainNftError, CapsRepeatedErrors) {
    std::string err;
    for (int i = 0; i < 9; ++i) {
        err += "batch:1:1-2: Error: Could not process rule: Operation not permitted\nx\n^\n";
    }
    std::string text = explain_nft_error(err, "x\n");
    EXPECT_NE(text.find("(3 more errors)"), std::string::npos) << text;
}

TEST(SweepResult, Summary) {
    SweepResult r;
    EXPECT_EQ(r.summary(), "nothing");
    r.tables = 1;
    r.rules = 2;
    r.routes = 1;
    EXPECT_EQ(r.summary(), "1 nft table, 2 ip rules, 1 route");
}

TEST(Describe, RulesAndRoutesReadLikeIpCommands) {
    EXPECT_EQ(describe(PolicyRule{AF_INET6, 0x1, 0xff, 300, 90}),
              "ip -6 rule fwmark 0x1/0xff lookup 300 priority 90");
    EXPECT_EQ(describe(LocalRoute{AF_INET, 100}), "ip -4 route local default dev lo table 100");
}

TEST(Ownership, RuleNeedsPriorityTableAndMark) {
    KernelSetup s;
    s.rules.push_back({AF_INET, 0x1, 0x1, 100, 100});
    RuleEntry r;
    r.family = AF_INET;
    r.priority = 100;
    r.table = 100;
    r.action = 1;  // FR_ACT_TO_TBL
    r.has_fwmark = true;
    r.fwmark = 0x1;
    r.fwmask = 0x1;
    EXPECT_TRUE(is_our_rule(r, s));
    RuleEntry other_table = r;
    other_table.table = 200;
    EXPECT_FALSE(is_our_rule(other_table, s));
    RuleEntry other_mark = r;
    other_mark.fwmark = 0x2;
    EXPECT_FALSE(is_our_rule(other_mark, s));
    RuleEntry no_mark = r;
    no_mark.has_fwmark = false;
    EXPECT_FALSE(is_our_rule(no_mark, s));
    RuleEntry v6 = r;
    v6.family = AF_INET6;
    EXPECT_FALSE(is_our_rule(v6, s));
}

TEST(Ownership, RouteMustBeLocalDefaultOnLoInOurTable) {
    KernelSetup s;
    s.routes.push_back({AF_INET, 100});
    RouteEntry r;
    r.family = AF_INET;
    r.table = 100;
    r.type = 2;  // RTN_LOCAL
    r.dst_len = 0;
    r.oif = 1;
    EXPECT_TRUE(is_our_route(r, s, 1));
    RouteEntry unreachable = r;
    unreachable.type = 7;
    EXPECT_FALSE(is_our_route(unreachable, s, 1));
    RouteEntry prefix = r;
    prefix.dst_len = 24;
    EXPECT_FALSE(is_our_route(prefix, s, 1));
    RouteEntry other_dev = r;
    other_dev.oif = 2;
    EXPECT_FALSE(is_our_route(other_dev, s, 1));
    RouteEntry other_table = r;
    other_table.table = 200;
    EXPECT_FALSE(is_our_route(other_table, s, 1));
}

const char* kOld =
    "add table inet t\ndelete table inet t\ntable inet t {\n"
    "\tcounter rule-a {\n\t}\n\tcounter rule-b {\n\t}\n"
    "\tset dst4-a {\n\t\ttype ipv4_addr\n\t\telements = {\n\t\t\t192.0.2.0/24\n\t\t}\n\t}\n"
    "\tset dst4-b {\n\t\ttype ipv4_addr\n\t\telements = {\n\t\t\t192.0.2.0/24\n\t\t}\n\t}\n"
    "\tchain pre {\n\t\ttype filter hook prerouting priority mangle + 1; policy accept;\n"
    "\t\tip daddr @dst4-a accept\n\t}\n"
    "\tchain out {\n\t\ttype route hook output priority mangle; policy accept;\n\t}\n}\n";
const char* kNextBody =
    "table inet t {\n\tcounter rule-a {\n\t}\n"
    "\tset dst4-a {\n\t\ttype ipv4_addr\n\t\telements = {\n\t\t\t198.51.100.0/24\n\t\t}\n\t}\n"
    "\tset dst6-c {\n\t\ttype ipv6_addr\n\t\telements = {\n\t\t\t2001:db8::/32\n\t\t}\n\t}\n"
    "\tchain pre {\n\t\ttype filter hook prerouting priority mangle + 1; policy accept;\n"
    "\t\tip daddr @dst4-a accept\n\t}\n}\n";

TEST(InplaceBatch, KeepsSharedChainsAndSetsAndDeletesTheRest) {
    std::string next = std::string("add table inet t\ndelete table inet t\n") + kNextBody;
    EXPECT_EQ(inplace_batch("t", kOld, next), std::string("flush table inet t\n"
                                                          "delete chain inet t out\n"
                                                          "delete counter inet t rule-b\n"
                                                          "flush set inet t dst4-a\n"
                                                          "delete set inet t dst4-b\n") +
                                                  kNextBody);
}

TEST(InplaceBatch, RefusesOtherFormsAndChangedHooks) {
    std::string next = std::string("add table inet t\ndelete table inet t\n") + kNextBody;
    EXPECT_EQ(inplace_batch("u", kOld, next), "");       // another table name
    EXPECT_EQ(inplace_batch("t", kNextBody, next), "");  // no add/delete prefix
    std::string moved = next;
    moved.replace(moved.find("mangle + 1"), 10, "mangle + 2");
    EXPECT_EQ(inplace_batch("t", kOld, moved), "");
}

// As `nft -t list ruleset` prints them: an fw4-like table (policy drop, state and rate-limit
// rules that do not concern a new intercepted connection), a firewalld-like reject reached
// through a jump, tpengine's own table, and iptables-nft's nat table.
const char kRuleset[] = R"(table inet fw4 {
	chain input {
		type filter hook input priority filter; policy drop;
		iifname "lo" accept comment "!fw4: Accept traffic from loopback"
		ct state vmap { invalid : drop, established : accept, related : accept }
		tcp flags syn / fin,syn,rst,ack jump syn_flood
	}
	chain syn_flood {
		limit rate 25/second burst 50 packets return
		drop
	}
}
table inet firewalld {
	set blocked {
		type ipv4_addr
		flags interval
	}
	chain filter_INPUT {
		type filter hook input priority filter + 10; policy accept;
		ct state established,related accept
		iifname "lo" accept
		jump filter_INPUT_ZONES
	}
	chain filter_INPUT_ZONES {
		iifname "eth0" goto filter_IN_public
		goto filter_IN_public
	}
	chain filter_IN_public {
		tcp dport 22 accept
		reject with icmpx admin-prohibited
	}
}
table inet tpengine {
	chain pre {
		type filter hook input priority 0; policy drop;
	}
}
table ip nat {
	chain POSTROUTING {
		type nat hook postrouting priority srcnat; policy accept;
		oifname "wan0" counter packets 0 bytes 0 masquerade
		ip saddr 10.9.0.0/16 snat to 203.0.113.9
	}
	chain PREROUTING {
		type nat hook prerouting priority dstnat; policy accept;
		tcp dport 80 dnat to 10.0.0.1
	}
}
table inet quiet {
	chain input {
		type filter hook input priority 0; policy accept;
		tcp dport 22 accept
	}
}
)";

TEST(PreflightFirewall, InputChainsThatMayDropInterceptedPackets) {
    auto w = input_drop_warnings(kRuleset, "tpengine", 0x1, 0x1);
    ASSERT_EQ(w.size(), 2u);
    EXPECT_EQ(w[0],
              "table inet fw4 chain input (hook input): its policy is drop. Intercepted packets "
              "cross the input hook with their original destination; let them through with "
              "`meta mark & 0x1 == 0x1 accept` before that (docs/config.md, \"Next to another "
              "firewall\")");
    EXPECT_NE(w[1].find("table inet firewalld chain filter_INPUT (hook input): its rule `jump "
                        "filter_INPUT_ZONES` -> chain filter_INPUT_ZONES: `iifname \"eth0\" goto "
                        "filter_IN_public` -> chain filter_IN_public: `reject with icmpx "
                        "admin-prohibited` may drop them."),
              std::string::npos)
        << w[1];
    // Another table of ours is not "the rest of the firewall"; another name is.
    EXPECT_EQ(input_drop_warnings(kRuleset, "other", 0x1, 0x1).size(), 3u);
}

TEST(PreflightFirewall, TheMarkAcceptRuleSilencesTheWarning) {
    std::string fixed = kRuleset;
    auto put = [&](const std::string& after, const std::string& rule) {
        size_t p = fixed.find(after);
        ASSERT_NE(p, std::string::npos);
        fixed.insert(fixed.find('\n', p) + 1, "\t\t" + rule + "\n");
    };
    put("type filter hook input priority filter; policy drop;",
        "meta mark & 0x00000001 == 0x00000001 accept");
    EXPECT_EQ(input_drop_warnings(fixed, "tpengine", 0x1, 0x1).size(), 1u);
    // A different mark or mask is not ours.
    EXPECT_EQ(input_drop_warnings(fixed, "tpengine", 0x2, 0x2).size(), 2u);
    put("type filter hook input priority filter + 10; policy accept;",
        "meta mark & 0x00000001 == 0x00000001 accept");
    EXPECT_TRUE(input_drop_warnings(fixed, "tpengine", 0x1, 0x1).empty());
}

TEST(PreflightFirewall, SourceNatRules) {
    auto rules = source_nat_rules(kRuleset, "tpengine");
    ASSERT_EQ(rules.size(), 2u);
    EXPECT_EQ(rules[0],
              "table ip nat chain POSTROUTING `oifname \"wan0\" counter packets 0 bytes 0 "
              "masquerade`");
    EXPECT_EQ(rules[1],
              "table ip nat chain POSTROUTING `ip saddr 10.9.0.0/16 snat to 203.0.113.9`");
    EXPECT_TRUE(source_nat_rules("table inet x {\n}\n", "tpengine").empty());
}

}  // namespace
}  // namespace tp::config

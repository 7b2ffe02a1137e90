// Parser and validation tests: every rejection class, with its exact message and position,
// plus the values a valid file turns into.

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "config/duration.h"
#include "config/load.h"

namespace tp::config {
namespace {

// A valid file; tests replace one piece of it.
const char* kListener = R"(listeners:
  - name: web
    port: 50080
)";

std::vector<std::string> errors(const std::string& yaml, const std::string& name = "t.yaml") {
    LoadResult r = load_config_text(yaml, name);
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

// One tproxy rule from lan0 with `rule_extra` appended to the rule's keys.
std::string with_rule(const std::string& rule_extra, const std::string& top = "") {
    return top + kListener +
           "rules:\n"
           "  - name: r\n"
           "    interfaces: [lan0]\n"
           "    action: tproxy\n"
           "    listener: web\n" +
           rule_extra;
}

// --- raw text and YAML syntax ---

TEST(ConfigRaw, SyntaxErrorHasPosition) {
    EXPECT_EQ(first_error("rules: [1\nworkers: 2\n"),
              "t.yaml:2:8: YAML syntax error: end of sequence flow not found");
}

TEST(ConfigRaw, TabRejected) {
    EXPECT_EQ(first_error("workers: 2\n\tport: 1\n"), "t.yaml:2:1: tab character; use spaces");
}

TEST(ConfigRaw, BomRejected) {
    EXPECT_EQ(first_error("\xef\xbb\xbfworkers: 2\n"),
              "t.yaml:1:1: byte order mark (BOM) at the start; save as plain UTF-8");
}

TEST(ConfigRaw, BadUtf8Rejected) {
    EXPECT_EQ(first_error("workers: 2\nab: \xc3\x28\n"), "t.yaml:2:5: invalid UTF-8");
    EXPECT_EQ(first_error("x: \xed\xa0\x80\n"), "t.yaml:1:4: invalid UTF-8");  // surrogate
}

TEST(ConfigRaw, ControlCharacterRejected) {
    EXPECT_EQ(first_error(std::string("workers: 2\nx: a\0b\n", 16)),
              "t.yaml:2:5: control character 0 is not allowed");
}

TEST(ConfigRaw, FileTooLarge) {
    std::string big(17u << 20, ' ');
    EXPECT_EQ(first_error(big), "t.yaml: file is larger than 16 MiB");
}

TEST(ConfigRaw, SecondDocumentRejected) {
    EXPECT_EQ(first_error("workers: 2\n---\nworkers: 3\n"),
              "t.yaml:2:1: only one YAML document is allowed (found a second `---`)");
}

TEST(ConfigRaw, TagsRejected) {
    EXPECT_EQ(first_error("workers: !!int 2\n"),
              "t.yaml:1:10: YAML tags (tag:yaml.org,2002:int) are not supported");
}

TEST(ConfigRaw, EmptyFile) {
    EXPECT_EQ(first_error(""), "t.yaml: the file is empty");
    EXPECT_EQ(first_error("# only a comment\n"), "t.yaml: the file is empty");
}

TEST(ConfigRaw, RootMustBeMap) {
    EXPECT_EQ(first_error("- a\n- b\n"), "t.yaml:1:1: expected a map of keys, got a list");
}

TEST(ConfigRaw, AliasBombIsRejectedQuickly) {
    // Nine levels of nine aliases: 387 million leaves if expanded. The expanded size is
    // counted while the tree is built, so nothing is ever walked.
    std::string y = "x0: &a0 [lol]\n";
    for (int i = 1; i < 9; ++i) {
        y.append("x").append(std::to_string(i)).append(": &a").append(std::to_string(i));
        y.append(" [");
        for (int j = 0; j < 9; ++j) {
            y.append(j ? ", *a" : "*a").append(std::to_string(i - 1));
        }
        y += "]\n";
    }
    y += "rules: *a8\n";
    auto e = errors(y);
    ASSERT_FALSE(e.empty());
    EXPECT_EQ(e.front(),
              "t.yaml:8:5: with its aliases expanded this part of the document has "
              "more than 4000000 nodes (an alias bomb?)");
    EXPECT_LE(e.size(), 51u);
}

TEST(ConfigRaw, AliasBombThroughRulesStopsAtTheLimit) {
    // Every rule is valid on its own; 3,000 copies of a rule with 3,000 sources would be
    // 9 million addresses. The expanded size is known before any of it is read.
    std::string y = std::string(kListener) + "x: &r {name: r, interfaces: [lan0], sources: [";
    for (int i = 0; i < 3000; ++i) {
        y += (i ? ", 10.0." : "10.0.") + std::to_string(i / 256) + "." + std::to_string(i % 256);
    }
    y += "], action: tproxy, listener: web}\nrules: [";
    for (int i = 0; i < 3000; ++i) {
        y += i ? ", *r" : "*r";
    }
    y += "]\n";
    EXPECT_EQ(first_error(y),
              "t.yaml:5:8: with its aliases expanded this part of the document "
              "has more than 4000000 nodes (an alias bomb?)");
}

TEST(ConfigRaw, DeepNestingRejected) {
    std::string y = "rules: " + std::string(100'000, '[');
    EXPECT_EQ(first_error(y), "t.yaml:1:1: YAML syntax error: nesting is too deep");
}

TEST(ConfigRaw, AliasesWork) {
    auto c = load_ok(std::string(kListener) +
                     "rules:\n"
                     "  - name: a\n"
                     "    interfaces: &lan [lan0, lan1]\n"
                     "    action: tproxy\n"
                     "    listener: web\n"
                     "  - name: b\n"
                     "    interfaces: *lan\n"
                     "    action: bypass\n");
    EXPECT_NE(c.kernel.nft_batch.find("iifname { \"lan0\", \"lan1\" } meta l4proto tcp counter "
                                      "name \"rule-b\" return"),
              std::string::npos);
}

TEST(ConfigRaw, CyclicAliasRejected) {
    EXPECT_EQ(first_error("workers: &a [*a]\n"),
              "t.yaml:1:14: an alias may not refer to a node that contains it");
}

// --- keys ---

TEST(ConfigKeys, UnknownKey) {
    EXPECT_EQ(first_error(std::string(kListener) + "rulez: []\n"),
              "t.yaml:4:1: rulez: unknown key \"rulez\" (allowed here: workers, routing, nftables, "
              "capture_local, allow_all, listeners, rules, drain_timeout, log_connections, "
              "memory_limit, user, group, upstreams, metrics, control, log)");
    EXPECT_EQ(first_error("routing:\n  marc: 1\n"),
              "t.yaml:2:3: routing.marc: unknown key \"marc\" (allowed here: mark, mask, table, "
              "priority, bypass_mark, reply_mark)");
}

TEST(ConfigKeys, MemoryLimit) {
    EXPECT_EQ(first_error(std::string(kListener) + "memory_limit: 64M\n"),
              "t.yaml:4:15: memory_limit: \"64M\" is not a size such as 64MiB or 1GiB (units KiB, "
              "MiB, GiB)");
    EXPECT_EQ(first_error(std::string(kListener) + "memory_limit: 1MiB\n"),
              "t.yaml:4:15: memory_limit: \"1MiB\" is out of range (4MiB-1024GiB)");
}

TEST(ConfigKeys, DuplicateKey) {
    EXPECT_EQ(first_error(std::string(kListener) + "workers: 2\nworkers: 3\n"),
              "t.yaml:5:1: workers: duplicate key \"workers\" (first given at line 4)");
    EXPECT_EQ(first_error("listeners:\n  - name: a\n    port: 1\n    port: 2\n"),
              "t.yaml:4:5: listeners[0].port: duplicate key \"port\" (first given at line 3)");
}

TEST(ConfigKeys, SeveralErrorsCollected) {
    auto e = errors(with_rule("    ports: [0, 80-70]\n", "workers: 0\n"));
    ASSERT_EQ(e.size(), 3u);
    EXPECT_EQ(e[0], "t.yaml:1:10: workers: 0 is out of range for a worker count or auto (1-1024)");
    EXPECT_EQ(e[1], "t.yaml:10:13: rules[0].ports[0]: 0 is out of range for a port (1-65535)");
    EXPECT_EQ(e[2],
              "t.yaml:10:16: rules[0].ports[1]: port range 80-70 has its low end above its high "
              "end");
}

TEST(ConfigKeys, NothingToDo) {
    EXPECT_EQ(first_error("workers: 2\n"), "t.yaml:1:1: nothing to do: no listeners and no rules");
}

// --- scalar types ---

TEST(ConfigTypes, NoIsNotAString) {
    EXPECT_EQ(first_error("listeners:\n  - name: no\n    port: 1\n"),
              "t.yaml:2:11: listeners[0].name: plain no reads as a boolean or null in YAML; quote "
              "it (\"no\") if you mean the text");
    EXPECT_EQ(first_error(std::string(kListener) + "nftables: {fail: no}\n"),
              "t.yaml:4:18: nftables.fail: plain no reads as a boolean or null in YAML; quote it "
              "(\"no\") if you mean the text");
}

TEST(ConfigTypes, YesIsNotABoolean) {
    EXPECT_EQ(first_error(std::string(kListener) + "capture_local: yes\n"),
              "t.yaml:4:16: capture_local: \"yes\" is not a boolean here; write true or false");
    EXPECT_EQ(first_error(std::string(kListener) + "allow_all: \"true\"\n"),
              "t.yaml:4:12: allow_all: expected true or false, not a quoted string");
}

TEST(ConfigTypes, QuotedNumberRejected) {
    EXPECT_EQ(first_error("listeners:\n  - name: a\n    port: \"80\"\n"),
              "t.yaml:3:11: listeners[0].port: expected a port, not a quoted string; write 80 "
              "without quotes");
}

TEST(ConfigTypes, OctalLookingNumberRejected) {
    EXPECT_EQ(first_error("listeners:\n  - name: a\n    port: 0755\n"),
              "t.yaml:3:11: listeners[0].port: \"0755\" has a leading zero (YAML 1.1 would read it "
              "as octal); write it without");
}

TEST(ConfigTypes, WrongShape) {
    EXPECT_EQ(first_error("listeners: {name: a}\n"),
              "t.yaml:1:12: listeners: expected a list of listeners, got a map");
    EXPECT_EQ(first_error("listeners:\n  - name: [a]\n    port: 1\n"),
              "t.yaml:2:11: listeners[0].name: expected a string, got a list");
    EXPECT_EQ(first_error(std::string(kListener) + "rules:\n  - just-a-string\n"),
              "t.yaml:5:5: rules[0]: expected a map of keys, got a single value");
}

TEST(ConfigTypes, EmptyValueReportedAtKey) {
    EXPECT_EQ(first_error("listeners:\n  - name: a\n    port:\n"),
              "t.yaml:3:5: listeners[0].port: expected a port, got nothing");
}

// --- ports ---

TEST(ConfigPorts, Rejections) {
    const std::string at = "t.yaml:9:13: rules[0].ports[0]: ";
    EXPECT_EQ(first_error(with_rule("    ports: [0]\n")),
              at + "0 is out of range for a port (1-65535)");
    EXPECT_EQ(first_error(with_rule("    ports: [65536]\n")),
              at + "65536 is out of range for a port (1-65535)");
    EXPECT_EQ(first_error(with_rule("    ports: [-1]\n")),
              at + "\"-1\" is not a decimal number (a port)");
    EXPECT_EQ(first_error(with_rule("    ports: [0x50]\n")),
              at + "\"0x50\" is not a decimal number (a port)");
    EXPECT_EQ(first_error(with_rule("    ports: [1e3]\n")),
              at + "\"1e3\" is not a decimal number (a port)");
    EXPECT_EQ(first_error(with_rule("    ports: [\"80\"]\n")),
              at + "expected a port, not a quoted string; write 80 without quotes");
    EXPECT_EQ(first_error(with_rule("    ports: [\"80-70\"]\n")),
              at + "port range 80-70 has its low end above its high end");
    EXPECT_EQ(first_error(with_rule("    ports: [80-0x60]\n")),
              at + "\"80-0x60\" is not a port range LOW-HIGH of decimal numbers");
    EXPECT_EQ(first_error(with_rule("    ports: [1-70000]\n")),
              at + "port range 1-70000 is outside 1-65535");
    EXPECT_EQ(first_error(with_rule("    ports: []\n")),
              "t.yaml:9:12: rules[0].ports: empty list; leave the key out to match any port");
}

TEST(ConfigPorts, MergedAndSorted) {
    auto c = load_ok(with_rule("    ports: [443, 80, \"8000-8100\", 8050, 81]\n"));
    EXPECT_NE(c.kernel.nft_batch.find("tcp dport { 80-81, 443, 8000-8100 }"), std::string::npos);
}

// --- interface names ---

TEST(ConfigInterfaces, AllowList) {
    const std::string at = "t.yaml:6:18: rules[0].interfaces[0]: interface name ";
    const std::string tail = "\" may use only A-Z a-z 0-9 _ . - and at most 15 characters";
    auto bad = [&](const std::string& quoted) {
        return first_error(std::string(kListener) + "rules:\n  - name: r\n    interfaces: [" +
                           quoted + "]\n    action: bypass\n");
    };
    EXPECT_EQ(bad("'lan0\"'"), at + "\"lan0\"" + tail);
    EXPECT_EQ(bad("\"a;b\""), at + "\"a;b" + tail);
    EXPECT_EQ(bad("\"x}\""), at + "\"x}" + tail);
    EXPECT_EQ(bad("\"eth*\""), at + "\"eth*" + tail);
    EXPECT_EQ(bad("abcdefghijklmnop"), at + "\"abcdefghijklmnop" + tail);  // 16 chars
    EXPECT_EQ(bad("\"l\xc3\xa4n\""), at + "\"l\xc3\xa4n" + tail);
    EXPECT_EQ(bad("\"a\\nb\""), at + "\"a\nb" + tail);
    EXPECT_EQ(bad("\"a#b\""), at + "\"a#b" + tail);
    EXPECT_EQ(bad("\"..\""), at + "\".." + tail);
    EXPECT_EQ(bad("abcdefghijklmno"), "(accepted)");  // 15 chars
}

// --- addresses ---

TEST(ConfigCidr, Rejections) {
    const std::string at = "t.yaml:9:20: rules[0].destinations[0]: ";
    auto bad = [&](const std::string& v) {
        return first_error(with_rule("    destinations: [\"" + v + "\"]\n"));
    };
    EXPECT_EQ(bad("10.0.0.0/33"), at + "prefix length /33 is out of range for IPv4 (0-32)");
    EXPECT_EQ(bad("10.0.0.1/8"),
              at + "10.0.0.1/8 has host bits set beyond /8; did you mean 10.0.0.0/8?");
    EXPECT_EQ(bad("2001:db8::1/32"),
              at + "2001:db8::1/32 has host bits set beyond /32; did you mean 2001:db8::/32?");
    EXPECT_EQ(bad("::/129"), at + "prefix length /129 is out of range for IPv6 (0-128)");
    EXPECT_EQ(bad("1.2.3"), at + "\"1.2.3\" is not an IPv4 or IPv6 address");
    EXPECT_EQ(bad("10.0.0.0/8,10.1.0.0/16"),
              at + "prefix length \"8,10.1.0.0/16\" is not a decimal number");
    EXPECT_EQ(bad("10.0.0.0/08"), at + "prefix length \"08\" is not a decimal number");
    EXPECT_EQ(bad("010.0.0.0/8"), at + "\"010.0.0.0\" is not an IPv4 or IPv6 address");
    EXPECT_EQ(bad("10.0.0.0/"), at + "prefix length \"\" is not a decimal number");
}

TEST(ConfigCidr, AddressFile) {
    char dir_template[] = "/tmp/tpcfg-XXXXXX";
    ASSERT_NE(mkdtemp(dir_template), nullptr);
    std::string dir = dir_template;
    std::ofstream(dir + "/lan.txt") << "# LAN\n192.0.2.0/24   # office\n\n  2001:db8::/48\n"
                                       "198.51.100.7\n192.0.2.128/25\n";
    std::ofstream(dir + "/bad.txt") << "192.0.2.0/24\n  10.0.0.1/8 # oops\n";
    std::string yaml = with_rule("    sources: \"@lan.txt\"\n");
    LoadResult r = load_config_text(yaml, dir + "/t.yaml");
    ASSERT_TRUE(std::holds_alternative<LoadedConfig>(r));
    const std::string& nft = std::get<LoadedConfig>(r).kernel.nft_batch;
    EXPECT_NE(nft.find("\t\t\t192.0.2.0/24,\n\t\t\t198.51.100.7/32\n"), std::string::npos) << nft;
    EXPECT_NE(nft.find("\t\t\t2001:db8::/48\n"), std::string::npos);

    auto e = errors(with_rule("    sources: [192.0.2.0/24, \"@bad.txt\"]\n"), dir + "/t.yaml");
    ASSERT_EQ(e.size(), 1u);
    EXPECT_EQ(e[0], dir +
                        "/bad.txt:2:3: rules[0].sources[1]: 10.0.0.1/8 has host bits set "
                        "beyond /8; did you mean 10.0.0.0/8?");
    e = errors(with_rule("    sources: \"@missing.txt\"\n"), dir + "/t.yaml");
    ASSERT_EQ(e.size(), 1u);
    EXPECT_EQ(e[0], dir + "/t.yaml:9:14: rules[0].sources: cannot read address list " + dir +
                        "/missing.txt: No such file or directory");
    std::filesystem::remove_all(dir);
}

// An address list must never widen to "any": an empty or comment-only file, or one that
// cannot be read to its end, is an error at the item that names it.
TEST(ConfigCidr, EmptyOrUnreadableAddressFileIsAnError) {
    char dir_template[] = "/tmp/tpcfg-XXXXXX";
    ASSERT_NE(mkdtemp(dir_template), nullptr);
    std::string dir = dir_template;
    std::ofstream(dir + "/empty.txt") << "";
    std::ofstream(dir + "/comments.txt") << "# nothing here yet\n\n   # still nothing\n";
    std::ofstream(dir + "/lan.txt") << "192.0.2.0/24\n";
    auto e = errors(with_rule("    sources: \"@empty.txt\"\n"), dir + "/t.yaml");
    ASSERT_EQ(e.size(), 1u);
    EXPECT_EQ(e[0], dir + "/t.yaml:9:14: rules[0].sources: address list " + dir +
                        "/empty.txt holds no address (empty or only comments); an empty list "
                        "would match every address, so it is refused");
    e = errors(with_rule("    destinations: [192.0.2.0/24, \"@comments.txt\"]\n"), dir + "/t.yaml");
    ASSERT_EQ(e.size(), 1u);
    EXPECT_EQ(e[0], dir + "/t.yaml:9:34: rules[0].destinations[1]: address list " + dir +
                        "/comments.txt holds no address (empty or only comments); an empty list "
                        "would match every address, so it is refused");
    // The same empty file named by two rules is reported for each.
    std::string two = std::string(kListener) +
                      "rules:\n"
                      "  - {name: a, interfaces: [lan0], sources: \"@empty.txt\", action: bypass}\n"
                      "  - {name: b, interfaces: [lan0], sources: \"@empty.txt\", action: bypass}\n"
                      "  - {name: c, interfaces: [lan0], sources: \"@lan.txt\", action: tproxy, "
                      "listener: web}\n";
    EXPECT_EQ(errors(two, dir + "/t.yaml").size(), 2u);
    // A read error after open (here EIO: /proc/self/mem at offset 0 is unmapped) is an error
    // naming the file and errno, never an empty list.
    e = errors(with_rule("    sources: \"@/proc/self/mem\"\n"), dir + "/t.yaml");
    ASSERT_EQ(e.size(), 1u);
    EXPECT_EQ(e[0], dir +
                        "/t.yaml:9:14: rules[0].sources: cannot read address list "
                        "/proc/self/mem: Input/output error");
    std::filesystem::remove_all(dir);
}

TEST(ConfigCidr, AddressBudget) {
    // One 100,000-line list reached through 21 aliased rules: 2.1 million addresses.
    char dir_template[] = "/tmp/tpcfg-XXXXXX";
    ASSERT_NE(mkdtemp(dir_template), nullptr);
    std::string dir = dir_template;
    {
        std::ofstream list(dir + "/big.txt");
        for (int i = 0; i < 100'000; ++i) {
            list << "10." << (i >> 16) << '.' << ((i >> 8) & 255) << '.' << (i & 255) << '\n';
        }
    }
    std::string y = std::string(kListener) +
                    "x: &r {name: r, interfaces: [lan0], sources: \"@big.txt\", action: bypass}\n"
                    "rules: [";
    for (int i = 0; i < 21; ++i) {
        y += i ? ", *r" : "*r";
    }
    y += "]\n";
    auto e = errors(y, dir + "/t.yaml");
    ASSERT_FALSE(e.empty());
    EXPECT_EQ(e[1], dir +
                        "/t.yaml:4:46: rules[20].sources: the rule set holds more than 2000000 "
                        "addresses in all (lists repeated through aliases count each time)");
    std::filesystem::remove_all(dir);
}

// --- marks, tables, priorities ---

TEST(ConfigRouting, Marks) {
    auto r = [](const std::string& routing) {
        return first_error("routing: {" + routing + "}\n" + kListener);
    };
    EXPECT_EQ(r("mark: 0"),
              "t.yaml:1:17: routing.mark: 0 is out of range for a mark (1-4294967295)");
    EXPECT_EQ(r("mark: 0x0"),
              "t.yaml:1:17: routing.mark: 0x0 is out of range for a mark (1-4294967295)");
    EXPECT_EQ(r("mark: 0x100000000"),
              "t.yaml:1:17: routing.mark: \"0x100000000\" is not a 32-bit hexadecimal number");
    EXPECT_EQ(r("mark: 0x3"), "t.yaml:1:17: routing.mark: mark 0x3 has bits outside mask 0x1");
    EXPECT_EQ(r("bypass_mark: 0xff"),
              "t.yaml:1:24: routing.bypass_mark: bypass_mark 0xff under mask 0x1 equals the "
              "intercept mark 0x1: tpengine's own upstream traffic would be routed back to it");
    EXPECT_EQ(r("mark: 0x10, mask: 0xf0, bypass_mark: 0x1f"),
              "t.yaml:1:48: routing.bypass_mark: bypass_mark 0x1f under mask 0xf0 equals the "
              "intercept mark 0x10: tpengine's own upstream traffic would be routed back to it");
    EXPECT_EQ(r("mark: 0x10, mask: 0xf0, bypass_mark: 0x20"), "(accepted)");
}

TEST(ConfigRouting, Tables) {
    auto r = [](const std::string& v) {
        return first_error("routing: {table: " + v + "}\n" + kListener);
    };
    EXPECT_EQ(r("0"),
              "t.yaml:1:18: routing.table: route table 0 is the kernel's unspecified "
              "table; pick one from 1-252");
    EXPECT_EQ(r("253"),
              "t.yaml:1:18: routing.table: route table 253 is the kernel's default "
              "table; pick one from 1-252");
    EXPECT_EQ(r("254"),
              "t.yaml:1:18: routing.table: route table 254 is the kernel's main "
              "table; pick one from 1-252");
    EXPECT_EQ(r("255"),
              "t.yaml:1:18: routing.table: route table 255 is the kernel's local "
              "table; pick one from 1-252");
    EXPECT_EQ(r("300"),
              "t.yaml:1:18: routing.table: 300 is out of range for a route table (1-252)");
    EXPECT_EQ(r("252"), "(accepted)");
}

TEST(ConfigRouting, Priorities) {
    auto r = [](const std::string& v) {
        return first_error("routing: {priority: " + v + "}\n" + kListener);
    };
    EXPECT_EQ(r("0"),
              "t.yaml:1:21: routing.priority: priority 0 collides with the kernel's rule "
              "for the local table; pick one from 1-32765");
    EXPECT_EQ(r("32766"),
              "t.yaml:1:21: routing.priority: priority 32766 collides with the "
              "kernel's rule for the main table; pick one from 1-32765");
    EXPECT_EQ(r("32767"),
              "t.yaml:1:21: routing.priority: priority 32767 collides with the "
              "kernel's rule for the default table; pick one from 1-32765");
    EXPECT_EQ(r("40000"),
              "t.yaml:1:21: routing.priority: 40000 is out of range for an ip rule priority "
              "(1-32765)");
}

TEST(ConfigNftables, TableName) {
    EXPECT_EQ(first_error(std::string(kListener) + "nftables: {table: \"x;y\"}\n"),
              "t.yaml:4:19: nftables.table: table name \"x;y\" must start with a letter and use "
              "only A-Z a-z 0-9 _ - (at most 32)");
    EXPECT_EQ(first_error(std::string(kListener) + "nftables: {fail: maybe}\n"),
              "t.yaml:4:18: nftables.fail: \"maybe\" is not one of: open | closed");
}

// --- listeners ---

TEST(ConfigListeners, NamesUnique) {
    EXPECT_EQ(first_error("listeners:\n  - {name: a, port: 1}\n  - {name: a, port: 2}\n"),
              "t.yaml:3:12: listeners[1].name: listener name \"a\" is already used by "
              "listeners[0]");
}

TEST(ConfigListeners, PortsUniquePerAddress) {
    EXPECT_EQ(first_error("listeners:\n  - {name: a, port: 1}\n"
                          "  - {name: b, address: 0.0.0.0, port: 1}\n"),
              "t.yaml:3:39: listeners[1].port: port 1 on 0.0.0.0 clashes with listeners[0] (::)");
    EXPECT_EQ(first_error("listeners:\n  - {name: a, address: 127.0.0.1, port: 1}\n"
                          "  - {name: b, address: 0.0.0.0, port: 1}\n"),
              "t.yaml:3:39: listeners[1].port: port 1 on 0.0.0.0 clashes with listeners[0] "
              "(127.0.0.1)");
    EXPECT_EQ(first_error("listeners:\n  - {name: a, port: 1, v6only: true}\n"
                          "  - {name: b, address: 0.0.0.0, port: 1}\n"),
              "(accepted)");
    EXPECT_EQ(first_error("listeners:\n  - {name: a, address: 127.0.0.1, port: 1}\n"
                          "  - {name: b, address: 127.0.0.2, port: 1}\n"),
              "(accepted)");
}

TEST(ConfigListeners, Fields) {
    EXPECT_EQ(first_error("listeners:\n  - {name: a}\n"),
              "t.yaml:2:5: listeners[0]: a listener needs a port");
    EXPECT_EQ(first_error("listeners:\n  - {name: a, port: 1, address: 1.2.3}\n"),
              "t.yaml:2:33: listeners[0].address: \"1.2.3\" is not an IPv4 or IPv6 address (use "
              "\"::\" for any)");
    EXPECT_EQ(first_error("listeners:\n  - {name: a, port: 1, address: 0.0.0.0, v6only: true}\n"),
              "t.yaml:2:50: listeners[0].v6only: v6only applies to an IPv6 address only");
    EXPECT_EQ(first_error("listeners:\n  - {name: \"a b\", port: 1}\n"),
              "t.yaml:2:12: listeners[0].name: name \"a b\" may use only A-Z a-z 0-9 _ . - and at "
              "most 64 characters");
    EXPECT_EQ(first_error("listeners:\n  - {name: a, port: 1, upstream: {source: me}}\n"),
              "t.yaml:2:43: listeners[0].upstream.source: \"me\" is not one of: proxy | client | "
              "client-port");
}

TEST(ConfigListeners, Upstream) {
    auto to = [](const std::string& v) {
        return first_error("listeners:\n  - {name: a, port: 1, upstream: {to: \"" + v + "\"}}\n");
    };
    const std::string at = "t.yaml:2:39: listeners[0].upstream.to: ";
    EXPECT_EQ(to("192.0.2.1"), at + "\"192.0.2.1\" needs a port: HOST:PORT or [IPV6]:PORT");
    EXPECT_EQ(to("2001:db8::1:80"), at + "write an IPv6 address in brackets: [2001:db8::1]:80");
    EXPECT_EQ(to("[192.0.2.1]:80"),
              at + "brackets are for IPv6 addresses only: \"[192.0.2.1]:80\"");
    EXPECT_EQ(to("192.0.2.1:99999"),
              at + "port \"99999\" in \"192.0.2.1:99999\" is not a number from 1-65535");
    EXPECT_EQ(to("bad_host!:80"), at + "\"bad_host!\" is not an IPv4 or IPv6 address");
    EXPECT_EQ(to("[2001:db8::1]:8080"), "(accepted)");
}

TEST(ConfigListeners, Timeouts) {
    auto t = [](const std::string& v) {
        return first_error("listeners:\n  - {name: a, port: 1, timeouts: {idle: " + v + "}}\n");
    };
    const std::string at = "t.yaml:2:41: listeners[0].timeouts.idle: ";
    EXPECT_EQ(t("0s"), at + "duration must be more than 0; write none for no timeout");
    EXPECT_EQ(t("25h"), at + "duration 25h is longer than 24h");
    EXPECT_EQ(t("5"), at + "\"5\" is not a duration: write a whole number with a unit, e.g. "
                           "500ms, 5s, 5m, 1h, or none for no timeout");
    EXPECT_EQ(t("-1s"), at + "\"-1s\" is not a duration: write a whole number with a unit, e.g. "
                             "500ms, 5s, 5m, 1h, or none for no timeout");
    EXPECT_EQ(t("1.5s"), at + "\"1.5s\" is not a duration: write a whole number with a unit, "
                              "e.g. 500ms, 5s, 5m, 1h, or none for no timeout");
    EXPECT_EQ(t("24h"), "(accepted)");
    EXPECT_EQ(t("nan"), at + "\"nan\" is not a duration: write a whole number with a unit, "
                             "e.g. 500ms, 5s, 5m, 1h, or none for no timeout");
    // `none` (or 0) switches a timeout off; drain_timeout cannot be off.
    LoadedConfig c = load_ok(
        "listeners:\n  - {name: a, port: 1, timeouts: {idle: none, "
        "connect: 0, half_closed: 1s}}\n");
    ASSERT_EQ(c.plan.listeners.size(), 1u);
    EXPECT_EQ(c.plan.listeners[0].timeouts.idle_ms, 0u);
    EXPECT_EQ(c.plan.listeners[0].timeouts.connect_ms, 0u);
    EXPECT_EQ(c.plan.listeners[0].timeouts.half_closed_ms, 1000u);
    EXPECT_EQ(first_error(std::string(kListener) + "drain_timeout: none\n"),
              "t.yaml:4:16: drain_timeout: \"none\" is not a duration: write a whole number "
              "with a unit, e.g. 500ms, 5s, 5m, 1h");
}

// One grammar for the YAML and every command line (tpengine relay --idle-timeout ...).
TEST(ConfigDuration, OneGrammar) {
    auto ok = [](const char* v, bool none_ok = true) -> long {
        std::string why;
        auto ms = parse_duration(v, none_ok, &why);
        return ms ? static_cast<long>(*ms) : -1;
    };
    EXPECT_EQ(ok("500ms"), 500);
    EXPECT_EQ(ok("5s"), 5000);
    EXPECT_EQ(ok("2m"), 120000);
    EXPECT_EQ(ok("24h"), 86400000);
    EXPECT_EQ(ok("86400001ms"), -1);
    EXPECT_EQ(ok("none"), 0);
    EXPECT_EQ(ok("0"), 0);
    EXPECT_EQ(ok("none", false), -1);
    EXPECT_EQ(ok("0", false), -1);
    for (const char* bad :
         {"nan", "NaN", "inf", "-inf", "1e3s", "0x10s", "1.5s", "5",   "-1s",          "+5s",
          " 5s", "5s ", "5 s", "5S",   "s",    "",      "0s",   "0ms", "9999999999ms", "1d"}) {
        EXPECT_EQ(ok(bad), -1) << bad;
    }
    std::string why;
    EXPECT_FALSE(parse_duration("0s", true, &why));
    EXPECT_EQ(why, "duration must be more than 0; write none for no timeout");
}

// --- rules ---

TEST(ConfigRules, ListenerReferences) {
    EXPECT_EQ(first_error(std::string(kListener) +
                          "rules:\n  - {name: r, interfaces: [lan0], action: tproxy, listener: "
                          "webb}\n"),
              "t.yaml:5:61: rules[0].listener: no listener is named \"webb\"");
    EXPECT_EQ(first_error(std::string(kListener) +
                          "rules:\n  - {name: r, interfaces: [lan0], action: tproxy}\n"),
              "t.yaml:5:5: rules[0]: action tproxy needs a listener");
    EXPECT_EQ(first_error(std::string(kListener) +
                          "rules:\n  - {name: r, interfaces: [lan0], action: redirect}\n"),
              "t.yaml:5:5: rules[0]: action redirect needs a listener");
    EXPECT_EQ(first_error(std::string(kListener) +
                          "rules:\n  - {name: r, interfaces: [lan0], action: dnat}\n"),
              "t.yaml:5:5: rules[0]: action dnat needs to: HOST:PORT");
    EXPECT_EQ(first_error(std::string(kListener) +
                          "rules:\n  - {name: r, interfaces: [lan0], action: bypass, listener: "
                          "web}\n"),
              "t.yaml:5:61: rules[0].listener: listener is only for tproxy and redirect rules");
    EXPECT_EQ(first_error(std::string(kListener) +
                          "rules:\n  - {name: r, interfaces: [lan0], action: tproxy, listener: "
                          "web, to: \"192.0.2.1:80\"}\n"),
              "t.yaml:5:70: rules[0].to: to is only for dnat rules");
    EXPECT_EQ(first_error(std::string(kListener) + "rules:\n  - {interfaces: [lan0], action: "
                                                   "bypass}\n"),
              "t.yaml:5:5: rules[0]: a rule needs a name (it names the rule's counter)");
    EXPECT_EQ(first_error(std::string(kListener) + "rules:\n  - {name: r, interfaces: [lan0]}\n"),
              "t.yaml:5:5: rules[0]: a rule needs an action: tproxy | redirect | dnat | bypass");
    EXPECT_EQ(first_error(with_rule("    protocol: udp\n")),
              "t.yaml:9:15: rules[0].protocol: the rule catches UDP but listener \"web\" serves "
              "tcp only; set protocol: udp or both on the listener");
}

TEST(ConfigRules, ListenerKindsMatchAction) {
    EXPECT_EQ(first_error("listeners:\n  - {name: web, port: 1, transparent: false}\n"
                          "rules:\n  - {name: r, interfaces: [lan0], action: tproxy, listener: "
                          "web}\n"),
              "t.yaml:4:61: rules[0].listener: tproxy needs a transparent listener, but \"web\" "
              "has transparent: false");
    EXPECT_EQ(first_error("listeners:\n  - {name: web, port: 1, address: 127.0.0.1}\n"
                          "rules:\n  - {name: r, interfaces: [lan0], action: redirect, listener: "
                          "web}\n"),
              "t.yaml:4:63: rules[0].listener: redirect sends connections to the incoming "
              "interface's address, so listener \"web\" must bind \"::\" or \"0.0.0.0\"");
}

TEST(ConfigRules, NamesUnique) {
    EXPECT_EQ(first_error(std::string(kListener) +
                          "rules:\n  - {name: r, interfaces: [a], action: bypass}\n"
                          "  - {name: r, interfaces: [b], action: bypass}\n"),
              "t.yaml:6:12: rules[1].name: rule name \"r\" is already used by rules[0]");
}

TEST(ConfigRules, Families) {
    EXPECT_EQ(first_error(with_rule("    sources: [192.0.2.0/24]\n"
                                    "    destinations: [\"2001:db8::/32\"]\n")),
              "t.yaml:5:5: rules[0]: sources and destinations share no address family: the rule "
              "can never match");
    EXPECT_EQ(first_error("listeners:\n  - {name: web, port: 1, address: 0.0.0.0}\n"
                          "rules:\n  - {name: r, destinations: [\"2001:db8::/32\"], action: "
                          "tproxy, listener: web}\n"),
              "t.yaml:4:5: rules[0]: the rule matches IPv6 addresses but listener \"web\" is IPv4 "
              "only");
    EXPECT_EQ(first_error("rules:\n  - {name: r, destinations: [\"2001:db8::/32\"], action: dnat, "
                          "to: \"192.0.2.1:80\"}\n"),
              "t.yaml:2:5: rules[0]: the rule matches IPv6 addresses but to is IPv4 only");
}

TEST(ConfigRules, InterceptingEverythingNeedsAllowAll) {
    const std::string msg =
        "this rule intercepts traffic to every destination from every interface; restrict it "
        "with interfaces, sources or destinations, or set allow_all: true at the top level";
    EXPECT_EQ(first_error(std::string(kListener) +
                          "rules:\n  - {name: r, action: tproxy, listener: web}\n"),
              "t.yaml:5:5: rules[0]: " + msg);
    EXPECT_EQ(first_error(std::string(kListener) +
                          "rules:\n  - {name: r, destinations: [0.0.0.0/0], action: tproxy, "
                          "listener: web}\n"),
              "t.yaml:5:29: rules[0]: " + msg);
    EXPECT_EQ(first_error(std::string(kListener) +
                          "rules:\n  - {name: r, destinations: [\"::/0\"], action: redirect, "
                          "listener: web}\n"),
              "t.yaml:5:29: rules[0]: " + msg);
    EXPECT_EQ(first_error(std::string(kListener) +
                          "allow_all: true\nrules:\n  - {name: r, action: tproxy, listener: "
                          "web}\n"),
              "(accepted)");
    // A bypass rule intercepts nothing; a source range restricts.
    EXPECT_EQ(first_error(std::string(kListener) + "rules:\n  - {name: r, action: bypass}\n"),
              "(accepted)");
    EXPECT_EQ(first_error(std::string(kListener) +
                          "rules:\n  - {name: r, sources: [192.0.2.0/24], destinations: "
                          "[0.0.0.0/0], action: tproxy, listener: web}\n"),
              "(accepted)");
}

// --- what a valid file turns into ---

TEST(ConfigValid, IssueExample) {
    auto c = load_ok(R"(workers: auto
routing:
  mark: 0x1
  mask: 0x1
  table: 100
  priority: 100
  bypass_mark: 0xfe
nftables:
  table: tpengine
  fail: open
capture_local: false
listeners:
  - name: web
    address: "::"
    port: 50080
    transparent: true
    upstream:
      to: original
      source: proxy
    timeouts: {connect: 5s, idle: 5m, half_closed: 30s}
    max_connections: 65536
rules:
  - name: lan-web
    interfaces: [lan0]
    protocol: tcp
    sources: [192.0.2.0/24]
    destinations: [198.51.100.0/24, "2001:db8:2::/64"]
    ports: [80, 443, "8000-8100"]
    action: tproxy
    listener: web
  - name: no-private
    destinations: [10.0.0.0/8]
    action: bypass
)");
    EXPECT_EQ(c.plan.workers, 0u);
    EXPECT_EQ(c.plan.bypass_mark, 0xfeu);
    ASSERT_EQ(c.plan.listeners.size(), 1u);
    const plan::Listener& l = c.plan.listeners[0];
    EXPECT_EQ(l.name, "web");
    EXPECT_EQ(l.address.family(), AF_INET6);
    EXPECT_EQ(ntohs(reinterpret_cast<const sockaddr_in6*>(l.address.get())->sin6_port), 50080);
    EXPECT_TRUE(l.transparent);
    EXPECT_EQ(l.target, plan::UpstreamTarget::original);
    EXPECT_EQ(l.source, plan::SourceMode::proxy);
    EXPECT_EQ(l.orig_dst, plan::OrigDst::local_address);
    EXPECT_EQ(l.timeouts.connect_ms, 5000u);
    EXPECT_EQ(l.timeouts.idle_ms, 300000u);
    EXPECT_EQ(l.timeouts.half_closed_ms, 30000u);
    EXPECT_EQ(l.max_connections, 65536u);
    EXPECT_TRUE(c.uses_tproxy);
    EXPECT_TRUE(c.intercepts_forwarded);
    EXPECT_FALSE(c.capture_local);
    EXPECT_EQ(c.kernel.nft_table, "tpengine");
    EXPECT_EQ(routes_text(c.kernel),
              "ip -4 route add local 0.0.0.0/0 dev lo table 100\n"
              "ip -4 rule add fwmark 0x1/0x1 lookup 100 priority 100\n");
}

TEST(ConfigValid, Defaults) {
    auto c = load_ok(kListener);
    EXPECT_EQ(c.plan.bypass_mark, 0xfeu);
    EXPECT_EQ(c.plan.drain_timeout_ms, 10000u);
    EXPECT_FALSE(c.plan.log_connections);
    EXPECT_EQ(c.plan.memory_limit, 0u);
    const plan::Listener& l = c.plan.listeners[0];
    EXPECT_TRUE(l.transparent);
    EXPECT_FALSE(l.v6only);
    EXPECT_EQ(l.backlog, 4096);
    EXPECT_EQ(l.orig_dst, plan::OrigDst::automatic);
    EXPECT_FALSE(c.uses_tproxy);
    EXPECT_TRUE(c.kernel.rules.empty());
    EXPECT_EQ(c.kernel.nft_batch,
              "add table inet tpengine\ndelete table inet tpengine\ntable inet tpengine {\n}\n");
}

TEST(ConfigValid, ListenerOptions) {
    auto c = load_ok(R"(workers: 4
drain_timeout: 500ms
log_connections: true
memory_limit: 48MiB
listeners:
  - name: fwd
    address: 127.0.0.1
    port: 8080
    transparent: false
    fast_open: true
    backlog: 128
    upstream: {to: "[2001:db8::5]:443", source: client-port}
    timeouts: {connect: 1h}
    max_connections: 0
  - name: named
    port: 8081
    upstream: {to: "localhost:80"}
rules:
  - {name: r, interfaces: [lan0], action: redirect, listener: named}
)");
    EXPECT_EQ(c.plan.workers, 4u);
    EXPECT_EQ(c.plan.drain_timeout_ms, 500u);
    EXPECT_TRUE(c.plan.log_connections);
    EXPECT_EQ(c.plan.memory_limit, 48ull << 20);
    const plan::Listener& l = c.plan.listeners[0];
    EXPECT_EQ(l.address.family(), AF_INET);
    EXPECT_FALSE(l.transparent);
    EXPECT_TRUE(l.fast_open);
    EXPECT_EQ(l.backlog, 128);
    EXPECT_EQ(l.target, plan::UpstreamTarget::fixed);
    EXPECT_EQ(l.upstream_address.family(), AF_INET6);
    EXPECT_EQ(l.source, plan::SourceMode::client_port);
    EXPECT_EQ(l.timeouts.connect_ms, 3600000u);
    EXPECT_EQ(l.max_connections, 0u);
    EXPECT_EQ(c.plan.listeners[1].target, plan::UpstreamTarget::fixed);
    EXPECT_NE(c.plan.listeners[1].upstream_address.len, 0u);  // resolved from /etc/hosts
    EXPECT_EQ(c.plan.listeners[1].orig_dst, plan::OrigDst::conntrack);
    EXPECT_FALSE(c.uses_tproxy);
    EXPECT_TRUE(c.intercepts_forwarded);
}

// Close records name a listener's rule only when exactly one TCP rule sends connections to it.
TEST(ConfigValid, ListenerRuleOnlyWhenOneTcpRuleFeedsIt) {
    auto c = load_ok(R"(listeners:
  - {name: one, port: 8081, upstream: {to: original}}
  - {name: two, port: 8082, upstream: {to: original}}
  - {name: none, port: 8083, upstream: {to: original}}
rules:
  - {name: web, interfaces: [lan0], ports: [80], action: redirect, listener: one}
  - {name: a, interfaces: [lan0], ports: [443], action: redirect, listener: two}
  - {name: b, interfaces: [lan1], ports: [443], action: redirect, listener: two}
)");
    ASSERT_EQ(c.plan.listeners.size(), 3u);
    EXPECT_EQ(c.plan.listeners[0].rule, "web");
    EXPECT_EQ(c.plan.listeners[1].rule, "");  // two rules: which one matched is not known
    EXPECT_EQ(c.plan.listeners[2].rule, "");
}

TEST(ConfigValid, LoopbackOnlyRulesDoNotInterceptForwarded) {
    auto c = load_ok(with_rule("", "").replace(with_rule("", "").find("[lan0]"), 6, "[lo]"));
    EXPECT_TRUE(c.uses_tproxy);
    EXPECT_FALSE(c.intercepts_forwarded);
}

TEST(ConfigValid, DiagnosticFormat) {
    Diagnostic d{"f.yaml", 0, 0, "", "cannot read"};
    EXPECT_EQ(d.format(), "f.yaml: cannot read");
    d = {"f.yaml", 3, 7, "rules[0]", "why"};
    EXPECT_EQ(d.format(), "f.yaml:3:7: rules[0]: why");
}

TEST(ConfigValid, LoadFileErrors) {
    LoadResult r = load_config_file("/nonexistent/tp.yaml");
    ASSERT_TRUE(std::holds_alternative<std::vector<Diagnostic>>(r));
    EXPECT_EQ(std::get<std::vector<Diagnostic>>(r)[0].format(),
              "/nonexistent/tp.yaml: cannot read: No such file or directory");
    // A read error after open is reported, never taken for a shorter file.
    r = load_config_file("/proc/self/mem");
    ASSERT_TRUE(std::holds_alternative<std::vector<Diagnostic>>(r));
    EXPECT_EQ(std::get<std::vector<Diagnostic>>(r)[0].format(),
              "/proc/self/mem: cannot read: Input/output error");
}

TEST(ConfigExamples, AllValidate) {
    int n = 0;
    for (const auto& e : std::filesystem::directory_iterator(TP_EXAMPLES_DIR)) {
        if (e.path().extension() != ".yaml") {
            continue;
        }
        ++n;
        LoadResult r = load_config_file(e.path().string());
        if (auto* d = std::get_if<std::vector<Diagnostic>>(&r)) {
            ADD_FAILURE() << (*d)[0].format();
        }
    }
    EXPECT_GE(n, 4);
}

// --- user / group (privileges.cc resolves them at start) ---

TEST(ConfigAccount, UserAndGroupReachTheLoadedConfig) {
    LoadedConfig c = load_ok(std::string(kListener) + "user: nobody\ngroup: nogroup\n");
    EXPECT_EQ(c.user, "nobody");
    EXPECT_EQ(c.group, "nogroup");
    LoadedConfig none = load_ok(kListener);
    EXPECT_EQ(none.user, "");
    EXPECT_EQ(none.group, "");
}

TEST(ConfigAccount, BadNamesRejectedWithPosition) {
    EXPECT_EQ(first_error(std::string(kListener) + "user: \"a b\"\n"),
              "t.yaml:4:7: user: \"a b\" is not a user or group name (A-Z a-z 0-9 _ - ., at most "
              "32) or id");
    EXPECT_EQ(first_error(std::string(kListener) + "group: \"-x\"\n"),
              "t.yaml:4:8: group: \"-x\" is not a user or group name (A-Z a-z 0-9 _ - ., at most "
              "32) or id");
    EXPECT_NE(first_error(std::string(kListener) + "user: [root]\n"), "(accepted)");
}

}  // namespace
}  // namespace tp::config

// The generator's batch split around big sets and compacted for a running process
// (config/nft_bigsets.h), on a batch generated from a 5,000-entry @file list.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "config/load.h"
#include "config/nft_bigsets.h"

namespace tp::config {
namespace {

namespace fs = std::filesystem;

// 5,000 IPv4 hosts (every other address from 100.64.0.0) and 10 IPv6 /64s: one big set, one
// small one, plus the `lan` rule's chain lines.
std::string big_batch(int skip = -1, const char* extra = "") {
    char dir_template[] = "/tmp/tpcfg-bigsets-XXXXXX";
    EXPECT_NE(mkdtemp(dir_template), nullptr);
    fs::path dir = dir_template;
    {
        std::ofstream list(dir / "l.txt");
        uint32_t base = (100u << 24) | (64u << 16);
        for (int i = 0; i < 5000; ++i) {
            if (i == skip) {
                continue;
            }
            uint32_t a = base + 2 * static_cast<uint32_t>(i);
            list << (a >> 24) << '.' << ((a >> 16) & 255) << '.' << ((a >> 8) & 255) << '.'
                 << (a & 255) << '\n';
        }
        for (int i = 0; i < 10; ++i) {
            list << "2001:db8:" << i << "::/64\n";
        }
        list << extra;
    }
    std::string yaml = R"(listeners:
  - name: web
    port: 50080
rules:
  - name: big
    destinations: "@l.txt"
    action: bypass
  - name: lan
    interfaces: [lan0]
    action: tproxy
    listener: web
)";
    LoadResult r = load_config_text(yaml, (dir / "c.yaml").string());
    fs::remove_all(dir);
    if (auto* d = std::get_if<std::vector<Diagnostic>>(&r)) {
        ADD_FAILURE() << (*d)[0].format();
        return {};
    }
    return std::get<LoadedConfig>(r).kernel.nft_batch;
}

size_t count(const std::string& s, const std::string& what) {
    size_t n = 0;
    for (size_t p = 0; (p = s.find(what, p)) != std::string::npos; p += what.size()) {
        ++n;
    }
    return n;
}

TEST(NftBigSets, SplitsOnlyTheBigSetAndKeepsEverythingElse) {
    std::string batch = big_batch();
    auto split = split_big_sets(batch);
    ASSERT_TRUE(split.has_value());
    EXPECT_EQ(split->table, "tpengine");
    ASSERT_EQ(split->sets.size(), 1u);  // the IPv6 list has 10 entries: stays inline
    const BigSet& s = split->sets[0];
    EXPECT_EQ(s.name, "dst4-big");
    EXPECT_EQ(s.family, AF_INET);
    EXPECT_EQ(s.elements, 5000u);
    // 5,000 single addresses and nothing else: a hash set of that size, not an interval set.
    EXPECT_FALSE(s.interval);
    EXPECT_EQ(count(batch, "\tset dst4-big {\n\t\ttype ipv4_addr\n\t\tsize 5000\n\t\telements"),
              1u);

    // The elements, last first, are exactly the list.
    std::vector<std::string> seen;
    for_each_element_descending(batch, s, [&](std::string_view e) { seen.emplace_back(e); });
    ASSERT_EQ(seen.size(), 5000u);
    EXPECT_EQ(seen.front(), "100.64.39.14");  // 100.64.0.0 + 2 * 4999
    EXPECT_EQ(seen.back(), "100.64.0.0");

    // Skeleton: the batch without those 5000 lines and their "elements = {" block.
    EXPECT_EQ(count(split->skeleton, "\t\t\t100.64."), 0u);
    EXPECT_EQ(count(split->skeleton, "2001:db8:"), 10u);
    EXPECT_EQ(split->skeleton.size() + (s.end - s.begin) + 15 + 4,
              batch.size());  // + the block lines
    EXPECT_EQ(count(split->skeleton, "\tchain "), count(batch, "\tchain "));

    // Stage 1 replaces the table and holds the sets but no chain; stage 3 only the chains.
    EXPECT_EQ(split->sets_stage.rfind("add table inet tpengine\ndelete table inet tpengine\n", 0),
              0u);
    EXPECT_EQ(count(split->sets_stage, "\tchain "), 0u);
    EXPECT_EQ(count(split->sets_stage, "\tset dst4-big {"), 1u);
    EXPECT_EQ(count(split->sets_stage, "\tset dst6-big {"), 1u);
    EXPECT_EQ(split->rules_stage.rfind("table inet tpengine {\n\tchain ", 0), 0u);
    EXPECT_EQ(count(split->rules_stage, "\tchain "), count(batch, "\tchain "));
    EXPECT_EQ(count(split->rules_stage, "delete"), 0u);
    EXPECT_EQ(count(split->rules_stage, "\tset "), 0u);
}

TEST(NftBigSets, ABigListWithAPrefixStaysAnIntervalSet) {
    std::string batch = big_batch(-1, "198.51.100.0/24\n");
    auto split = split_big_sets(batch);
    ASSERT_TRUE(split.has_value());
    ASSERT_EQ(split->sets.size(), 1u);
    EXPECT_TRUE(split->sets[0].interval);
    EXPECT_EQ(count(batch, "\tset dst4-big {\n\t\ttype ipv4_addr\n\t\tflags interval\n"), 1u);
    EXPECT_EQ(count(batch, "\t\t\t100.64.0.0/32,\n"), 1u);
    EXPECT_EQ(count(batch, "\t\t\t198.51.100.0/24\n"), 1u);
    EXPECT_EQ(count(batch, "size "), 0u);
}

TEST(NftBigSets, ABigListOfAdjacentHostsStaysAnIntervalSet) {
    // 100.64.0.0 .. 100.64.0.5 (adjacent to 100.64.0.0, 2, 4 of the list) and every other
    // address after: 4,997 runs for 5,003 hosts would still be a hash set; 2,500 more adjacent
    // hosts make the runs fewer than half the hosts: an interval set (fewer tree nodes).
    std::string few;
    for (int i = 0; i < 3; ++i) {
        few += "100.64.0." + std::to_string(2 * i + 1) + "\n";
    }
    EXPECT_EQ(count(big_batch(-1, few.c_str()), "\t\tsize 5003\n"), 1u);
    std::string many;
    for (int i = 0; i < 2500; ++i) {
        uint32_t a = ((100u << 24) | (64u << 16)) + 2 * static_cast<uint32_t>(i) + 1;
        many += std::to_string(a >> 24) + "." + std::to_string((a >> 16) & 255) + "." +
                std::to_string((a >> 8) & 255) + "." + std::to_string(a & 255) + "\n";
    }
    std::string batch = big_batch(-1, many.c_str());
    EXPECT_EQ(count(batch, "size "), 0u);
    EXPECT_EQ(count(batch, "\tset dst4-big {\n\t\ttype ipv4_addr\n\t\tflags interval\n"), 1u);
}

TEST(NftBigSets, SmallOrForeignBatchesAreNotSplit) {
    std::string batch = big_batch();
    EXPECT_FALSE(split_big_sets(batch, 6000).has_value());  // no set that big
    EXPECT_FALSE(split_big_sets("flush table inet t\n" + batch).has_value());
    EXPECT_FALSE(split_big_sets(batch.substr(0, batch.size() - 2)).has_value());
    EXPECT_EQ(compact_batch("flush table inet t\n"), "flush table inet t\n");
}

TEST(NftBigSets, CompactKeepsStructureAndHashesTheElements) {
    std::string batch = big_batch();
    std::string c = compact_batch(batch);
    EXPECT_LT(c.size(), 4096u);
    EXPECT_EQ(count(c, "\t\t\t# 5000 elements, hash "), 1u);
    EXPECT_EQ(count(c, "2001:db8:"), 10u);
    EXPECT_EQ(compact_batch(c), c);  // idempotent: a running process compares these
    // Every line but the big set's elements is kept, in order.
    auto split = split_big_sets(batch);
    ASSERT_TRUE(split.has_value());
    std::string without = batch.substr(0, split->sets[0].begin) + batch.substr(split->sets[0].end);
    std::string c_without = c;
    size_t h = c_without.find("\t\t\t# 5000 elements");
    c_without.erase(h, c_without.find('\n', h) + 1 - h);
    EXPECT_EQ(c_without, without);
    // One address fewer: another hash.
    std::string other = compact_batch(big_batch(1234));
    EXPECT_EQ(count(other, "\t\t\t# 4999 elements, hash "), 1u);
    EXPECT_NE(other, c);
    EXPECT_EQ(compact_batch(big_batch()), c);
}

TEST(NftBigSets, UnchangedBigSetsAreLeftOut) {
    std::string batch = big_batch();
    std::string running = compact_batch(batch);
    std::vector<std::string> unchanged;
    std::string next = without_unchanged_sets(running, batch, &unchanged);
    ASSERT_EQ(unchanged, std::vector<std::string>{"dst4-big"});
    // The batch less the whole set: not even declared (libnftables would read the elements of
    // an auto-merge set back from the kernel).
    size_t b = batch.find("\tset dst4-big {\n");
    ASSERT_NE(b, std::string::npos);
    size_t e = batch.find("\n\t}\n", b) + 4;
    EXPECT_EQ(next, batch.substr(0, b) + batch.substr(e));
    EXPECT_EQ(next, without_sets(batch, {"dst4-big"}));
    EXPECT_EQ(count(next, "dst6-big"), count(batch, "dst6-big"));
    // One address fewer: the set changed, so it goes in whole.
    unchanged.clear();
    std::string other = big_batch(1234);
    EXPECT_EQ(without_unchanged_sets(running, other, &unchanged), other);
    EXPECT_TRUE(unchanged.empty());
}

TEST(NftBigSets, RenameSetsRenamesDeclarationsAndReferencesOnly) {
    std::string batch = big_batch();
    ASSERT_EQ(count(batch, "@dst4-big "), 1u);
    std::string r = rename_sets(batch, {{"dst4-big", "dst4-big/7"}});
    EXPECT_EQ(count(r, "\tset dst4-big/7 {\n"), 1u);
    EXPECT_EQ(count(r, "@dst4-big/7 "), 1u);
    EXPECT_EQ(count(r, "dst4-big "), 0u);
    EXPECT_EQ(count(r, "dst4-big {"), 0u);
    // Nothing else changes: the other set, the elements, the counters.
    EXPECT_EQ(r.size(), batch.size() + 2 * 2);
    EXPECT_EQ(rename_sets(r, {{"dst4-big/7", "dst4-big"}}), batch);
    // A name that is only a prefix of a reference is not one.
    EXPECT_EQ(rename_sets(batch, {{"dst4-bi", "x"}}), batch);
    EXPECT_EQ(rename_sets(batch, {}), batch);
    EXPECT_EQ(rename_sets("flush table inet t\n", {{"a", "b"}}), "flush table inet t\n");
}

TEST(NftBigSets, AddSetCommandsHaveNoElements) {
    std::string batch = big_batch();
    EXPECT_EQ(add_set_commands(batch, {{"dst4-big", "dst4-big/3"}, {"dst6-big", "dst6-big"}}),
              "add set inet tpengine dst4-big/3 { type ipv4_addr; size 5000; }\n"
              "add set inet tpengine dst6-big { type ipv6_addr; flags interval; auto-merge; }\n");
    EXPECT_EQ(add_set_commands(batch, {{"nope", "x"}}), "");
    EXPECT_EQ(add_set_commands("nonsense", {{"dst4-big", "x"}}), "");
}

TEST(NftBigSets, TextHashIsStableAndSensitive) {
    EXPECT_EQ(text_hash("abc").size(), 32u);
    EXPECT_EQ(text_hash("abc"), text_hash("abc"));
    EXPECT_NE(text_hash("abc"), text_hash("abd"));
    EXPECT_NE(text_hash(""), text_hash(std::string(1, '\0')));
}

}  // namespace
}  // namespace tp::config

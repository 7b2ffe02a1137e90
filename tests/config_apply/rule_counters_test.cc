// The rule-counter reader's JSON scan, on output as nft 1.0.6 prints it.
#include "config/rule_counters.h"

#include <gtest/gtest.h>

namespace tp::config {
namespace {

const char kJson[] =
    R"({"nftables": [{"metainfo": {"version": "1.0.6", "release_name": "Lester Gooch #5", )"
    R"("json_schema_version": 1}}, {"counter": {"family": "inet", "name": "rule-web", )"
    R"("table": "tpengine", "handle": 2, "packets": 12, "bytes": 3400}}, {"counter": )"
    R"({"family": "inet", "name": "drop-web", "table": "tpengine", "handle": 3, "packets": )"
    R"(0, "bytes": 0}}, {"counter": {"family": "inet", "name": "rule-x", "table": "other", )"
    R"("handle": 2, "packets": 5, "bytes": 5}}, {"counter": {"family": "inet", "name": )"
    R"("mine", "table": "tpengine", "handle": 9, "packets": 1, "bytes": 1}}]})";

TEST(RuleCounters, ParsesOwnTableOnly) {
    auto v = parse_rule_counters_json(kJson, "tpengine");
    ASSERT_EQ(v.size(), 2u);
    EXPECT_EQ(v[0].name, "web");
    EXPECT_EQ(v[0].packets, 12u);
    EXPECT_EQ(v[0].bytes, 3400u);
    EXPECT_EQ(v[1].name, "web/drop");
    EXPECT_EQ(v[1].packets, 0u);
}

TEST(RuleCounters, EmptyOrBrokenInputGivesNothing) {
    EXPECT_TRUE(parse_rule_counters_json("", "tpengine").empty());
    EXPECT_TRUE(parse_rule_counters_json(R"({"counter": {"family": "inet")", "tpengine").empty());
}

}  // namespace
}  // namespace tp::config

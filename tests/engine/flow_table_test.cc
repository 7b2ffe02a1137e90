// FlowTable without sockets: insert/lookup, idle expiry (lazy re-arm after activity), LRU
// eviction at the worker limit, the per-client limit, and shedding when only busy flows exist.
#include "engine/flow_table.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>

#include <vector>

namespace tp::engine {
namespace {

FlowKey v4(const char* ip, uint16_t port) {
    sockaddr_in s{};
    s.sin_family = AF_INET;
    s.sin_port = htons(port);
    inet_pton(AF_INET, ip, &s.sin_addr);
    FlowKey k;
    EXPECT_TRUE(FlowKey::from_sockaddr(reinterpret_cast<sockaddr*>(&s), k));
    return k;
}

FlowKey v6(const char* ip, uint16_t port) {
    sockaddr_in6 s{};
    s.sin6_family = AF_INET6;
    s.sin6_port = htons(port);
    inet_pton(AF_INET6, ip, &s.sin6_addr);
    FlowKey k;
    EXPECT_TRUE(FlowKey::from_sockaddr(reinterpret_cast<sockaddr*>(&s), k));
    return k;
}

std::vector<uint32_t> expire(FlowTable& t, uint64_t now) {
    std::vector<uint32_t> out;
    t.expire(now, [&](uint32_t id) {
        out.push_back(id);
        t.remove(id);
    });
    return out;
}

TEST(FlowKey, V4AndV4MappedAreOneKey) {
    EXPECT_EQ(v4("192.0.2.1", 5000), v6("::ffff:192.0.2.1", 5000));
    EXPECT_FALSE(v4("192.0.2.1", 5000) == v4("192.0.2.1", 5001));
    EXPECT_FALSE(v6("2001:db8::1", 5000) == v4("192.0.2.1", 5000));
}

TEST(FlowTable, InsertFindRemove) {
    FlowTable t(100, 100);
    EXPECT_EQ(t.find(v4("192.0.2.1", 1000)), FlowTable::npos);
    uint32_t a = t.insert(v4("192.0.2.1", 1000), 0, 60'000);
    uint32_t b = t.insert(v6("2001:db8::1", 1000), 0, 60'000);
    EXPECT_NE(a, b);
    EXPECT_EQ(t.find(v4("192.0.2.1", 1000)), a);
    EXPECT_EQ(t.find(v6("2001:db8::1", 1000)), b);
    EXPECT_EQ(t.find(v4("192.0.2.1", 1001)), FlowTable::npos);
    EXPECT_EQ(t.size(), 2u);
    t.remove(a);
    EXPECT_EQ(t.find(v4("192.0.2.1", 1000)), FlowTable::npos);
    EXPECT_FALSE(t.used(a));
    EXPECT_EQ(t.size(), 1u);
    EXPECT_EQ(t.client_count(v4("192.0.2.1", 0).addr), 0u);
    uint32_t c = t.insert(v4("192.0.2.9", 1), 0, 0);
    EXPECT_EQ(c, a);  // ids are reused
}

TEST(FlowTable, IdleExpiryFollowsActivity) {
    FlowTable t(100, 100, 1000, 100);
    uint32_t a = t.insert(v4("192.0.2.1", 1), 0, 1000);
    uint32_t b = t.insert(v4("192.0.2.1", 2), 0, 1000);
    uint32_t never = t.insert(v4("192.0.2.1", 3), 0, 0);
    EXPECT_TRUE(expire(t, 500).empty());
    t.touch(a, 800);  // a's deadline moves to 1800
    EXPECT_EQ(expire(t, 1100), std::vector<uint32_t>{b});
    EXPECT_TRUE(t.used(a));
    EXPECT_TRUE(expire(t, 1700).empty());
    EXPECT_EQ(expire(t, 1900), std::vector<uint32_t>{a});
    EXPECT_TRUE(expire(t, 1'000'000).empty());
    EXPECT_TRUE(t.used(never));
}

TEST(FlowTable, WorkerLimitEvictsLeastRecentlyUsedIdleFlow) {
    FlowTable t(3, 100, 1000);
    uint32_t a = t.insert(v4("192.0.2.1", 1), 0, 0);
    uint32_t b = t.insert(v4("192.0.2.2", 1), 0, 0);
    uint32_t c = t.insert(v4("192.0.2.3", 1), 0, 0);
    t.touch(a, 100);  // b is now the least recently used
    (void)c;
    FlowTable::Admission adm = t.admit(v4("192.0.2.4", 1), 5000);
    EXPECT_EQ(adm.verdict, FlowTable::Verdict::evict);
    EXPECT_EQ(adm.victim, b);
    t.remove(b);
    EXPECT_EQ(t.admit(v4("192.0.2.4", 1), 5000).verdict, FlowTable::Verdict::ok);
}

TEST(FlowTable, LimitWithOnlyBusyFlowsSheds) {
    FlowTable t(2, 100, 1000);
    t.insert(v4("192.0.2.1", 1), 0, 0);
    t.insert(v4("192.0.2.2", 1), 500, 0);
    // The oldest was active 900 ms ago: too recent to evict.
    EXPECT_EQ(t.admit(v4("192.0.2.3", 1), 900).verdict, FlowTable::Verdict::shed);
    EXPECT_EQ(t.admit(v4("192.0.2.3", 1), 1000).verdict, FlowTable::Verdict::evict);
}

TEST(FlowTable, PerClientLimitEvictsThatClientsOldest) {
    FlowTable t(100, 2, 1000);
    uint32_t other = t.insert(v4("192.0.2.9", 1), 0, 0);  // oldest worker-wide, other client
    uint32_t a = t.insert(v4("192.0.2.1", 1), 10, 0);
    uint32_t b = t.insert(v4("192.0.2.1", 2), 20, 0);
    t.touch(a, 30);
    EXPECT_EQ(t.client_count(v4("192.0.2.1", 0).addr), 2u);
    FlowTable::Admission adm = t.admit(v4("192.0.2.1", 3), 5000);
    EXPECT_EQ(adm.verdict, FlowTable::Verdict::evict);
    EXPECT_EQ(adm.victim, b);  // not `other`, although it is older
    EXPECT_EQ(t.admit(v4("192.0.2.1", 3), 500).verdict, FlowTable::Verdict::shed);
    // Another client is not limited by this one's count.
    EXPECT_EQ(t.admit(v4("192.0.2.2", 3), 500).verdict, FlowTable::Verdict::ok);
    (void)other;
}

TEST(FlowTable, ManyFlowsKeepLruOrder) {
    FlowTable t(100'000, 100'000, 0);
    std::vector<uint32_t> ids;
    for (uint16_t p = 1; p <= 2000; ++p) {
        ids.push_back(t.insert(v4(p % 2 ? "192.0.2.1" : "192.0.2.2", p), p, 0));
    }
    std::vector<uint32_t> untouched, touched;
    for (size_t i = 0; i < ids.size(); ++i) {
        if (i % 3 == 0) {
            t.touch(ids[i], 5000 + i);
            touched.push_back(ids[i]);
        } else if (i % 3 == 1) {
            t.remove(ids[i]);
        } else {
            untouched.push_back(ids[i]);
        }
    }
    // Oldest first: the untouched flows in insert order, then the touched ones in touch order.
    std::vector<uint32_t> want = untouched;
    want.insert(want.end(), touched.begin(), touched.end());
    std::vector<uint32_t> got;
    while (t.size() > 0) {
        uint32_t v = t.lru_oldest();
        ASSERT_NE(v, FlowTable::npos);
        got.push_back(v);
        t.remove(v);
    }
    EXPECT_EQ(got, want);
    EXPECT_EQ(t.lru_oldest(), FlowTable::npos);
    EXPECT_EQ(t.client_count(v4("192.0.2.1", 0).addr), 0u);
}

}  // namespace
}  // namespace tp::engine

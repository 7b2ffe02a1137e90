// The connection pool: slots are reused, generations make completions for an earlier
// occupant stale, chunks never move, and the cap is honoured.
#include "engine/conn_pool.h"

#include <gtest/gtest.h>

#include <set>

namespace tp::engine {
namespace {

struct Item {
    int v = 0;
};

TEST(ConnPool, StaleGenerationIsNotFound) {
    ConnPool<Item, 4> pool;
    int64_t a = pool.acquire();
    ASSERT_GE(a, 0);
    uint32_t i = static_cast<uint32_t>(a);
    uint32_t gen = pool.slot(i).gen;
    EXPECT_NE(pool.find(i, gen), nullptr);
    pool.release(i);
    EXPECT_EQ(pool.find(i, gen), nullptr) << "released slot";
    int64_t b = pool.acquire();
    ASSERT_EQ(b, a) << "the free list reuses the slot";
    EXPECT_EQ(pool.find(i, gen), nullptr) << "a completion for the old occupant is stale";
    EXPECT_NE(pool.find(i, pool.slot(i).gen), nullptr);
    EXPECT_EQ(pool.find(1000, 1), nullptr);
}

TEST(ConnPool, GrowsByChunksWithStableAddresses) {
    ConnPool<Item, 4> pool;
    std::set<uint32_t> ids;
    Item* first = nullptr;
    for (int n = 0; n < 10; ++n) {
        int64_t s = pool.acquire();
        ASSERT_GE(s, 0);
        ids.insert(static_cast<uint32_t>(s));
        if (n == 0) {
            first = &pool.slot(static_cast<uint32_t>(s)).value;
        }
    }
    EXPECT_EQ(ids.size(), 10u);
    EXPECT_EQ(pool.capacity(), 12u);
    EXPECT_EQ(pool.used(), 10u);
    EXPECT_EQ(first, &pool.slot(*ids.begin()).value);
}

TEST(ConnPool, CapIsHonoured) {
    ConnPool<Item, 4> pool(8);
    for (int n = 0; n < 8; ++n) {
        ASSERT_GE(pool.acquire(), 0);
    }
    EXPECT_EQ(pool.acquire(), -1);
    pool.release(3);
    EXPECT_EQ(pool.acquire(), 3);
}

TEST(ConnPool, GenerationNeverZeroAfterWrap) {
    ConnPool<Item, 1> pool;
    int64_t s = pool.acquire();
    pool.slot(0).gen = 0xFFFFFF;
    pool.release(static_cast<uint32_t>(s));
    EXPECT_NE(pool.slot(0).gen, 0u);
}

}  // namespace
}  // namespace tp::engine

// The coarse timer wheel: deadlines fire on the first tick at or after them, re-arming
// replaces, disarm removes, far deadlines survive wrap-around, a long stall fires everything due.
#include "engine/timer_wheel.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <vector>

namespace tp::engine {
namespace {

std::vector<uint32_t> advance(TimerWheel& w, uint64_t now) {
    std::vector<uint32_t> fired;
    w.advance(now, [&](uint32_t id) { fired.push_back(id); });
    std::sort(fired.begin(), fired.end());
    return fired;
}

TEST(TimerWheel, FiresAtTheRoundedUpTick) {
    TimerWheel w(100, 64);
    w.arm(1, 250);  // rounds up to 300
    w.arm(2, 300);
    w.arm(3, 301);  // 400
    EXPECT_TRUE(advance(w, 200).empty());
    EXPECT_EQ(advance(w, 299), std::vector<uint32_t>{});
    EXPECT_EQ(advance(w, 300), (std::vector<uint32_t>{1, 2}));
    EXPECT_EQ(advance(w, 399), std::vector<uint32_t>{});
    EXPECT_EQ(advance(w, 400), std::vector<uint32_t>{3});
    EXPECT_EQ(w.size(), 0u);
}

TEST(TimerWheel, RearmReplacesAndDisarmRemoves) {
    TimerWheel w(10, 16);
    w.arm(5, 100);
    w.arm(5, 200);
    w.arm(6, 100);
    w.disarm(6);
    EXPECT_FALSE(w.armed(6));
    EXPECT_EQ(w.size(), 1u);
    EXPECT_TRUE(advance(w, 150).empty());
    EXPECT_EQ(advance(w, 200), std::vector<uint32_t>{5});
    EXPECT_FALSE(w.armed(5));
}

TEST(TimerWheel, DeadlinesBeyondOneTurnWaitForTheirRound) {
    TimerWheel w(10, 8);  // one turn = 80 ms
    w.arm(1, 170);        // same bucket as 10, 90
    EXPECT_TRUE(advance(w, 90).empty());
    EXPECT_TRUE(advance(w, 160).empty());
    EXPECT_EQ(advance(w, 170), std::vector<uint32_t>{1});
}

TEST(TimerWheel, LongStallFiresEverythingDue) {
    TimerWheel w(10, 8);
    for (uint32_t i = 0; i < 20; ++i) {
        w.arm(i, 10 + i * 10);
    }
    w.arm(99, 100000);
    auto fired = advance(w, 5000);
    EXPECT_EQ(fired.size(), 20u);
    EXPECT_TRUE(w.armed(99));
}

TEST(TimerWheel, PastDeadlinesFireOnTheNextTick) {
    TimerWheel w(10, 8);
    EXPECT_TRUE(advance(w, 100).empty());
    w.arm(1, 50);
    EXPECT_EQ(advance(w, 110), std::vector<uint32_t>{1});
}

TEST(TimerWheel, FireMayRearm) {
    TimerWheel w(10, 8);
    w.arm(1, 10);
    int n = 0;
    w.advance(10, [&](uint32_t id) {
        ++n;
        w.arm(id, 40);
    });
    EXPECT_EQ(n, 1);
    EXPECT_TRUE(w.armed(1));
    EXPECT_EQ(advance(w, 40), std::vector<uint32_t>{1});
}

}  // namespace
}  // namespace tp::engine

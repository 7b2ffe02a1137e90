// Unit tests of tpbench's log-linear latency histogram.

#include "tools/tpbench/histogram.h"

#include <gtest/gtest.h>

#include <cstdint>

namespace tp::bench {
namespace {

TEST(Histogram, EmptyReportsZero) {
    Histogram h;
    EXPECT_EQ(h.count(), 0u);
    EXPECT_EQ(h.percentile(0.5), 0u);
    EXPECT_EQ(h.max(), 0u);
    EXPECT_EQ(h.min(), 0u);
}

TEST(Histogram, SmallValuesAreExact) {
    Histogram h;
    for (uint64_t v = 1; v <= 100; ++v) {
        h.record(v);
    }
    EXPECT_EQ(h.count(), 100u);
    EXPECT_EQ(h.percentile(0.5), 50u);
    EXPECT_EQ(h.percentile(0.99), 99u);
    EXPECT_EQ(h.percentile(1.0), 100u);
    EXPECT_EQ(h.min(), 1u);
    EXPECT_DOUBLE_EQ(h.mean(), 50.5);
}

TEST(Histogram, SlotsAreContiguousAndBounded) {
    // Every value maps to a slot whose upper edge is >= the value and within 1/64 of it.
    for (uint64_t v : std::initializer_list<uint64_t>{127, 128, 129, 1000, 65535, 1ull << 40,
                                                      (1ull << 40) + 12345, UINT64_MAX}) {
        const int s = Histogram::slot_of(v);
        ASSERT_LT(s, Histogram::kSlots);
        const uint64_t up = Histogram::slot_upper(s);
        EXPECT_GE(up, v);
        EXPECT_LE(static_cast<double>(up - v), static_cast<double>(v) / 64.0 + 1.0) << v;
        if (s > 0 && v != UINT64_MAX) {
            EXPECT_LT(Histogram::slot_upper(s - 1), v);
        }
    }
    EXPECT_EQ(Histogram::slot_of(UINT64_MAX), Histogram::kSlots - 1);
}

TEST(Histogram, PercentilesOfUniformWithinOnePercent) {
    Histogram h;
    for (uint64_t v = 1; v <= 1'000'000; ++v) {
        h.record(v * 1000);  // 1 us .. 1 s in ns
    }
    for (double q : {0.5, 0.9, 0.99, 0.999}) {
        const double want = q * 1e9;
        const double got = static_cast<double>(h.percentile(q));
        EXPECT_NEAR(got, want, want * 0.016) << q;
        EXPECT_GE(got, want) << "reported values are bucket upper edges";
    }
    EXPECT_EQ(h.max(), 1'000'000'000u);
    EXPECT_EQ(h.percentile(1.0), 1'000'000'000u);
}

TEST(Histogram, OutlierShowsInTailOnly) {
    Histogram h;
    for (int i = 0; i < 999; ++i) {
        h.record(10'000);
    }
    h.record(5'000'000);
    EXPECT_LE(h.percentile(0.99), 10'000u + 10'000u / 64);
    EXPECT_EQ(h.percentile(0.9995), 5'000'000u);
    EXPECT_EQ(h.max(), 5'000'000u);
}

TEST(Histogram, MergeEqualsRecordingTogether) {
    Histogram a;
    Histogram b;
    Histogram all;
    for (uint64_t v = 1; v < 50'000; v += 7) {
        ((v % 2) ? a : b).record(v);
        all.record(v);
    }
    a.merge(b);
    EXPECT_EQ(a.count(), all.count());
    EXPECT_EQ(a.max(), all.max());
    EXPECT_EQ(a.min(), all.min());
    for (double q : {0.1, 0.5, 0.9, 0.99}) {
        EXPECT_EQ(a.percentile(q), all.percentile(q));
    }
}

}  // namespace
}  // namespace tp::bench

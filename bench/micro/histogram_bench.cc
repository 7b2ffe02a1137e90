// Micro-benchmarks of tpbench's latency histogram: the record on every response must stay
// far below the cost of the exchange it measures.

#include <benchmark/benchmark.h>

#include <cstdint>
#include <vector>

#include "tools/tpbench/histogram.h"

namespace {

std::vector<uint64_t> latencies() {
    // A spread of realistic latencies in ns (20 us .. 20 ms), fixed so runs are comparable.
    std::vector<uint64_t> v(4096);
    uint64_t x = 88172645463325252ull;
    for (auto& e : v) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        e = 20'000 + x % 20'000'000;
    }
    return v;
}

void BM_HistogramRecord(benchmark::State& state) {
    const auto values = latencies();
    tp::bench::Histogram h;
    size_t i = 0;
    for (auto _ : state) {
        h.record(values[i++ & 4095]);
    }
    benchmark::DoNotOptimize(h.count());
    state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_HistogramRecord);

void BM_HistogramPercentiles(benchmark::State& state) {
    const auto values = latencies();
    tp::bench::Histogram h;
    for (uint64_t v : values) {
        h.record(v);
    }
    for (auto _ : state) {
        benchmark::DoNotOptimize(h.percentile(0.5));
        benchmark::DoNotOptimize(h.percentile(0.99));
        benchmark::DoNotOptimize(h.percentile(0.999));
    }
}
BENCHMARK(BM_HistogramPercentiles);

void BM_HistogramMerge(benchmark::State& state) {
    tp::bench::Histogram a;
    tp::bench::Histogram b;
    for (uint64_t v : latencies()) {
        b.record(v);
    }
    for (auto _ : state) {
        a.merge(b);
    }
    benchmark::DoNotOptimize(a.count());
}
BENCHMARK(BM_HistogramMerge);

}  // namespace

BENCHMARK_MAIN();

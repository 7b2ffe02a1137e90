// Micro-benchmarks of the configuration path at scale: loading (YAML parse + validation + CIDR
// merge + generation) and nft generation alone, for a rule set of 100,000 destination CIDRs.

#include <benchmark/benchmark.h>

#include <cstdio>
#include <string>
#include <variant>

#include "config/load.h"
#include "config/model.h"
#include "config/nft_gen.h"

namespace {

using namespace tp::config;

constexpr int kCidrs = 100'000;

// 100,000 distinct /32s (10.0.0.0 ..): none contains another, so all survive the merge.
IpAddr v4(int i) {
    IpAddr a;
    a.family = AF_INET;
    a.bytes[0] = 10;
    a.bytes[1] = static_cast<uint8_t>(i >> 16);
    a.bytes[2] = static_cast<uint8_t>(i >> 8);
    a.bytes[3] = static_cast<uint8_t>(i);
    return a;
}

std::string big_yaml() {
    std::string y =
        "listeners:\n"
        "  - name: web\n"
        "    address: \"::\"\n"
        "    port: 50080\n"
        "    transparent: true\n"
        "rules:\n"
        "  - name: many\n"
        "    destinations:\n";
    char line[64];
    for (int i = 0; i < kCidrs; ++i) {
        std::snprintf(line, sizeof line, "      - 10.%d.%d.%d/32\n", (i >> 16) & 255,
                      (i >> 8) & 255, i & 255);
        y += line;
    }
    y += "    ports: [80, 443]\n    action: tproxy\n    listener: web\n";
    return y;
}

void BM_ConfigLoad100kCidrs(benchmark::State& state) {
    const std::string yaml = big_yaml();
    for (auto _ : state) {
        LoadResult r = load_config_text(yaml, "bench.yaml");
        if (!std::holds_alternative<LoadedConfig>(r)) {
            const auto& d = std::get<std::vector<Diagnostic>>(r);
            state.SkipWithError(d.empty() ? "load failed" : d.front().format().c_str());
            return;
        }
        benchmark::DoNotOptimize(std::get<LoadedConfig>(r).kernel.nft_batch.size());
    }
    state.SetItemsProcessed(state.iterations() * kCidrs);
}
BENCHMARK(BM_ConfigLoad100kCidrs)->Unit(benchmark::kMillisecond);

void BM_NftGenerate100kCidrs(benchmark::State& state) {
    Model m;
    tp::plan::Listener l;
    l.name = "web";
    l.transparent = true;
    m.listeners.push_back(l);
    Rule r;
    r.name = "many";
    r.action = Action::tproxy;
    r.listener = 0;
    r.ports = {PortRange{80, 80}, PortRange{443, 443}};
    for (int i = 0; i < kCidrs; ++i) {
        r.destinations.push_back(Cidr{v4(i), 32});
    }
    m.rules.push_back(std::move(r));
    size_t bytes = 0;
    for (auto _ : state) {
        const std::string nft = generate_nft(m);
        bytes = nft.size();
        benchmark::DoNotOptimize(nft.data());
    }
    state.counters["batch_bytes"] = static_cast<double>(bytes);
    state.SetItemsProcessed(state.iterations() * kCidrs);
}
BENCHMARK(BM_NftGenerate100kCidrs)->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();

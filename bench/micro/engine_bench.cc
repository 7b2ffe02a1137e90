// Micro-benchmarks of the engine's hot-path pieces: user_data encode/decode, the relay state
// machine's steady-state step (one chunk received and forwarded), provided-buffer recycling, the
// timer wheel, connection-slot reuse, and a route lookup over a long destination list.

#include <arpa/inet.h>
#include <benchmark/benchmark.h>
#include <liburing.h>

#include <cstdint>
#include <cstring>
#include <vector>

#include "engine/buf_ring.h"
#include "engine/conn_pool.h"
#include "engine/relay.h"
#include "engine/route.h"
#include "engine/timer_wheel.h"
#include "engine/user_data.h"

namespace {

using namespace tp::engine;
namespace plan = tp::plan;

void BM_UserDataRoundTrip(benchmark::State& state) {
    uint32_t slot = 0;
    uint64_t acc = 0;
    for (auto _ : state) {
        UserData u{Op::recv_client, slot & UserData::gen_mask, slot};
        const uint64_t packed = u.pack();
        benchmark::DoNotOptimize(packed);
        const UserData back = UserData::unpack(packed);
        acc += back.slot + back.gen + static_cast<uint64_t>(back.op);
        ++slot;
    }
    benchmark::DoNotOptimize(acc);
    state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_UserDataRoundTrip);

// The worker's per-buffer queue links (one entry per ring buffer), as BufChain expects.
std::vector<uint16_t> g_chain_next(4096);
std::vector<uint32_t> g_chain_len(4096);

// Drives one relay to the relaying phase; returns false if it did not get there.
bool start_relay(Relay& r) {
    Actions out;
    r.init(tp::plan::Timeouts{}, BufChain{g_chain_next.data(), g_chain_len.data()});
    r.on_start(0, StartOutcome::ok, out);
    out.clear();
    r.on_connect(1, 0, out);
    return r.phase() == Relay::Phase::relaying;
}

// One steady-state cycle: a chunk arrives from the client on the live multishot receive, is sent
// upstream in full, and the buffer goes back.
void BM_RelayStep(benchmark::State& state) {
    Relay r;
    if (!start_relay(r)) {
        state.SkipWithError("relay did not reach the relaying phase");
        return;
    }
    Actions out;
    uint64_t now = 2;
    uint16_t buf = 0;
    int actions = 0;
    for (auto _ : state) {
        out.clear();
        r.on_recv(now, Side::client, 16384, true, buf, true, out);
        actions += out.size();
        out.clear();
        r.on_send(now, Side::upstream, 16384, out);
        actions += out.size();
        buf = static_cast<uint16_t>((buf + 1) & 4095);
        ++now;
    }
    benchmark::DoNotOptimize(actions);
    if (r.phase() != Relay::Phase::relaying) {
        state.SkipWithError("relay left the relaying phase");
    }
    state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_RelayStep);

// release + flush of provided buffers against a real registered ring, in batches of `range(0)`
// (the worker flushes once per completion batch).
void BM_BufRingRecycle(benchmark::State& state) {
    io_uring ring;
    if (io_uring_queue_init(8, &ring, 0) < 0) {
        state.SkipWithError("io_uring_queue_init failed");
        return;
    }
    {
        BufRing br;
        if (!br.init(&ring, 7, 4096, 16384)) {
            state.SkipWithError("buffer ring registration failed");
        } else {
            const int batch = static_cast<int>(state.range(0));
            uint16_t bid = 0;
            for (auto _ : state) {
                for (int i = 0; i < batch; ++i) {
                    br.release(bid);
                    bid = static_cast<uint16_t>((bid + 1) & 4095);
                }
                benchmark::DoNotOptimize(br.flush());
            }
            state.SetItemsProcessed(state.iterations() * batch);
        }
    }
    io_uring_queue_exit(&ring);
}
BENCHMARK(BM_BufRingRecycle)->Arg(1)->Arg(32);

// Re-arming one connection's idle deadline on activity (the common case) with 10,000 armed.
void BM_TimerWheelRearm(benchmark::State& state) {
    constexpr uint32_t kConns = 10'000;
    TimerWheel w(100, 1024);
    w.reserve_ids(kConns);
    for (uint32_t i = 0; i < kConns; ++i) {
        w.arm(i, 300'000 + i);
    }
    uint32_t id = 0;
    uint64_t now = 0;
    for (auto _ : state) {
        w.arm(id, now + 300'000);
        id = id + 1 == kConns ? 0 : id + 1;
        ++now;
    }
    benchmark::DoNotOptimize(w.size());
    state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_TimerWheelRearm);

// A tick that expires a share of 10,000 connections, which are re-armed by the callback.
void BM_TimerWheelTick(benchmark::State& state) {
    constexpr uint32_t kConns = 10'000;
    TimerWheel w(100, 1024);
    w.reserve_ids(kConns);
    for (uint32_t i = 0; i < kConns; ++i) {
        w.arm(i, 100 + (i % 1000) * 100);  // spread over 1000 ticks
    }
    uint64_t now = 0;
    uint64_t fired = 0;
    for (auto _ : state) {
        now += 100;
        w.advance(now, [&](uint32_t id) {
            ++fired;
            w.arm(id, now + 100'000);
        });
    }
    benchmark::DoNotOptimize(fired);
    state.counters["fired_per_tick"] =
        benchmark::Counter(static_cast<double>(fired), benchmark::Counter::kAvgIterations);
}
BENCHMARK(BM_TimerWheelTick);

void BM_ConnPoolAcquireRelease(benchmark::State& state) {
    struct Conn {
        Relay relay;
        int fds[2];
    };
    ConnPool<Conn> pool;
    // Warm: the pool has grown to its working size, as in a long-running worker.
    std::vector<uint32_t> held;
    for (int i = 0; i < 1000; ++i) {
        held.push_back(static_cast<uint32_t>(pool.acquire()));
    }
    for (uint32_t i : held) {
        pool.release(i);
    }
    for (auto _ : state) {
        const int64_t i = pool.acquire();
        benchmark::DoNotOptimize(
            pool.find(static_cast<uint32_t>(i), pool.slot(static_cast<uint32_t>(i)).gen));
        pool.release(static_cast<uint32_t>(i));
    }
    state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_ConnPoolAcquireRelease);

// A route whose destinations are Arg(0) separate /24s (a country list, say), looked up for
// addresses spread over the list's span: half fall in the gaps between its entries.
void BM_RouteMatchBigList(benchmark::State& state) {
    plan::Listener l;
    plan::Route r;
    const uint32_t n = static_cast<uint32_t>(state.range(0));
    for (uint32_t i = 0; i < n; ++i) {
        plan::Prefix p;
        p.family = AF_INET;
        const uint32_t net = htonl((i * 2u + 1u) << 8);  // every other /24 from 0.0.1.0
        std::memcpy(p.addr, &net, 4);
        p.len = 24;
        r.destinations.push_back(p);
    }
    l.routes = {r};
    RouteTable t(l);
    plan::SockAddr a;
    auto* sin = reinterpret_cast<sockaddr_in*>(&a.storage);
    sin->sin_family = AF_INET;
    sin->sin_port = htons(443);
    a.len = sizeof *sin;
    uint32_t x = 0x9E3779B9u;
    int64_t hits = 0;
    for (auto _ : state) {
        x = x * 1664525u + 1013904223u;
        const uint32_t net = (x >> 8) % (2 * n);  // inside the list's span: half hit, half miss
        sin->sin_addr.s_addr = htonl(net << 8 | (x & 0xFF));
        hits += t.match(a, false, "") == 0;
    }
    benchmark::DoNotOptimize(hits);
    state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_RouteMatchBigList)->Arg(1)->Arg(100)->Arg(10000);

}  // namespace

BENCHMARK_MAIN();

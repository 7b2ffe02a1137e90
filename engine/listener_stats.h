#pragma once
// ListenerCounters: one listener's counters in one worker, on their own cache lines. The
// worker is the only writer (plain load+store, as WorkerStats); the engine sums the blocks of
// every worker into a ListenerSnapshot on demand. Protocol handshakes and upstream selection
// add their counters here (and to ListenerSnapshot and engine/metrics.cc).

#include <atomic>
#include <cstdint>
#include <memory>

#include "engine/stats.h"

namespace tp::engine {

struct alignas(64) ListenerCounters {
    using Counter = std::atomic<uint64_t>;
    Counter accepted{0};
    Counter active{0};
    Counter bytes_up{0};
    Counter bytes_down{0};
    Counter accept_paused_limit{0};
    Counter accept_paused_fd{0};
    Counter handshake_failures{0};
    Counter closed[kCloseReasons]{};
    Counter connect_errors[kConnectErrnoSlots]{};
    Counter connect_time[kConnectBuckets]{};
    Counter connect_time_sum_us{0};
    // UDP listeners: flows made and open now (per flow, never per datagram).
    Counter udp_flows{0};
    Counter udp_active{0};

    static void add(Counter& c, uint64_t n) {
        c.store(c.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
    }
    static void sub(Counter& c, uint64_t n) {
        c.store(c.load(std::memory_order_relaxed) - n, std::memory_order_relaxed);
    }

    void add_to(ListenerSnapshot& s) const {
        auto get = [](const Counter& c) { return c.load(std::memory_order_relaxed); };
        s.accepted += get(accepted);
        s.active += get(active);
        s.bytes_up += get(bytes_up);
        s.bytes_down += get(bytes_down);
        s.accept_paused_limit += get(accept_paused_limit);
        s.accept_paused_fd += get(accept_paused_fd);
        s.handshake_failures += get(handshake_failures);
        for (size_t i = 0; i < kCloseReasons; ++i) {
            s.closed[i] += get(closed[i]);
        }
        for (size_t i = 0; i < kConnectErrnoSlots; ++i) {
            s.connect_errors[i] += get(connect_errors[i]);
        }
        for (size_t i = 0; i < kConnectBuckets; ++i) {
            s.connect_time[i] += get(connect_time[i]);
        }
        s.connect_time_sum_us += get(connect_time_sum_us);
        s.udp_flows += get(udp_flows);
        s.udp_active += get(udp_active);
    }
};

// Every worker's block for one listener, indexed by worker.
struct ListenerCounterSet {
    std::unique_ptr<ListenerCounters[]> per_worker;
    unsigned workers = 0;

    explicit ListenerCounterSet(unsigned n)
        : per_worker(std::make_unique<ListenerCounters[]>(n ? n : 1)), workers(n ? n : 1) {}
    ListenerCounters& of(unsigned w) { return per_worker[w < workers ? w : 0]; }
    ListenerSnapshot snapshot(const std::string& name) const {
        ListenerSnapshot s;
        s.name = name;
        for (unsigned w = 0; w < workers; ++w) {
            per_worker[w].add_to(s);
        }
        return s;
    }
};

}  // namespace tp::engine

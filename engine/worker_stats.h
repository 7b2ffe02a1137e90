#pragma once
// WorkerStats: one worker's counters on their own cache lines. The worker is the only writer
// (plain load+store, relaxed); other threads read whole values and sum them (stats.h).

#include <atomic>
#include <cstdint>

#include "engine/handshake/common.h"
#include "engine/stats.h"

namespace tp::engine {

struct alignas(64) WorkerStats {
    using Counter = std::atomic<uint64_t>;
    Counter accepted{0};
    Counter active{0};
    Counter bytes_up{0};
    Counter bytes_down{0};
    Counter accept_paused{0};
    Counter accept_paused_limit{0};
    Counter accept_paused_fd{0};
    Counter buffer_grows{0};
    Counter buffer_starved{0};
    Counter buffers{0};  // provided now (a gauge)
    Counter stale_dropped{0};
    Counter mem_paused{0};
    Counter mem_refused{0};
    Counter closed[static_cast<size_t>(CloseCause::count_)]{};
    Counter handshake[static_cast<size_t>(hs::Cause::count_)]{};  // failures by cause
    // UDP flows (engine/udp_flows.cc), on their own cache lines so TCP paths do not share them.
    alignas(64) Counter udp_created{0};
    Counter udp_active{0};
    Counter udp_shed{0};
    Counter udp_dgrams_up{0};
    Counter udp_dgrams_down{0};
    Counter udp_bytes_up{0};
    Counter udp_bytes_down{0};
    Counter udp_reply_sockets{0};
    Counter udp_gso_sends{0};
    Counter udp_gso_dgrams{0};
    Counter udp_gro_recvs{0};
    Counter udp_ended[static_cast<size_t>(UdpEnd::count_)]{};
    Counter udp_dropped[static_cast<size_t>(UdpDrop::count_)]{};
    Counter udp_socks_flows{0};
    Counter udp_socks_connect_failed{0};
    Counter udp_socks_failed[static_cast<size_t>(hs::Cause::count_)]{};

    static void add(Counter& c, uint64_t n) {
        c.store(c.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
    }
    static void sub(Counter& c, uint64_t n) {
        c.store(c.load(std::memory_order_relaxed) - n, std::memory_order_relaxed);
    }

    StatsSnapshot snapshot() const {
        StatsSnapshot s;
        s.accepted = accepted.load(std::memory_order_relaxed);
        s.active = active.load(std::memory_order_relaxed);
        s.bytes_up = bytes_up.load(std::memory_order_relaxed);
        s.bytes_down = bytes_down.load(std::memory_order_relaxed);
        s.accept_paused = accept_paused.load(std::memory_order_relaxed);
        s.accept_paused_limit = accept_paused_limit.load(std::memory_order_relaxed);
        s.accept_paused_fd = accept_paused_fd.load(std::memory_order_relaxed);
        s.buffer_grows = buffer_grows.load(std::memory_order_relaxed);
        s.buffer_starved = buffer_starved.load(std::memory_order_relaxed);
        s.buffers = buffers.load(std::memory_order_relaxed);
        s.stale_dropped = stale_dropped.load(std::memory_order_relaxed);
        s.mem_paused = mem_paused.load(std::memory_order_relaxed);
        s.mem_refused = mem_refused.load(std::memory_order_relaxed);
        for (size_t i = 0; i < s.closed.size(); ++i) {
            s.closed[i] = closed[i].load(std::memory_order_relaxed);
        }
        for (size_t i = 0; i < s.handshake.size(); ++i) {
            s.handshake[i] = handshake[i].load(std::memory_order_relaxed);
        }
        auto ld = [](const Counter& c) { return c.load(std::memory_order_relaxed); };
        s.udp.flows_created = ld(udp_created);
        s.udp.flows_active = ld(udp_active);
        s.udp.flows_shed = ld(udp_shed);
        s.udp.dgrams_up = ld(udp_dgrams_up);
        s.udp.dgrams_down = ld(udp_dgrams_down);
        s.udp.bytes_up = ld(udp_bytes_up);
        s.udp.bytes_down = ld(udp_bytes_down);
        s.udp.reply_sockets = ld(udp_reply_sockets);
        s.udp.gso_sends = ld(udp_gso_sends);
        s.udp.gso_dgrams = ld(udp_gso_dgrams);
        s.udp.gro_recvs = ld(udp_gro_recvs);
        for (size_t i = 0; i < s.udp.ended.size(); ++i) {
            s.udp.ended[i] = ld(udp_ended[i]);
        }
        s.udp.socks_flows = ld(udp_socks_flows);
        s.udp.socks_connect_failed = ld(udp_socks_connect_failed);
        for (size_t i = 0; i < s.udp.socks_failed.size(); ++i) {
            s.udp.socks_failed[i] = ld(udp_socks_failed[i]);
        }
        for (size_t i = 0; i < s.udp.dropped.size(); ++i) {
            s.udp.dropped[i] = ld(udp_dropped[i]);
        }
        return s;
    }
};

}  // namespace tp::engine

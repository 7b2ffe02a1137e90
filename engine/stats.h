#pragma once
// Relay counters. Each worker owns one WorkerStats on its own cache lines and is its only
// writer (relaxed atomics so a reader on another thread sees whole values); readers sum them.

#include <array>
#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "engine/handshake/common.h"

namespace tp::engine {

enum class CloseCause : uint8_t {
    normal,  // both sides finished with FIN
    client_reset,
    upstream_reset,
    connect_failed,  // refused, unreachable, ...
    connect_timeout,
    idle_timeout,
    half_closed_timeout,
    self_connect,       // original destination was one of our own listeners
    no_origdst,         // original destination could not be found
    error,              // local failure (socket(), EMFILE, ...)
    shutdown,           // closed by drain timeout at stop
    handshake_failed,   // the upstream proxy refused or broke its handshake
    handshake_timeout,  // ... or did not finish it within handshake_ms
    rejected,           // the route chose a `reject` upstream
    bad_proxy_header,   // accept_proxy: no valid PROXY header from a trusted source in time
    count_,
};

const char* close_cause_name(CloseCause c);

struct StatsSnapshot {
    uint64_t accepted = 0;
    uint64_t active = 0;
    uint64_t bytes_up = 0;       // client -> upstream
    uint64_t bytes_down = 0;     // upstream -> client
    uint64_t accept_paused = 0;  // times accept was paused (max_connections or fd exhaustion)
    // Shedding (printed on a `shed:` line when not zero; none of these is counted as
    // accepted): accepted sockets whose client had already gone, dropped without an upstream.
    uint64_t stale_dropped = 0;
    uint64_t mem_paused = 0;   // times accepting paused at the memory limit
    uint64_t mem_refused = 0;  // accepted as the pause began: reset, never relayed
    std::array<uint64_t, static_cast<size_t>(CloseCause::count_)> closed{};
    std::array<uint64_t, static_cast<size_t>(hs::Cause::count_)> handshake{};  // failures
    std::vector<StatsSnapshot> per_worker;  // empty inside per_worker entries

    uint64_t closed_total() const;
    std::string format() const;  // human-readable, one block, for SIGUSR1 and exit
};

}  // namespace tp::engine

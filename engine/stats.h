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

// Why a UDP flow ended.
enum class UdpEnd : uint8_t {
    expired,       // idle timeout
    evicted,       // least recently used, removed for a new flow at a limit
    dns_answered,  // port 53: every query had its answer
    icmp,          // the upstream reported an error (port unreachable, ...)
    error,         // local failure (socket(), bind, EMFILE, ...)
    shutdown,      // engine stop
    count_,
};
const char* udp_end_name(UdpEnd e);

// Why a UDP datagram was dropped.
enum class UdpDrop : uint8_t {
    oversize,      // larger than max_datagram or the buffer (truncated on receive)
    no_origdst,    // no original destination (non-transparent listener, target original)
    self,          // the destination is one of tpengine's own addresses
    shed,          // no flow could be created (limit reached with only busy flows, fd limit)
    emsgsize,      // EMSGSIZE on send (path MTU, IP_PMTUDISC_DO)
    send_failed,   // socket buffer full or other send error
    reply_socket,  // no reply socket for the original destination (EADDRINUSE, ...)
    no_flow,       // arrived for a flow that had just ended
    count_,
};
const char* udp_drop_name(UdpDrop d);

struct UdpSnapshot {
    uint64_t flows_created = 0;
    uint64_t flows_active = 0;
    uint64_t flows_shed = 0;
    uint64_t dgrams_up = 0;  // client -> upstream, relayed
    uint64_t dgrams_down = 0;
    uint64_t bytes_up = 0;
    uint64_t bytes_down = 0;
    uint64_t reply_sockets = 0;  // open now
    std::array<uint64_t, static_cast<size_t>(UdpEnd::count_)> ended{};
    std::array<uint64_t, static_cast<size_t>(UdpDrop::count_)> dropped{};

    bool any() const { return flows_created != 0 || flows_shed != 0 || dropped_total() != 0; }
    uint64_t ended_total() const;
    uint64_t dropped_total() const;
    void add(const UdpSnapshot& o);
};

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
    UdpSnapshot udp;
    std::vector<StatsSnapshot> per_worker;  // empty inside per_worker entries

    uint64_t closed_total() const;
    std::string format() const;  // human-readable, one block, for SIGUSR1 and exit
};

}  // namespace tp::engine

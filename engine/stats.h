#pragma once
// Relay counters. Each worker owns one WorkerStats on its own cache lines and is its only
// writer (relaxed atomics so a reader on another thread sees whole values); readers sum them.

#include <array>
#include <atomic>
#include <cerrno>
#include <cstddef>
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

// Why a connection ended, as operators read it (metrics, close records): the relay's cause
// refined by the worker (which side sent the first FIN, whether the connect was refused).
enum class CloseReason : uint8_t {
    client_eof,    // the client finished first, then the upstream
    upstream_eof,  // the upstream finished first
    client_reset,
    upstream_reset,
    connect_refused,  // ECONNREFUSED
    connect_failed,   // any other connect error (see the per-errno counters)
    connect_timeout,
    idle_timeout,
    half_closed_timeout,
    loop_refused,  // the original destination was one of our own listeners
    no_origdst,
    limit,  // no connection slot left in the worker
    error,
    shutdown,
    handshake_failed,   // the upstream proxy refused or broke its handshake
    handshake_timeout,  // ... or did not finish it in time
    rejected,           // the route chose a `reject` upstream
    bad_proxy_header,   // accept_proxy: no valid PROXY header from a trusted source
    count_,
};
constexpr size_t kCloseReasons = static_cast<size_t>(CloseReason::count_);
const char* close_reason_name(CloseReason r);

// Connect failures are counted per errno for the common ones; the rest under "other".
constexpr int kConnectErrnos[] = {ECONNREFUSED, ETIMEDOUT,   EHOSTUNREACH, ENETUNREACH,
                                  ECONNRESET,   EACCES,      EPERM,        EADDRNOTAVAIL,
                                  EADDRINUSE,   EAFNOSUPPORT};
constexpr size_t kConnectErrnoSlots = sizeof kConnectErrnos / sizeof kConnectErrnos[0] + 1;
size_t connect_errno_slot(int err);           // err > 0; the last slot is "other"
const char* connect_errno_name(size_t slot);  // "ECONNREFUSED", ..., "other"

// Connect time histogram: bucket i counts connects that took < 2^i microseconds (the last
// bucket is everything longer), so 1 us ... ~8.4 s in 24 buckets.
constexpr size_t kConnectBuckets = 24;
size_t connect_bucket(uint64_t us);

// One listener's counters summed over the workers.
struct ListenerSnapshot {
    std::string name;
    uint64_t accepted = 0;
    uint64_t active = 0;
    uint64_t bytes_up = 0;
    uint64_t bytes_down = 0;
    uint64_t accept_paused_limit = 0;
    uint64_t accept_paused_fd = 0;
    uint64_t handshake_failures = 0;  // fed by protocol handshakes (SOCKS, TLS sniffing...)
    std::array<uint64_t, kCloseReasons> closed{};
    std::array<uint64_t, kConnectErrnoSlots> connect_errors{};
    std::array<uint64_t, kConnectBuckets> connect_time{};  // per bucket, not cumulative
    uint64_t connect_time_sum_us = 0;
    bool udp = false;  // serves UDP: the two below are exported for it
    uint64_t udp_flows = 0;
    uint64_t udp_active = 0;

    uint64_t closed_total() const;
};

// One live connection, as a worker reports it between batches (ctl connections).
struct ConnInfo {
    unsigned worker = 0;
    std::string listener;
    std::string client;
    std::string original;  // original destination (where the client was going)
    std::string upstream;
    uint64_t age_ms = 0;
    uint64_t bytes_up = 0;
    uint64_t bytes_down = 0;
    const char* state = "";  // connecting, relaying, half-closed, closing
};

// Why a UDP flow ended.
enum class UdpEnd : uint8_t {
    expired,       // idle timeout
    evicted,       // least recently used, removed for a new flow at a limit
    dns_answered,  // port 53: every query had its answer
    icmp,          // the upstream reported an error (port unreachable, ...)
    error,         // local failure (socket(), bind, EMFILE, ...)
    shutdown,      // engine stop
    socks_closed,  // the SOCKS5 server closed the association's control connection
    socks_failed,  // the UDP ASSOCIATE could not be set up (udp_socks_failures says why)
    count_,
};
const char* udp_end_name(UdpEnd e);

// Why a UDP datagram was dropped.
enum class UdpDrop : uint8_t {
    oversize,         // larger than max_datagram or the buffer (truncated on receive)
    no_origdst,       // no original destination (non-transparent listener, target original)
    self,             // the destination is one of tpengine's own addresses
    shed,             // no flow could be created (limit reached with only busy flows, fd limit)
    emsgsize,         // EMSGSIZE on send (path MTU, IP_PMTUDISC_DO)
    send_failed,      // socket buffer full or other send error
    reply_socket,     // no reply socket for the original destination (EADDRINUSE, ...)
    no_flow,          // arrived for a flow that had just ended
    rejected,         // the flow's route chose a reject upstream
    socks_queue,      // the SOCKS5 association was not ready and its small queue was full
    socks_fragment,   // a reply from the SOCKS5 relay with FRAG != 0 (never reassembled)
    socks_malformed,  // a reply from the SOCKS5 relay with a bad or unusable header
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
    uint64_t gso_sends = 0;      // sends that carried several datagrams (UDP_SEGMENT)
    uint64_t gso_dgrams = 0;     // the datagrams they carried
    uint64_t gro_recvs = 0;      // receives that carried several datagrams (UDP_GRO)
    std::array<uint64_t, static_cast<size_t>(UdpEnd::count_)> ended{};
    std::array<uint64_t, static_cast<size_t>(UdpDrop::count_)> dropped{};
    uint64_t socks_flows = 0;           // flows relayed through a SOCKS5 UDP ASSOCIATE
    uint64_t socks_connect_failed = 0;  // associations whose control connect failed
    std::array<uint64_t, static_cast<size_t>(hs::Cause::count_)> socks_failed{};  // by cause

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
    uint64_t accept_paused_limit = 0;         // of accept_paused: max_connections reached
    uint64_t accept_paused_fd = 0;            // of accept_paused: out of descriptors or memory
    uint64_t buffer_grows = 0;                // chunks added to a provided-buffer ring
    uint64_t buffer_starved = 0;              // receives that waited for a buffer (ring empty)
    uint64_t buffers = 0;                     // buffers provided now (summed over workers)
    std::vector<StatsSnapshot> per_worker;    // empty inside per_worker entries
    std::vector<ListenerSnapshot> listeners;  // current listeners, plan order (total only)
    UdpSnapshot udp;

    uint64_t closed_total() const;
    std::string format() const;  // human-readable, one block, for SIGUSR1 and exit
};

}  // namespace tp::engine

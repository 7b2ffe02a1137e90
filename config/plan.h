#pragma once
// The plan: the plain-data hand-over from the front ends (config/ and `tpengine relay`) to
// engine/. It is the only header engine/ and config/ share, so it holds data and nothing else:
// no behaviour, no I/O, no YAML and no io_uring.

#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace tp::plan {

// A socket address, v4 or v6, already resolved. `len == 0` means "unset".
struct SockAddr {
    sockaddr_storage storage{};
    socklen_t len = 0;

    int family() const { return len == 0 ? AF_UNSPEC : storage.ss_family; }
    const sockaddr* get() const { return reinterpret_cast<const sockaddr*>(&storage); }
    // The port in host order; 0 when unset or not v4/v6.
    uint16_t port() const {
        if (family() == AF_INET) {
            return ntohs(reinterpret_cast<const sockaddr_in*>(&storage)->sin_port);
        }
        if (family() == AF_INET6) {
            return ntohs(reinterpret_cast<const sockaddr_in6*>(&storage)->sin6_port);
        }
        return 0;
    }
    void set_port(uint16_t host_order) {
        if (family() == AF_INET) {
            reinterpret_cast<sockaddr_in*>(&storage)->sin_port = htons(host_order);
        } else if (family() == AF_INET6) {
            reinterpret_cast<sockaddr_in6*>(&storage)->sin6_port = htons(host_order);
        }
    }
};

// Where a listener's connections go.
enum class UpstreamTarget : uint8_t {
    original,  // the intercepted (original) destination of each connection
    fixed,     // Listener::upstream_address
};

// The source address of the upstream connection (tcprdr -T and beyond).
enum class SourceMode : uint8_t {
    proxy,        // the proxy's own address, chosen by the kernel
    client,       // the client's IP, any port (IP_TRANSPARENT + bind(client ip, 0))
    client_port,  // the client's IP and port (tcprdr -T exactly)
};

// How the original destination of an accepted connection is found.
enum class OrigDst : uint8_t {
    automatic,  // transparent listener: getsockname; otherwise SO_ORIGINAL_DST, then getsockname
    local_address,  // getsockname only (TPROXY)
    conntrack,      // SO_ORIGINAL_DST / IP6T_SO_ORIGINAL_DST only (REDIRECT, DNAT to us)
};

// Timeouts in milliseconds; 0 disables that timeout.
struct Timeouts {
    uint32_t connect_ms = 5'000;
    uint32_t idle_ms = 300'000;
    uint32_t half_closed_ms = 30'000;
    uint32_t handshake_ms = 10'000;  // an upstream proxy's handshake, after connect
    uint32_t sniff_ms = 300;         // waiting for the client's first bytes to sniff a name
};

// Upstreams and routes (issue 10): where a connection goes, chosen per destination and domain.
enum class UpstreamKind : uint8_t { direct, socks5, http, reject };
enum class ProxyProtocol : uint8_t { none, v1, v2 };

struct Upstream {
    std::string name;
    UpstreamKind kind = UpstreamKind::direct;
    // direct: where to (original or `address`), from which source, with a PROXY header or not.
    UpstreamTarget target = UpstreamTarget::original;
    SockAddr address;  // direct with a fixed `to`; the proxy for socks5 and http
    SourceMode source = SourceMode::proxy;
    ProxyProtocol proxy_protocol = ProxyProtocol::none;
    // socks5 / http: credentials as read from their files (never printed).
    std::string username;
    std::string password;
    std::string credentials;  // http: "user:password"
    bool udp = false;         // socks5: UDP ASSOCIATE for UDP flows
    bool pipeline = false;    // socks5: greeting, credentials and request in one write
    bool by_domain = false;   // socks5/http: ask the proxy for the sniffed name, not the address
};

struct Prefix {
    int family = AF_INET;
    uint8_t addr[16] = {};
    uint8_t len = 0;
};

// One route: every condition given must match (an empty one matches anything); domains are
// known only for sniffed connections. First match wins.
struct Route {
    std::vector<Prefix> destinations;
    std::vector<std::pair<uint16_t, uint16_t>> ports;  // inclusive ranges
    std::vector<std::string> domains;                  // exact names, lower case
    std::vector<std::string> suffixes;                 // a name and all names below it
    uint32_t upstream = 0;                             // index into Listener::upstreams
};

// Which transport a listener serves. `both` binds a TCP and a UDP socket on the same address.
enum class Protocol : uint8_t { tcp, udp, both };

// UDP flow settings of a listener that serves UDP. A flow is keyed by the client's address and
// port (endpoint-independent mapping); every *_ms is an idle timeout, 0 = never expires.
struct Udp {
    uint32_t idle_ms = 60'000;      // default idle timeout of a flow
    uint32_t dns_idle_ms = 10'000;  // flows whose first datagram went to port 53
    // A port-53 flow ends as soon as every query it sent has had an answer (nginx's
    // proxy_responses idea): DNS clients use a fresh port per query, so holding them is waste.
    bool dns_close_after_answer = true;
    uint32_t quic_idle_ms = 30'000;  // flows whose first datagram went to port 443
    // At a limit the least recently used flow (of the worker, or of that client) is evicted if
    // it has been idle for at least a second; otherwise the new flow is shed. Both are counted.
    uint32_t max_flows_per_worker = 65'536;  // > 0
    uint32_t max_flows_per_client = 4'096;   // > 0; per client IP (all its ports) per worker
    uint32_t max_datagram = 65'507;          // 1..65507; larger datagrams are dropped, counted
};

// Accepting the PROXY protocol on a listener: from trusted sources only, the header's
// addresses replace the connection's own (client, original destination).
enum class AcceptProxy : uint8_t { none, v1, v2, any };

struct Listener {
    std::string name;  // unique within a plan; reload matches listeners by name
    SockAddr address;  // bind address; "::" is dual-stack unless v6only
    bool v6only = false;
    bool transparent = false;  // IP_TRANSPARENT / IPV6_TRANSPARENT on the listener (tcprdr -t)
    bool fast_open = false;    // TCP_FASTOPEN on the listener and the upstream (tcprdr -f)
    int backlog = 4096;

    UpstreamTarget target = UpstreamTarget::original;
    SockAddr upstream_address;  // for UpstreamTarget::fixed
    SourceMode source = SourceMode::proxy;
    OrigDst orig_dst = OrigDst::automatic;

    Timeouts timeouts;
    uint32_t max_connections = 65'536;  // across all workers; 0 = unlimited

    // Routes, if any, decide per connection; no route matching keeps the fields above.
    std::vector<Upstream> upstreams;
    std::vector<Route> routes;
    AcceptProxy accept_proxy = AcceptProxy::none;
    std::vector<Prefix> accept_proxy_from;  // trusted sources; others connect without a header

    // Close records name it: the only TCP rule that sends connections here; "" when none or
    // several do (the engine cannot tell which one matched) and in `tpengine relay`.
    std::string rule;

    Protocol protocol = Protocol::tcp;  // TCP-only fields above are ignored for a udp listener
    Udp udp;                            // used when protocol is udp or both
};

struct Plan {
    unsigned workers = 0;      // 0 = one per CPU in the process's affinity mask
    uint32_t bypass_mark = 0;  // SO_MARK on every upstream socket; 0 = leave unmarked
    // 64 KiB per receive: fewer operations per byte (bench/RESULTS.md measured 64-128 KiB as the
    // sweet spot). The ring grows lazily up to buffers_per_worker, so the maximum costs memory
    // only under load.
    uint32_t buffer_size = 65'536;        // bytes per relay buffer
    uint32_t buffers_per_worker = 1'024;  // ring maximum per worker (power of 2)
    uint32_t drain_timeout_ms = 10'000;   // graceful stop: live connections may finish until then
    bool log_connections = false;         // one line per connection on stderr (-v)
    // Accepting pauses near this many bytes (engine/mem_guard.h); 0 = the memory cgroup's
    // limit, if any.
    uint64_t memory_limit = 0;
    bool close_records = false;       // one close record per connection (log.connections)
    bool close_records_json = false;  // ... as JSON instead of logfmt
    // UDP replies leave from sockets bound to the original destination; each worker caches at
    // most this many (least recently used closed first). > 0.
    uint32_t udp_reply_sockets_per_worker = 4'096;
    // SO_MARK on those reply sockets; 0 = bypass_mark. It must differ from bypass_mark under
    // TPROXY with a client source: the UDP divert rule (`socket mark` = bypass_mark) then
    // catches Z's replies to the upstream sockets but never hands a client's datagram to a
    // reply socket bound to the same address and port, which nobody reads.
    uint32_t udp_reply_mark = 0;
    std::vector<Listener> listeners;
};

}  // namespace tp::plan

#pragma once
// tpbench's UDP side: `serve --mode udp-echo|udp-sink` and the `udp` client workload (packets/s,
// Gbit/s, loss, round-trip percentiles). Plain sockets with recvmmsg/sendmmsg batches: the load
// generator must cost less per datagram than what it measures.

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "tools/tpbench/histogram.h"
#include "tools/tpbench/net.h"

namespace tp::bench {

struct UdpServeOptions {
    SockAddr listen;
    bool echo = true;
    int threads = 1;
    std::vector<int> cpus;
};
int run_udp_serve(const UdpServeOptions& o, const std::atomic<bool>& stop);

struct UdpOptions {
    SockAddr target;
    int flows = 1;       // client sockets, each its own source port
    uint32_t size = 64;  // payload bytes per datagram
    double duration_s = 5;
    double rate = 0;   // total datagrams/s; 0 = closed loop, `window` in flight per flow
    int window = 1;    // closed loop: datagrams in flight per flow
    bool echo = true;  // false: the target is a sink, nothing comes back
    int threads = 1;
    std::vector<int> cpus;
    int timeout_ms = 200;  // closed loop: a datagram unanswered this long counts as lost
};

struct UdpResult {
    double elapsed_s = 0;
    uint64_t sent = 0;
    uint64_t received = 0;  // echoes (late ones after the window included)
    uint64_t send_errors = 0;
    uint64_t timeouts = 0;  // closed loop: presumed lost
    Histogram rtt;          // ns, echo only, datagrams >= 16 bytes carry their send time
};
UdpResult run_udp(const UdpOptions& o);
void print_udp(std::FILE* f, const UdpOptions& o, const std::string& target, const UdpResult& r,
               bool json);

}  // namespace tp::bench

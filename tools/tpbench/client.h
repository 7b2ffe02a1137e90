#pragma once
// The tpbench client workloads (throughput, rr, connrate, hold): options, results, and the
// thread launcher they share. Each client thread owns one io_uring and its share of connections.

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "tools/tpbench/histogram.h"
#include "tools/tpbench/net.h"

namespace tp::bench {

enum class Direction { Up, Down, Both };

struct ClientOptions {
    SockAddr target;
    int connections = 1;  // throughput, rr, hold; connrate: concurrency
    double duration_s = 5.0;
    Direction direction = Direction::Up;
    uint32_t size = 128;
    double rate = 0.0;  // rr: total requests/s over all connections; 0 = closed loop
    int threads = 1;
    std::vector<int> cpus;
    int timeout_ms = 3000;  // connect, and waiting for a response
    bool progress = false;  // live line on stderr
    uint64_t count = 0;     // connrate: at most this many attempts in all (0 = --duration only)
};

using ErrorCounts = std::array<uint64_t, static_cast<size_t>(Cause::Count_)>;
inline uint64_t total(const ErrorCounts& e) {
    uint64_t n = 0;
    for (uint64_t v : e) {
        n += v;
    }
    return n;
}
inline void count_error(ErrorCounts& e, int err) {
    ++e[static_cast<size_t>(cause_of(err))];
}
inline void add_errors(ErrorCounts& into, const ErrorCounts& from) {
    for (size_t i = 0; i < into.size(); ++i) {
        into[i] += from[i];
    }
}

struct ThroughputResult {
    int connected = 0;
    double elapsed_s = 0;
    uint64_t bytes_sent = 0;
    uint64_t bytes_received = 0;
    std::vector<uint64_t> per_conn_bytes;
    ErrorCounts errors{};
};

struct RrResult {
    int connected = 0;
    double elapsed_s = 0;
    uint64_t requests = 0;
    uint64_t responses = 0;
    uint64_t bytes_sent = 0;
    uint64_t bytes_received = 0;
    Histogram latency;  // ns
    ErrorCounts errors{};
};

struct ConnrateResult {
    double elapsed_s = 0;
    uint64_t attempts = 0;
    uint64_t ok = 0;
    uint64_t bytes_sent = 0;
    uint64_t bytes_received = 0;
    Histogram latency;  // ns: connect start to response complete
    ErrorCounts errors{};
};

ThroughputResult run_throughput(const ClientOptions& o);
RrResult run_rr(const ClientOptions& o);
ConnrateResult run_connrate(const ClientOptions& o);
// Opens o.connections connections, one 1-byte echo exchange each, holds them for duration_s.
// Prints "tpbench: holding N connections" to stderr once they are all up. Returns the number held.
int run_hold(const ClientOptions& o, ErrorCounts& errors, const std::atomic<bool>& stop);

// ---- shared by the workloads ----

// Opens the connections of throughput/rr with blocking connects (not part of the measurement).
std::vector<int> connect_all(const ClientOptions& o, ErrorCounts& errors);

// Per-thread live counter for the progress line, on its own cache line.
struct alignas(64) LiveCounter {
    std::atomic<uint64_t> value{0};
};

// The common start: every client thread sets up its ring, then waits here, so connection set-up
// is outside the measured window. Deadline = start + duration.
class StartGate {
  public:
    explicit StartGate(int threads) : threads_(threads) {}
    // Called by each client thread; returns the start time.
    uint64_t wait() {
        ready_.fetch_add(1);
        while (!go_.load(std::memory_order_acquire)) {
            std::this_thread::yield();
        }
        return start_ns_;
    }
    // Called by the launcher once every thread is ready.
    void open(uint64_t start_ns, uint64_t deadline_ns) {
        while (ready_.load() < threads_) {
            std::this_thread::yield();
        }
        start_ns_ = start_ns;
        deadline_ns_ = deadline_ns;
        go_.store(true, std::memory_order_release);
    }
    uint64_t deadline() const { return deadline_ns_; }

  private:
    int threads_;
    std::atomic<int> ready_{0};
    std::atomic<bool> go_{false};
    uint64_t start_ns_ = 0;
    uint64_t deadline_ns_ = 0;
};

// Starts o.threads threads (pinned per o.cpus), each running body(index, gate); prints the
// progress line from `live` (scaled by `scale`, in `unit`) while they run. Returns the wall time
// from the start to the last thread's end, in seconds.
double run_threads(const ClientOptions& o, const std::function<void(int, StartGate&)>& body,
                   std::vector<LiveCounter>& live, const char* unit, double scale);

// Splits n items over t threads: the indexes thread `i` owns.
inline std::vector<int> share_of(int n, int t, int i) {
    std::vector<int> v;
    for (int k = i; k < n; k += t) {
        v.push_back(k);
    }
    return v;
}

// The connected sockets thread `i` of `t` drives.
inline std::vector<int> fds_of(const std::vector<int>& fds, int t, int i) {
    std::vector<int> mine;
    for (int k : share_of(static_cast<int>(fds.size()), t, i)) {
        mine.push_back(fds[static_cast<size_t>(k)]);
    }
    return mine;
}

}  // namespace tp::bench

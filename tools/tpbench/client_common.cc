// What the client workloads share: the set-up connects, the thread launcher with its progress
// line, and the `hold` workload (idle connections for memory measurements).

#include <sys/socket.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "tools/tpbench/client.h"

namespace tp::bench {

std::vector<int> connect_all(const ClientOptions& o, ErrorCounts& errors) {
    std::vector<int> fds;
    for (int i = 0; i < o.connections; ++i) {
        const int fd = connect_blocking(o.target, o.timeout_ms);
        if (fd < 0) {
            count_error(errors, -fd);
            continue;
        }
        fds.push_back(fd);
    }
    return fds;
}

double run_threads(const ClientOptions& o, const std::function<void(int, StartGate&)>& body,
                   std::vector<LiveCounter>& live, const char* unit, double scale) {
    StartGate gate(o.threads);
    std::atomic<int> running{o.threads};
    std::vector<uint64_t> end_ns(static_cast<size_t>(o.threads), 0);
    std::vector<std::thread> threads;
    for (int i = 0; i < o.threads; ++i) {
        threads.emplace_back([&, i] {
            if (!o.cpus.empty()) {
                pin_this_thread(o.cpus[static_cast<size_t>(i) % o.cpus.size()]);
            }
            body(i, gate);
            end_ns[static_cast<size_t>(i)] = now_ns();
            running.fetch_sub(1);
        });
    }
    const uint64_t start = now_ns();
    const uint64_t deadline = start + static_cast<uint64_t>(o.duration_s * 1e9);
    gate.open(start, deadline);
    uint64_t last_t = start;
    uint64_t last_v = 0;
    uint64_t next_print = start + 1'000'000'000ull;
    while (running.load() > 0) {
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
        const uint64_t now = now_ns();
        if (!o.progress || now < next_print) {
            continue;
        }
        next_print += 1'000'000'000ull;
        uint64_t v = 0;
        for (auto& c : live) {
            v += c.value.load(std::memory_order_relaxed);
        }
        const double dt = static_cast<double>(now - last_t) / 1e9;
        const double el = static_cast<double>(now - start) / 1e9;
        std::fprintf(stderr, "\r[%5.1fs/%.0fs] %10.3f %s   ", el, o.duration_s,
                     static_cast<double>(v - last_v) * scale / dt, unit);
        last_t = now;
        last_v = v;
    }
    for (auto& t : threads) {
        t.join();
    }
    if (o.progress) {
        std::fprintf(stderr, "\r%60s\r", "");
    }
    uint64_t last_end = start;
    for (uint64_t e : end_ns) {
        last_end = e > last_end ? e : last_end;
    }
    return static_cast<double>(last_end - start) / 1e9;
}

int run_hold(const ClientOptions& o, ErrorCounts& errors, const std::atomic<bool>& stop) {
    std::vector<UniqueFd> held;
    for (int i = 0; i < o.connections && !stop.load(); ++i) {
        UniqueFd fd(connect_blocking(o.target, o.timeout_ms));
        if (fd.get() < 0) {
            count_error(errors, -fd.get());
            continue;
        }
        // One exchange proves the path is complete (a relay has connected upstream).
        char b = 'h';
        if (::send(fd.get(), &b, 1, MSG_NOSIGNAL) != 1) {
            count_error(errors, errno);
            continue;
        }
        const ssize_t n = ::recv(fd.get(), &b, 1, 0);
        if (n != 1) {
            count_error(errors, n == 0 ? 0 : errno);
            continue;
        }
        held.push_back(std::move(fd));
    }
    std::fprintf(stderr, "tpbench: holding %zu connections\n", held.size());
    const uint64_t end = now_ns() + static_cast<uint64_t>(o.duration_s * 1e9);
    while (!stop.load() && now_ns() < end) {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return static_cast<int>(held.size());
}

}  // namespace tp::bench

// `tpbench rr`: request/response over keep-alive connections to an echo server. Closed loop by
// default; with --rate each connection follows a fixed schedule and latency runs from the
// intended send time, so a stall is charged to every request it delays (no coordinated omission).

#include <sys/socket.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "tools/tpbench/client.h"
#include "tools/tpbench/uring.h"

namespace tp::bench {
namespace {

struct RConn {
    int fd = -1;
    bool busy = false;  // a request is out
    bool failed = false;
    bool timer_armed = false;
    int inflight = 0;
    uint32_t sent = 0;       // bytes of the current request sent
    uint32_t got = 0;        // bytes of the current response received
    uint64_t t0 = 0;         // latency origin of the current request
    uint64_t next_due = 0;   // --rate: intended time of the next request
    __kernel_timespec ts{};  // --rate: absolute wake-up (must live until submitted)
};

class RrWorker {
  public:
    RrWorker(const ClientOptions& o, std::vector<int> fds, LiveCounter& live)
        : o_(o), live_(live), req_(o.size, 'r'), scratch_(o.size < 65536 ? 65536 : o.size) {
        for (int fd : fds) {
            conns_.push_back(RConn{fd});
        }
    }

    void run(StartGate& gate, int thread_index) {
        const int rc = ring_.init(2048);
        const uint64_t start = gate.wait();
        if (rc < 0) {
            std::fprintf(stderr, "tpbench: io_uring setup: %s\n", std::strerror(-rc));
            return;
        }
        deadline_ = gate.deadline();
        const double total_conns = static_cast<double>(o_.connections);
        interval_ns_ = o_.rate > 0 ? static_cast<uint64_t>(1e9 * total_conns / o_.rate) : 0;
        for (uint32_t i = 0; i < conns_.size(); ++i) {
            if (interval_ns_ == 0) {
                issue(i, now_ns());
                continue;
            }
            // Stagger the connections over one interval so arrivals are evenly spread.
            const uint64_t global_index =
                static_cast<uint64_t>(thread_index) +
                static_cast<uint64_t>(i) * static_cast<uint64_t>(o_.threads);
            conns_[i].next_due =
                start + static_cast<uint64_t>(static_cast<double>(interval_ns_) *
                                              static_cast<double>(global_index) / total_conns);
            schedule(i, now_ns());
        }
        const uint64_t drain_end = deadline_ + static_cast<uint64_t>(o_.timeout_ms) * 1'000'000;
        while (true) {
            uint64_t now = now_ns();
            if (outstanding_ == 0 && now >= deadline_) {
                break;
            }
            if (now >= drain_end) {
                // Responses that never came are timeouts.
                for (auto& c : conns_) {
                    if (c.busy && !c.failed) {
                        count_error(errors_, ETIMEDOUT);
                    }
                }
                break;
            }
            const uint64_t wait =
                now < deadline_ ? std::min<uint64_t>(deadline_ - now, 50'000'000) : 50'000'000;
            ring_.submit_and_wait(wait);
            unsigned head;
            unsigned seen = 0;
            io_uring_cqe* cqe;
            io_uring_for_each_cqe(ring_.get(), head, cqe) {
                ++seen;
                handle(cqe);
            }
            io_uring_cq_advance(ring_.get(), seen);
        }
        for (auto& c : conns_) {
            ::shutdown(c.fd, SHUT_RDWR);
            ::close(c.fd);
        }
    }

    uint64_t requests = 0;
    uint64_t responses = 0;
    uint64_t bytes_sent = 0;
    uint64_t bytes_received = 0;
    Histogram latency;
    ErrorCounts errors_{};

  private:
    // Sends the next request now; its latency counts from `t0`.
    void issue(uint32_t i, uint64_t t0) {
        RConn& c = conns_[i];
        c.busy = true;
        c.sent = 0;
        c.got = 0;
        c.t0 = t0;
        ++requests;
        ++outstanding_;
        arm_send(i);
        arm_recv(i);
    }
    void arm_send(uint32_t i) {
        RConn& c = conns_[i];
        io_uring_sqe* s = ring_.sqe();
        io_uring_prep_send(s, c.fd, req_.data() + c.sent, o_.size - c.sent, MSG_NOSIGNAL);
        io_uring_sqe_set_data64(s, pack(Op::Send, i));
        ++c.inflight;
    }
    void arm_recv(uint32_t i) {
        RConn& c = conns_[i];
        io_uring_sqe* s = ring_.sqe();
        io_uring_prep_recv(s, c.fd, scratch_.data(), o_.size - c.got, 0);
        io_uring_sqe_set_data64(s, pack(Op::Recv, i));
        ++c.inflight;
    }
    // --rate: send now if the intended time has come, else arm a timer for it.
    void schedule(uint32_t i, uint64_t now) {
        RConn& c = conns_[i];
        if (c.next_due >= deadline_) {
            return;
        }
        if (c.next_due <= now) {
            const uint64_t due = c.next_due;
            c.next_due += interval_ns_;
            issue(i, due);
            return;
        }
        c.ts.tv_sec = static_cast<long long>(c.next_due / 1000000000ull);
        c.ts.tv_nsec = static_cast<long long>(c.next_due % 1000000000ull);
        io_uring_sqe* s = ring_.sqe();
        io_uring_prep_timeout(s, &c.ts, 0, IORING_TIMEOUT_ABS);
        io_uring_sqe_set_data64(s, pack(Op::Timer, i));
        c.timer_armed = true;
    }

    void fail(uint32_t i, int err) {
        RConn& c = conns_[i];
        if (!c.failed) {
            c.failed = true;
            count_error(errors_, err);
            if (c.busy) {
                --outstanding_;
            }
            ::shutdown(c.fd, SHUT_RDWR);
        }
    }

    void handle(io_uring_cqe* cqe) {
        const uint32_t i = slot_of(cqe->user_data);
        RConn& c = conns_[i];
        const int res = cqe->res;
        const Op op = op_of(cqe->user_data);
        if (op == Op::Timer) {
            c.timer_armed = false;
            if (!c.failed && !c.busy) {
                schedule(i, now_ns());
            }
            return;
        }
        --c.inflight;
        if (c.failed) {
            return;
        }
        if (res <= 0) {
            fail(i, res == 0 ? 0 : -res);
            return;
        }
        if (op == Op::Send) {
            c.sent += static_cast<uint32_t>(res);
            bytes_sent += static_cast<uint64_t>(res);
            if (c.sent < o_.size) {
                arm_send(i);
            }
            return;
        }
        c.got += static_cast<uint32_t>(res);
        bytes_received += static_cast<uint64_t>(res);
        if (c.got < o_.size) {
            arm_recv(i);
            return;
        }
        // The whole response is in (the echo cannot answer before the request was sent).
        const uint64_t now = now_ns();
        latency.record(now - c.t0);
        ++responses;
        --outstanding_;
        c.busy = false;
        live_.value.fetch_add(1, std::memory_order_relaxed);
        if (now >= deadline_) {
            return;
        }
        if (interval_ns_ == 0) {
            issue(i, now);
        } else {
            schedule(i, now);
        }
    }

    const ClientOptions& o_;
    LiveCounter& live_;
    Ring ring_;
    std::vector<RConn> conns_;
    std::vector<char> req_;
    std::vector<char> scratch_;
    uint64_t deadline_ = 0;
    uint64_t interval_ns_ = 0;
    uint64_t outstanding_ = 0;  // requests sent and not yet answered
};

}  // namespace

RrResult run_rr(const ClientOptions& o) {
    RrResult r;
    std::vector<int> fds = connect_all(o, r.errors);
    r.connected = static_cast<int>(fds.size());
    if (fds.empty()) {
        return r;
    }
    ClientOptions eff = o;
    eff.threads = std::min<int>(o.threads, static_cast<int>(fds.size()));
    eff.connections = static_cast<int>(fds.size());
    std::vector<LiveCounter> live(static_cast<size_t>(eff.threads));
    std::vector<std::unique_ptr<RrWorker>> workers;
    for (int t = 0; t < eff.threads; ++t) {
        std::vector<int> mine = fds_of(fds, eff.threads, t);
        workers.push_back(
            std::make_unique<RrWorker>(eff, std::move(mine), live[static_cast<size_t>(t)]));
    }
    r.elapsed_s = run_threads(
        eff, [&](int t, StartGate& g) { workers[static_cast<size_t>(t)]->run(g, t); }, live,
        "req/s", 1.0);
    for (auto& w : workers) {
        r.requests += w->requests;
        r.responses += w->responses;
        r.bytes_sent += w->bytes_sent;
        r.bytes_received += w->bytes_received;
        r.latency.merge(w->latency);
        add_errors(r.errors, w->errors_);
    }
    return r;
}

}  // namespace tp::bench

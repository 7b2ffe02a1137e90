// `tpbench throughput`: bulk streams up (to a sink), down (from a source) or both (through an
// echo). Bytes count when their completion arrives before the deadline.

#include <sys/socket.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "tools/tpbench/client.h"
#include "tools/tpbench/uring.h"

namespace tp::bench {
namespace {

constexpr size_t kSendChunk = 256 * 1024;
// 128 KiB receives: cheapest per byte on loopback (see serve.cc).
constexpr size_t kRecvChunk = 128 * 1024;

struct TConn {
    int fd = -1;
    int inflight = 0;
    bool failed = false;
    uint64_t sent = 0;
    uint64_t received = 0;
};

class ThroughputWorker {
  public:
    ThroughputWorker(const ClientOptions& o, std::vector<int> fds, LiveCounter& live)
        : o_(o), live_(live), send_buf_(kSendChunk, 'x'), recv_buf_(kRecvChunk) {
        for (int fd : fds) {
            conns_.push_back(TConn{fd});
        }
    }

    void run(StartGate& gate) {
        const int rc = ring_.init(1024);
        gate.wait();
        if (rc < 0) {
            std::fprintf(stderr, "tpbench: io_uring setup: %s\n", std::strerror(-rc));
            return;
        }
        const uint64_t deadline = gate.deadline();
        for (uint32_t i = 0; i < conns_.size(); ++i) {
            if (o_.direction != Direction::Down) {
                arm_send(i);
            }
            if (o_.direction != Direction::Up) {
                arm_recv(i);
            }
        }
        bool stopping = false;
        int inflight_total = 0;
        for (auto& c : conns_) {
            inflight_total += c.inflight;
        }
        const uint64_t drain_end = deadline + static_cast<uint64_t>(o_.timeout_ms) * 1'000'000;
        while (inflight_total > 0) {
            uint64_t now = now_ns();
            if (!stopping && now >= deadline) {
                // Unblock every pending operation; their completions are drained, not counted.
                stopping = true;
                for (auto& c : conns_) {
                    ::shutdown(c.fd, SHUT_RDWR);
                }
            }
            if (stopping && now >= drain_end) {
                break;
            }
            ring_.submit_and_wait(stopping ? 50'000'000
                                           : std::min<uint64_t>(deadline - now, 50'000'000));
            now = now_ns();
            const bool counting = now < deadline;
            unsigned head;
            unsigned seen = 0;
            io_uring_cqe* cqe;
            io_uring_for_each_cqe(ring_.get(), head, cqe) {
                ++seen;
                const uint32_t i = slot_of(cqe->user_data);
                TConn& c = conns_[i];
                --c.inflight;
                --inflight_total;
                const int res = cqe->res;
                if (res <= 0) {
                    if (counting && !c.failed) {
                        c.failed = true;
                        count_error(errors_, res == 0 ? 0 : -res);
                        ::shutdown(c.fd, SHUT_RDWR);
                    }
                    continue;
                }
                if (!counting) {
                    continue;
                }
                if (op_of(cqe->user_data) == Op::Send) {
                    c.sent += static_cast<uint64_t>(res);
                    live_.value.fetch_add(static_cast<uint64_t>(res), std::memory_order_relaxed);
                    if (!c.failed) {
                        arm_send(i);
                        ++inflight_total;
                    }
                } else {
                    c.received += static_cast<uint64_t>(res);
                    live_.value.fetch_add(static_cast<uint64_t>(res), std::memory_order_relaxed);
                    if (!c.failed) {
                        arm_recv(i);
                        ++inflight_total;
                    }
                }
            }
            io_uring_cq_advance(ring_.get(), seen);
        }
        for (auto& c : conns_) {
            ::close(c.fd);
        }
    }

    const std::vector<TConn>& conns() const { return conns_; }
    const ErrorCounts& errors() const { return errors_; }

  private:
    void arm_send(uint32_t i) {
        io_uring_sqe* s = ring_.sqe();
        io_uring_prep_send(s, conns_[i].fd, send_buf_.data(), kSendChunk, MSG_NOSIGNAL);
        io_uring_sqe_set_data64(s, pack(Op::Send, i));
        ++conns_[i].inflight;
    }
    void arm_recv(uint32_t i) {
        // Every connection of the thread receives into the same scratch: the data is discarded.
        io_uring_sqe* s = ring_.sqe();
        io_uring_prep_recv(s, conns_[i].fd, recv_buf_.data(), kRecvChunk, 0);
        io_uring_sqe_set_data64(s, pack(Op::Recv, i));
        ++conns_[i].inflight;
    }

    const ClientOptions& o_;
    LiveCounter& live_;
    Ring ring_;
    std::vector<TConn> conns_;
    std::vector<char> send_buf_;
    std::vector<char> recv_buf_;
    ErrorCounts errors_{};
};

}  // namespace

ThroughputResult run_throughput(const ClientOptions& o) {
    ThroughputResult r;
    std::vector<int> fds = connect_all(o, r.errors);
    r.connected = static_cast<int>(fds.size());
    if (fds.empty()) {
        return r;
    }
    ClientOptions eff = o;
    eff.threads = std::min<int>(o.threads, static_cast<int>(fds.size()));
    std::vector<LiveCounter> live(static_cast<size_t>(eff.threads));
    std::vector<std::unique_ptr<ThroughputWorker>> workers;
    for (int t = 0; t < eff.threads; ++t) {
        std::vector<int> mine = fds_of(fds, eff.threads, t);
        workers.push_back(
            std::make_unique<ThroughputWorker>(eff, std::move(mine), live[static_cast<size_t>(t)]));
    }
    run_threads(
        eff, [&](int t, StartGate& g) { workers[static_cast<size_t>(t)]->run(g); }, live, "Gbit/s",
        8e-9);
    r.elapsed_s = o.duration_s;
    for (auto& w : workers) {
        for (const TConn& c : w->conns()) {
            r.bytes_sent += c.sent;
            r.bytes_received += c.received;
            r.per_conn_bytes.push_back(c.sent + c.received);
        }
        add_errors(r.errors, w->errors());
    }
    return r;
}

}  // namespace tp::bench

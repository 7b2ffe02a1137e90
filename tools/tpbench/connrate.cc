// `tpbench connrate`: new connections per second. Each of --concurrency slots loops: socket,
// connect (io_uring, with a linked timeout), send --size bytes, receive them back, close.

#include <sys/socket.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "tools/tpbench/client.h"
#include "tools/tpbench/uring.h"

namespace tp::bench {
namespace {

struct Slot {
    int fd = -1;
    int inflight = 0;
    int err = -1;  // -1: fine so far; else the errno (0 = closed early) that ended this attempt
    uint32_t got = 0;
    uint64_t t0 = 0;
};

class ConnrateWorker {
  public:
    ConnrateWorker(const ClientOptions& o, int slots, LiveCounter& live,
                   std::atomic<int64_t>& budget)
        : o_(o),
          live_(live),
          budget_(budget),
          slots_(static_cast<size_t>(slots)),
          req_(o.size, 'c'),
          scratch_(o.size) {
        timeout_.tv_sec = o.timeout_ms / 1000;
        timeout_.tv_nsec = static_cast<long long>(o.timeout_ms % 1000) * 1'000'000;
    }

    void run(StartGate& gate) {
        const int rc = ring_.init(1024);
        gate.wait();
        if (rc < 0) {
            std::fprintf(stderr, "tpbench: io_uring setup: %s\n", std::strerror(-rc));
            return;
        }
        deadline_ = gate.deadline();
        for (uint32_t i = 0; i < slots_.size(); ++i) {
            begin(i);
        }
        const uint64_t drain_end =
            deadline_ + static_cast<uint64_t>(o_.timeout_ms + 1000) * 1'000'000;
        while (active_ > 0 || !retry_.empty()) {
            const uint64_t now = now_ns();
            if (now >= drain_end) {
                break;
            }
            ring_.submit_and_wait(!retry_.empty() ? 1'000'000
                                  : now < deadline_
                                      ? std::min<uint64_t>(deadline_ - now, 50'000'000)
                                      : 50'000'000);
            unsigned head;
            unsigned seen = 0;
            io_uring_cqe* cqe;
            io_uring_for_each_cqe(ring_.get(), head, cqe) {
                ++seen;
                handle(cqe);
            }
            io_uring_cq_advance(ring_.get(), seen);
            std::vector<uint32_t> again;
            again.swap(retry_);
            for (uint32_t i : again) {
                begin(i);
            }
        }
        for (auto& s : slots_) {
            if (s.fd >= 0) {
                ::close(s.fd);
            }
        }
    }

    uint64_t attempts = 0;
    uint64_t ok = 0;
    uint64_t bytes_sent = 0;
    uint64_t bytes_received = 0;
    Histogram latency;
    ErrorCounts errors{};

  private:
    void link_timeout() {
        io_uring_sqe* t = ring_.sqe();
        io_uring_prep_link_timeout(t, &timeout_, 0);
        io_uring_sqe_set_data64(t, pack(Op::LinkTimeout, 0));
    }

    // Starts a new attempt in slot i, or retires the slot after the deadline.
    void begin(uint32_t i) {
        Slot& s = slots_[i];
        s = Slot{};
        if (now_ns() >= deadline_) {
            return;
        }
        // --count: the attempts left, shared by every thread.
        if (o_.count != 0 && budget_.fetch_sub(1, std::memory_order_relaxed) <= 0) {
            return;
        }
        ++active_;
        ++attempts;
        s.t0 = now_ns();
        s.fd = ::socket(o_.target.family(), SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (s.fd < 0) {
            // Out of descriptors: count it and retry after this batch (not recursively).
            count_error(errors, errno);
            --active_;
            if (o_.count != 0) {
                budget_.fetch_add(1, std::memory_order_relaxed);
            }
            retry_.push_back(i);
            return;
        }
        io_uring_sqe* c = ring_.sqe();
        io_uring_prep_connect(c, s.fd, o_.target.sa(), o_.target.len);
        io_uring_sqe_set_data64(c, pack(Op::Connect, i));
        c->flags |= IOSQE_IO_LINK;
        link_timeout();
        ++s.inflight;
    }

    void arm_recv(uint32_t i) {
        Slot& s = slots_[i];
        io_uring_sqe* r = ring_.sqe();
        io_uring_prep_recv(r, s.fd, scratch_.data() + s.got, o_.size - s.got, 0);
        io_uring_sqe_set_data64(r, pack(Op::Recv, i));
        r->flags |= IOSQE_IO_LINK;
        link_timeout();
        ++s.inflight;
    }

    // The attempt in slot i is over (success or s.err); account for it and start the next.
    void finish(uint32_t i) {
        Slot& s = slots_[i];
        if (s.err < 0) {
            latency.record(now_ns() - s.t0);
            ++ok;
            live_.value.fetch_add(1, std::memory_order_relaxed);
        } else {
            count_error(errors, s.err);
        }
        if (s.fd >= 0) {
            ::close(s.fd);
            s.fd = -1;
        }
        --active_;
        begin(i);
    }

    void fail(uint32_t i, int err) {
        Slot& s = slots_[i];
        if (s.err < 0) {
            s.err = err;
            ::shutdown(s.fd, SHUT_RDWR);
        }
    }

    void handle(io_uring_cqe* cqe) {
        const Op op = op_of(cqe->user_data);
        if (op == Op::LinkTimeout) {
            return;
        }
        const uint32_t i = slot_of(cqe->user_data);
        Slot& s = slots_[i];
        const int res = cqe->res;
        --s.inflight;
        if (s.err >= 0) {
            if (s.inflight == 0) {
                finish(i);
            }
            return;
        }
        if (op == Op::Connect) {
            if (res < 0) {
                s.err = -res;
                finish(i);
                return;
            }
            io_uring_sqe* w = ring_.sqe();
            io_uring_prep_send(w, s.fd, req_.data(), o_.size, MSG_NOSIGNAL);
            io_uring_sqe_set_data64(w, pack(Op::Send, i));
            ++s.inflight;
            arm_recv(i);
            return;
        }
        if (res < 0 || (op == Op::Recv && res == 0)) {
            fail(i, res == 0 ? 0 : -res);
        } else if (op == Op::Send) {
            bytes_sent += static_cast<uint64_t>(res);
            if (static_cast<uint32_t>(res) < o_.size) {
                fail(i, EPIPE);  // a socket buffer takes far more than one request
            }
        } else {
            s.got += static_cast<uint32_t>(res);
            bytes_received += static_cast<uint64_t>(res);
            if (s.got < o_.size) {
                arm_recv(i);
            }
        }
        if (s.inflight == 0) {
            finish(i);
        }
    }

    const ClientOptions& o_;
    LiveCounter& live_;
    std::atomic<int64_t>& budget_;
    Ring ring_;
    std::vector<Slot> slots_;
    std::vector<char> req_;
    std::vector<char> scratch_;
    __kernel_timespec timeout_{};
    uint64_t deadline_ = 0;
    int active_ = 0;
    std::vector<uint32_t> retry_;
};

}  // namespace

ConnrateResult run_connrate(const ClientOptions& o) {
    ConnrateResult r;
    ClientOptions eff = o;
    eff.threads = std::min(o.threads, o.connections);
    std::vector<LiveCounter> live(static_cast<size_t>(eff.threads));
    std::vector<std::unique_ptr<ConnrateWorker>> workers;
    std::atomic<int64_t> budget{static_cast<int64_t>(o.count)};
    for (int t = 0; t < eff.threads; ++t) {
        const int slots = static_cast<int>(share_of(o.connections, eff.threads, t).size());
        workers.push_back(
            std::make_unique<ConnrateWorker>(eff, slots, live[static_cast<size_t>(t)], budget));
    }
    r.elapsed_s = run_threads(
        eff, [&](int t, StartGate& g) { workers[static_cast<size_t>(t)]->run(g); }, live, "conn/s",
        1.0);
    for (auto& w : workers) {
        r.attempts += w->attempts;
        r.ok += w->ok;
        r.bytes_sent += w->bytes_sent;
        r.bytes_received += w->bytes_received;
        r.latency.merge(w->latency);
        add_errors(r.errors, w->errors);
    }
    return r;
}

}  // namespace tp::bench

// The tpbench servers: per-thread ring, multishot accept, single-shot receives from a provided
// buffer ring (an idle connection holds no buffer), one operation in flight per connection.

#include "tools/tpbench/serve.h"

#include <netinet/in.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <thread>

#include "tools/tpbench/uring.h"

namespace tp::bench {
namespace {

constexpr unsigned kBufCount = 512;  // per thread, power of two
constexpr unsigned kBufSize = 64 * 1024;
constexpr size_t kSourceChunk = 256 * 1024;
// 128 KiB receives: measured cheapest on loopback (256 KiB cost 2.8x the CPU per byte: the
// window update comes later and the sender stalls).
constexpr size_t kSinkChunk = 128 * 1024;
constexpr char kHttpResponse[] =
    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\r\nok\n";
constexpr size_t kHttpLen = sizeof(kHttpResponse) - 1;
constexpr int kHttpBatch = 64;  // responses per send from the shared response block

const char* mode_name(ServeMode m) {
    switch (m) {
        case ServeMode::Echo:
            return "echo";
        case ServeMode::Sink:
            return "sink";
        case ServeMode::Source:
            return "source";
        default:
            return "http";
    }
}

struct Conn {
    int fd = -1;
    int bid = -1;            // provided buffer held while echoing it back
    uint32_t len = 0;        // bytes to send from the held buffer (echo)
    uint32_t off = 0;        // bytes of it already sent
    uint64_t http_left = 0;  // response bytes still owed (http)
    uint8_t http_match = 0;  // how much of "\r\n\r\n" the last bytes matched
    // echo: received buffers waiting to go back, oldest first (linked through next_bid_)
    int q_head = -1;
    int q_tail = -1;
    bool recv_armed = false;  // echo: the multishot receive is live
    bool send_inflight = false;
    bool closing = false;
    bool starved = false;  // waiting in starved_ for buffers
};

class ServeWorker {
  public:
    ServeWorker(ServeMode mode, int listen_fd, const char* source, const char* http)
        : mode_(mode), listen_fd_(listen_fd), source_(source), http_(http) {}

    int run(const std::atomic<bool>& stop) {
        int rc = ring_.init(4096);
        if (rc < 0) {
            std::fprintf(stderr, "tpbench: io_uring setup: %s\n", std::strerror(-rc));
            return 1;
        }
        rc = bufs_.init(ring_.get(), 1, kBufCount, kBufSize);
        if (rc < 0) {
            std::fprintf(stderr, "tpbench: provided buffer ring: %s\n", std::strerror(-rc));
            return 1;
        }
        arm_accept();
        while (!stop.load(std::memory_order_relaxed)) {
            ring_.submit_and_wait(100'000'000);
            unsigned seen = 0;
            unsigned head;
            io_uring_cqe* cqe;
            io_uring_for_each_cqe(ring_.get(), head, cqe) {
                handle(cqe);
                ++seen;
            }
            io_uring_cq_advance(ring_.get(), seen);
            bufs_.commit();
            if (!starved_.empty() && recycled_) {
                std::vector<uint32_t> retry;
                retry.swap(starved_);
                for (uint32_t slot : retry) {
                    conns_[slot].starved = false;
                    arm_recv(slot);
                }
            }
            recycled_ = false;
        }
        for (Conn& c : conns_) {
            if (c.fd >= 0) {
                ::shutdown(c.fd, SHUT_RDWR);
                ::close(c.fd);
            }
        }
        return 0;
    }

  private:
    void arm_accept() {
        io_uring_sqe* s = ring_.sqe();
        io_uring_prep_multishot_accept(s, listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
        io_uring_sqe_set_data64(s, pack(Op::Accept, 0));
    }
    void arm_recv(uint32_t slot) {
        io_uring_sqe* s = ring_.sqe();
        if (mode_ == ServeMode::Sink) {
            // Discarded bytes: every connection of the thread receives into one large scratch
            // (no buffer selection, no recycling; fewer, larger receives).
            io_uring_prep_recv(s, conns_[slot].fd, sink_.data(), sink_.size(), 0);
        } else if (mode_ == ServeMode::Echo) {
            // One receive for the connection's life: no re-submission and no poll re-arm per
            // request; buffers queue per connection while their echo is being sent.
            io_uring_prep_recv_multishot(s, conns_[slot].fd, nullptr, 0, 0);
            s->flags |= IOSQE_BUFFER_SELECT;
            s->buf_group = bufs_.bgid();
            conns_[slot].recv_armed = true;
        } else {
            io_uring_prep_recv(s, conns_[slot].fd, nullptr, kBufSize, 0);
            s->flags |= IOSQE_BUFFER_SELECT;
            s->buf_group = bufs_.bgid();
        }
        io_uring_sqe_set_data64(s, pack(Op::Recv, slot));
    }
    void arm_send(uint32_t slot, const void* p, size_t n) {
        io_uring_sqe* s = ring_.sqe();
        io_uring_prep_send(s, conns_[slot].fd, p, n, MSG_NOSIGNAL);
        io_uring_sqe_set_data64(s, pack(Op::Send, slot));
    }
    void recycle(int bid) {
        bufs_.recycle(static_cast<unsigned>(bid));
        recycled_ = true;
    }

    // ---- echo (multishot receive, per-connection queue of buffers) ----
    void echo_send_head(uint32_t slot) {
        Conn& c = conns_[slot];
        const int bid = c.q_head;
        c.send_inflight = true;
        arm_send(slot, bufs_.buf(static_cast<unsigned>(bid)) + c.off,
                 bid_len_[static_cast<size_t>(bid)] - c.off);
    }
    void echo_begin_close(uint32_t slot) {
        Conn& c = conns_[slot];
        if (!c.closing) {
            c.closing = true;
            ::shutdown(c.fd, SHUT_RDWR);  // ends the multishot receive and any send
        }
        echo_maybe_finish(slot);
    }
    void echo_maybe_finish(uint32_t slot) {
        Conn& c = conns_[slot];
        if (!c.closing || c.recv_armed || c.send_inflight) {
            return;
        }
        for (int bid = c.q_head; bid >= 0;) {
            const int next = next_bid_[static_cast<size_t>(bid)];
            recycle(bid);
            bid = next;
        }
        if (c.starved) {
            std::erase(starved_, slot);
        }
        ::close(c.fd);
        c = Conn{};
        free_.push_back(slot);
    }
    void echo_recv(uint32_t slot, io_uring_cqe* cqe) {
        Conn& c = conns_[slot];
        const int res = cqe->res;
        if (res > 0) {
            const int bid = static_cast<int>(cqe->flags >> IORING_CQE_BUFFER_SHIFT);
            bid_len_[static_cast<size_t>(bid)] = static_cast<uint32_t>(res);
            next_bid_[static_cast<size_t>(bid)] = -1;
            if (c.closing) {
                recycle(bid);
            } else if (c.q_tail < 0) {
                c.q_head = c.q_tail = bid;
                c.off = 0;
                echo_send_head(slot);
            } else {
                next_bid_[static_cast<size_t>(c.q_tail)] = bid;
                c.q_tail = bid;
            }
        } else if (cqe->flags & IORING_CQE_F_BUFFER) {
            recycle(static_cast<int>(cqe->flags >> IORING_CQE_BUFFER_SHIFT));
        }
        if (cqe->flags & IORING_CQE_F_MORE) {
            return;
        }
        c.recv_armed = false;
        if (c.closing) {
            echo_maybe_finish(slot);
        } else if (res == -ENOBUFS) {
            c.starved = true;
            starved_.push_back(slot);
        } else if (res > 0) {
            arm_recv(slot);  // the kernel ended the multishot for its own reasons: re-arm
        } else {
            echo_begin_close(slot);  // EOF or error
        }
    }
    void echo_sent(uint32_t slot, int res) {
        Conn& c = conns_[slot];
        c.send_inflight = false;
        if (res <= 0 || c.closing) {
            echo_begin_close(slot);
            return;
        }
        c.off += static_cast<uint32_t>(res);
        const int bid = c.q_head;
        if (c.off < bid_len_[static_cast<size_t>(bid)]) {
            echo_send_head(slot);
            return;
        }
        c.q_head = next_bid_[static_cast<size_t>(bid)];
        if (c.q_head < 0) {
            c.q_tail = -1;
        }
        recycle(bid);
        c.off = 0;
        if (c.q_head >= 0) {
            echo_send_head(slot);
        }
    }

    void close_conn(uint32_t slot) {
        Conn& c = conns_[slot];
        ::close(c.fd);
        c = Conn{};
        free_.push_back(slot);
    }

    void start(int fd) {
        uint32_t slot;
        if (!free_.empty()) {
            slot = free_.back();
            free_.pop_back();
        } else {
            slot = static_cast<uint32_t>(conns_.size());
            conns_.emplace_back();
        }
        conns_[slot].fd = fd;
        set_nodelay(fd);
        if (mode_ == ServeMode::Source) {
            arm_send(slot, source_, kSourceChunk);
        } else {
            arm_recv(slot);
        }
    }

    // Counts complete requests ("\r\n\r\n" terminators) across receive boundaries.
    static int count_requests(Conn& c, const char* p, int n) {
        static constexpr char kEnd[] = "\r\n\r\n";
        int found = 0;
        for (int i = 0; i < n; ++i) {
            if (p[i] == kEnd[c.http_match]) {
                if (++c.http_match == 4) {
                    ++found;
                    c.http_match = 0;
                }
            } else {
                c.http_match = p[i] == '\r' ? 1 : 0;
            }
        }
        return found;
    }

    void send_http(uint32_t slot) {
        Conn& c = conns_[slot];
        const size_t n = c.http_left < kHttpLen * kHttpBatch ? c.http_left : kHttpLen * kHttpBatch;
        arm_send(slot, http_, n);
    }

    void handle(io_uring_cqe* cqe) {
        const uint64_t ud = io_uring_cqe_get_data64(cqe);
        const int res = cqe->res;
        if (op_of(ud) == Op::Accept) {
            if (res >= 0) {
                start(res);
            }
            if (!(cqe->flags & IORING_CQE_F_MORE)) {
                arm_accept();
            }
            return;
        }
        const uint32_t slot = slot_of(ud);
        Conn& c = conns_[slot];
        if (mode_ == ServeMode::Echo) {
            if (op_of(ud) == Op::Recv) {
                echo_recv(slot, cqe);
            } else {
                echo_sent(slot, res);
            }
            return;
        }
        if (op_of(ud) == Op::Recv) {
            if (res == -ENOBUFS) {
                starved_.push_back(slot);
                return;
            }
            if (res <= 0) {
                if (cqe->flags & IORING_CQE_F_BUFFER) {
                    recycle(static_cast<int>(cqe->flags >> IORING_CQE_BUFFER_SHIFT));
                }
                close_conn(slot);
                return;
            }
            if (mode_ == ServeMode::Sink) {
                arm_recv(slot);
                return;
            }
            const int bid = static_cast<int>(cqe->flags >> IORING_CQE_BUFFER_SHIFT);
            switch (mode_) {
                case ServeMode::Http: {
                    const int reqs = count_requests(c, bufs_.buf(static_cast<unsigned>(bid)), res);
                    recycle(bid);
                    if (reqs == 0) {
                        arm_recv(slot);
                        return;
                    }
                    c.http_left = static_cast<uint64_t>(reqs) * kHttpLen;
                    send_http(slot);
                    return;
                }
                default:
                    recycle(bid);
                    arm_recv(slot);
                    return;
            }
        }
        // Send completion.
        if (res <= 0) {
            close_conn(slot);
            return;
        }
        switch (mode_) {
            case ServeMode::Http:
                // A short send restarts at the same phase of the repeating block, so the offset
                // into it is the bytes sent modulo one response.
                c.http_left -= static_cast<uint64_t>(res);
                if (c.http_left > 0) {
                    const size_t skip = (kHttpLen - c.http_left % kHttpLen) % kHttpLen;
                    const size_t room = kHttpLen * kHttpBatch - skip;
                    io_uring_sqe* s = ring_.sqe();
                    io_uring_prep_send(s, c.fd, http_ + skip,
                                       c.http_left < room ? c.http_left : room, MSG_NOSIGNAL);
                    io_uring_sqe_set_data64(s, pack(Op::Send, slot));
                    return;
                }
                arm_recv(slot);
                return;
            default:
                arm_send(slot, source_, kSourceChunk);
                return;
        }
    }

    ServeMode mode_;
    int listen_fd_;
    const char* source_;
    const char* http_;
    Ring ring_;
    BufRing bufs_;
    std::vector<Conn> conns_;
    std::vector<uint32_t> free_;
    std::vector<uint32_t> starved_;
    std::vector<char> sink_ = std::vector<char>(kSinkChunk);
    std::vector<int> next_bid_ = std::vector<int>(kBufCount, -1);  // echo queue links
    std::vector<uint32_t> bid_len_ = std::vector<uint32_t>(kBufCount, 0);
    bool recycled_ = false;
};

}  // namespace

int run_serve(const ServeOptions& opt, const std::atomic<bool>& stop) {
    SockAddr addr = opt.listen;
    std::vector<UniqueFd> listeners;
    for (int i = 0; i < opt.threads; ++i) {
        const int fd = listen_socket(addr, 4096);
        if (fd < 0) {
            std::fprintf(stderr, "tpbench: cannot listen on %s: %s\n", format_addr(addr).c_str(),
                         std::strerror(-fd));
            return 1;
        }
        listeners.emplace_back(fd);
        if (i == 0) {
            // Port 0: every further listener joins the port the first one got.
            SockAddr bound;
            bound.len = sizeof bound.ss;
            getsockname(fd, reinterpret_cast<sockaddr*>(&bound.ss), &bound.len);
            addr = bound;
        }
    }
    // Shared read-only payloads: the source stream and a block of back-to-back HTTP responses.
    std::vector<char> source(kSourceChunk, 'x');
    std::string http;
    for (int i = 0; i < kHttpBatch; ++i) {
        http += kHttpResponse;
    }
    std::fprintf(stderr, "tpbench: serve %s listening on %s (%d thread%s)\n", mode_name(opt.mode),
                 format_addr(addr).c_str(), opt.threads, opt.threads == 1 ? "" : "s");
    std::vector<std::thread> threads;
    std::vector<int> rcs(static_cast<size_t>(opt.threads), 0);
    for (int i = 0; i < opt.threads; ++i) {
        threads.emplace_back([&, i] {
            if (!opt.cpus.empty()) {
                pin_this_thread(opt.cpus[static_cast<size_t>(i) % opt.cpus.size()]);
            }
            ServeWorker w(opt.mode, listeners[static_cast<size_t>(i)].get(), source.data(),
                          http.data());
            rcs[static_cast<size_t>(i)] = w.run(stop);
        });
    }
    for (auto& t : threads) {
        t.join();
    }
    for (int rc : rcs) {
        if (rc != 0) {
            return rc;
        }
    }
    return 0;
}

}  // namespace tp::bench

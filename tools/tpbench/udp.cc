// tpbench UDP: a SO_REUSEPORT echo/sink server per thread, and a client whose flows are
// connected UDP sockets. Payloads of 16 bytes or more carry (send time, sequence) so round
// trips are measured per datagram, not per batch.
#include "tools/tpbench/udp.h"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <thread>

namespace tp::bench {

namespace {
constexpr int kBatch = 64;
constexpr size_t kMaxDgram = 65536;

int udp_socket(int family) {
    int fd = socket(family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd >= 0) {
        int big = 4 << 20;
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &big, sizeof big);
    }
    return fd;
}

void serve_thread(int fd, bool echo, const std::atomic<bool>& stop) {
    std::vector<uint8_t> bufs(static_cast<size_t>(kBatch) * kMaxDgram);
    mmsghdr msgs[kBatch];
    iovec iov[kBatch];
    sockaddr_storage names[kBatch];
    timeval tv{0, 200'000};  // wake to notice `stop`
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    while (!stop.load(std::memory_order_relaxed)) {
        for (int i = 0; i < kBatch; ++i) {
            iov[i] = {bufs.data() + static_cast<size_t>(i) * kMaxDgram, kMaxDgram};
            msgs[i] = {};
            msgs[i].msg_hdr.msg_iov = &iov[i];
            msgs[i].msg_hdr.msg_iovlen = 1;
            msgs[i].msg_hdr.msg_name = &names[i];
            msgs[i].msg_hdr.msg_namelen = sizeof names[i];
        }
        int n = recvmmsg(fd, msgs, kBatch, MSG_WAITFORONE, nullptr);
        if (n <= 0 || !echo) {
            continue;
        }
        for (int i = 0; i < n; ++i) {
            iov[i].iov_len = msgs[i].msg_len;  // each datagram goes back as it came
        }
        for (int off = 0; off < n;) {
            int m = sendmmsg(fd, msgs + off, static_cast<unsigned>(n - off), 0);
            if (m <= 0) {
                break;  // full buffers: drop the rest, as a network would
            }
            off += m;
        }
    }
}

struct Flow {
    int fd = -1;
    int in_flight = 0;
    uint64_t oldest_ns = 0;  // closed loop: send time of the oldest datagram in flight
};

struct ThreadOut {
    uint64_t sent = 0, received = 0, send_errors = 0, timeouts = 0;
    Histogram rtt;
};

void client_thread(const UdpOptions& o, std::vector<int> fds, double rate, uint64_t start_ns,
                   uint64_t end_ns, ThreadOut& out) {
    std::vector<Flow> flows(fds.size());
    std::vector<pollfd> pfds(fds.size());
    for (size_t i = 0; i < fds.size(); ++i) {
        flows[i].fd = fds[i];
        pfds[i] = {fds[i], POLLIN, 0};
    }
    std::vector<uint8_t> tx(o.size, 0x5a);
    std::vector<uint8_t> rx(kMaxDgram);
    uint64_t seq = 0;
    const bool stamped = o.size >= 16;
    const double interval_ns = rate > 0 ? 1e9 / rate : 0;
    double next_send = static_cast<double>(start_ns);
    size_t rr = 0;  // open loop: round robin over flows
    auto send_one = [&](Flow& f, uint64_t now) {
        if (stamped) {
            std::memcpy(tx.data(), &now, 8);
            std::memcpy(tx.data() + 8, &seq, 8);
        }
        ++seq;
        if (send(f.fd, tx.data(), tx.size(), MSG_DONTWAIT) < 0) {
            ++out.send_errors;
            return false;
        }
        ++out.sent;
        if (f.in_flight++ == 0) {
            f.oldest_ns = now;
        }
        return true;
    };
    for (;;) {
        uint64_t now = now_ns();
        if (now >= end_ns) {
            break;
        }
        if (rate > 0) {
            int burst = 0;
            while (next_send <= static_cast<double>(now) && burst < kBatch) {
                send_one(flows[rr++ % flows.size()], now);
                next_send += interval_ns;
                ++burst;
            }
        } else if (o.echo) {
            for (Flow& f : flows) {
                if (f.in_flight > 0 &&
                    now - f.oldest_ns > static_cast<uint64_t>(o.timeout_ms) * 1'000'000) {
                    out.timeouts += static_cast<uint64_t>(f.in_flight);  // presumed lost
                    f.in_flight = 0;
                }
                while (f.in_flight < o.window && send_one(f, now)) {
                }
            }
        } else {
            for (Flow& f : flows) {  // sink, no rate: as fast as the socket takes them
                send_one(f, now);
                f.in_flight = 0;
            }
        }
        if (!o.echo) {
            continue;
        }
        int timeout = rate > 0 ? 0 : 1;
        if (poll(pfds.data(), pfds.size(), timeout) <= 0) {
            continue;
        }
        for (size_t i = 0; i < pfds.size(); ++i) {
            if (!(pfds[i].revents & POLLIN)) {
                continue;
            }
            for (;;) {
                ssize_t n = recv(pfds[i].fd, rx.data(), rx.size(), MSG_DONTWAIT);
                if (n < 0) {
                    break;
                }
                ++out.received;
                uint64_t t = now_ns();
                if (stamped && n >= 16) {
                    uint64_t sent_at;
                    std::memcpy(&sent_at, rx.data(), 8);
                    if (sent_at >= start_ns && sent_at <= t) {
                        out.rtt.record(t - sent_at);
                    }
                }
                if (flows[i].in_flight > 0) {
                    --flows[i].in_flight;
                    flows[i].oldest_ns = t;  // approximate: the next one in flight is younger
                }
            }
        }
    }
    // Late echoes (up to 200 ms) still count as received: loss is what never came back.
    if (o.echo) {
        uint64_t grace = now_ns() + 200'000'000;
        while (now_ns() < grace) {
            if (poll(pfds.data(), pfds.size(), 20) <= 0) {
                continue;
            }
            for (auto& p : pfds) {
                while (p.revents & POLLIN && recv(p.fd, rx.data(), rx.size(), MSG_DONTWAIT) >= 0) {
                    ++out.received;
                }
            }
        }
    }
}
}  // namespace

int run_udp_serve(const UdpServeOptions& o, const std::atomic<bool>& stop) {
    std::vector<int> fds;
    SockAddr addr = o.listen;
    for (int t = 0; t < o.threads; ++t) {
        int fd = udp_socket(addr.family());
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
        if (fd < 0 || bind(fd, addr.sa(), addr.len) != 0) {
            std::fprintf(stderr, "tpbench: cannot listen on %s (udp): %s\n",
                         format_addr(addr).c_str(), std::strerror(errno));
            return 1;
        }
        if (t == 0) {  // port 0: every thread shares the port the first one got
            addr.len = sizeof addr.ss;
            getsockname(fd, reinterpret_cast<sockaddr*>(&addr.ss), &addr.len);
        }
        fds.push_back(fd);
    }
    std::fprintf(stderr, "tpbench: serve %s listening on %s (%d thread%s)\n",
                 o.echo ? "udp-echo" : "udp-sink", format_addr(addr).c_str(), o.threads,
                 o.threads == 1 ? "" : "s");
    std::vector<std::thread> ts;
    for (int t = 0; t < o.threads; ++t) {
        ts.emplace_back([&, t] {
            if (!o.cpus.empty()) {
                pin_this_thread(o.cpus[static_cast<size_t>(t) % o.cpus.size()]);
            }
            serve_thread(fds[static_cast<size_t>(t)], o.echo, stop);
        });
    }
    for (auto& t : ts) {
        t.join();
    }
    for (int fd : fds) {
        close(fd);
    }
    return 0;
}

UdpResult run_udp(const UdpOptions& o) {
    UdpResult r;
    std::vector<int> fds;
    for (int i = 0; i < o.flows; ++i) {
        int fd = udp_socket(o.target.family());
        if (fd < 0 || connect(fd, o.target.sa(), o.target.len) != 0) {
            std::fprintf(stderr, "tpbench: udp socket/connect: %s\n", std::strerror(errno));
            if (fd >= 0) {
                close(fd);
            }
            break;
        }
        fds.push_back(fd);
    }
    if (fds.empty()) {
        return r;
    }
    int threads = std::max(1, std::min<int>(o.threads, static_cast<int>(fds.size())));
    std::vector<ThreadOut> outs(static_cast<size_t>(threads));
    uint64_t start = now_ns() + 50'000'000;  // threads start together
    uint64_t end = start + static_cast<uint64_t>(o.duration_s * 1e9);
    std::vector<std::thread> ts;
    for (int t = 0; t < threads; ++t) {
        std::vector<int> mine;
        for (size_t k = static_cast<size_t>(t); k < fds.size(); k += static_cast<size_t>(threads)) {
            mine.push_back(fds[k]);
        }
        ts.emplace_back([&, t, mine] {
            if (!o.cpus.empty()) {
                pin_this_thread(o.cpus[static_cast<size_t>(t) % o.cpus.size()]);
            }
            while (now_ns() < start) {
            }
            client_thread(o, mine, o.rate / threads, start, end, outs[static_cast<size_t>(t)]);
        });
    }
    for (auto& t : ts) {
        t.join();
    }
    r.elapsed_s = o.duration_s;
    for (auto& x : outs) {
        r.sent += x.sent;
        r.received += x.received;
        r.send_errors += x.send_errors;
        r.timeouts += x.timeouts;
        r.rtt.merge(x.rtt);
    }
    for (int fd : fds) {
        close(fd);
    }
    return r;
}

void print_udp(std::FILE* f, const UdpOptions& o, const std::string& target, const UdpResult& r,
               bool json) {
    double el = r.elapsed_s > 0 ? r.elapsed_s : 1;
    double pps_sent = static_cast<double>(r.sent) / el;
    double pps_recv = static_cast<double>(r.received) / el;
    double gbit = static_cast<double>(o.echo ? r.received : r.sent) * o.size * 8 / el / 1e9;
    double loss = r.sent && o.echo
                      ? 100.0 * static_cast<double>(r.sent - std::min(r.sent, r.received)) /
                            static_cast<double>(r.sent)
                      : 0;
    auto us = [&](double q) { return static_cast<double>(r.rtt.percentile(q)) / 1000.0; };
    if (json) {
        std::fprintf(f,
                     "{\"workload\":\"udp\",\"target\":\"%s\",\"flows\":%d,\"size\":%u,"
                     "\"duration_s\":%.3f,\"rate\":%.0f,\"echo\":%s,\"sent\":%" PRIu64
                     ",\"received\":%" PRIu64 ",\"send_errors\":%" PRIu64
                     ",\"pps_sent\":%.0f,\"pps_received\":%.0f,\"gbit_s\":%.4f,\"loss_pct\":%.4f,"
                     "\"rtt_us\":{\"p50\":%.1f,\"p90\":%.1f,\"p99\":%.1f,\"p999\":%.1f,"
                     "\"max\":%.1f,\"count\":%" PRIu64 "}}\n",
                     target.c_str(), o.flows, o.size, el, o.rate, o.echo ? "true" : "false", r.sent,
                     r.received, r.send_errors, pps_sent, pps_recv, gbit, loss, us(0.5), us(0.9),
                     us(0.99), us(0.999), static_cast<double>(r.rtt.max()) / 1000.0, r.rtt.count());
        return;
    }
    std::fprintf(f, "udp %s: %d flows, %u-byte datagrams, %.1f s%s\n", target.c_str(), o.flows,
                 o.size, el, o.echo ? " (echo)" : " (sink)");
    std::fprintf(f, "  sent      %" PRIu64 " (%.0f pkt/s), send errors %" PRIu64 "\n", r.sent,
                 pps_sent, r.send_errors);
    if (o.echo) {
        std::fprintf(f, "  received  %" PRIu64 " (%.0f pkt/s), loss %.3f%%\n", r.received, pps_recv,
                     loss);
        std::fprintf(f, "  rtt us    p50 %.1f  p90 %.1f  p99 %.1f  p99.9 %.1f  max %.1f\n", us(0.5),
                     us(0.9), us(0.99), us(0.999), static_cast<double>(r.rtt.max()) / 1000.0);
    }
    std::fprintf(f, "  payload   %.3f Gbit/s\n", gbit);
}

}  // namespace tp::bench

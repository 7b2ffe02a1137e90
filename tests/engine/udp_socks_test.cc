// SOCKS5 UDP ASSOCIATE through Engine in-process on loopback (no root, no timing asserted),
// against a scripted SOCKS5 server in a thread that answers each handshake message in pieces
// and names an unspecified relay address (0.0.0.0: "my own address"). A client datagram
// reaches the relay behind the header naming its destination; the answer comes back to the
// client; fragments, malformed headers and strangers' datagrams are dropped and counted; the
// server closing the control connection ends the flow with no descriptor left behind.
// Datagrams beyond the queue while the association is pending are dropped and counted;
// refusals, bad credentials, a mute server (handshake timeout) and a closed port fail the
// association by cause; `pipeline` sends greeting, credentials and request in one write.
#include <arpa/inet.h>
#include <dirent.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "engine/engine.h"
#include "tests/engine/test_util.h"

namespace tp::engine {
namespace {
using namespace test;

using Bytes = std::vector<uint8_t>;

// Reads exactly n bytes (bounded wait); false on EOF or timeout.
bool read_n(int fd, uint8_t* p, size_t n) {
    size_t got = 0;
    while (got < n) {
        pollfd pf{fd, POLLIN, 0};
        if (poll(&pf, 1, 3000) <= 0) {
            return false;
        }
        ssize_t r = recv(fd, p + got, n - got, 0);
        if (r <= 0) {
            return false;
        }
        got += static_cast<size_t>(r);
    }
    return true;
}

// Sends `b` in two writes with a pause between, so the client's reads see it split.
void send_split(int fd, const Bytes& b, size_t at) {
    at = std::min(at, b.size());
    send(fd, b.data(), at, MSG_NOSIGNAL);
    std::this_thread::sleep_for(std::chrono::milliseconds(15));
    send(fd, b.data() + at, b.size() - at, MSG_NOSIGNAL);
}

// One sendmsg with UDP_SEGMENT: the kernel sends `b` as datagrams of `seg` bytes (the last may
// be shorter); on loopback a receiver with UDP_GRO gets them in one read.
void send_gso(int fd, const Bytes& b, size_t seg, const sockaddr* to, socklen_t to_len) {
    iovec iov{const_cast<uint8_t*>(b.data()), b.size()};
    alignas(cmsghdr) char ctl[CMSG_SPACE(sizeof(uint16_t))] = {};
    msghdr mh{};
    mh.msg_name = const_cast<sockaddr*>(to);
    mh.msg_namelen = to_len;
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    mh.msg_control = ctl;
    mh.msg_controllen = sizeof ctl;
    cmsghdr* cm = CMSG_FIRSTHDR(&mh);
    cm->cmsg_level = SOL_UDP;
    cm->cmsg_type = UDP_SEGMENT;
    cm->cmsg_len = CMSG_LEN(sizeof(uint16_t));
    uint16_t s16 = static_cast<uint16_t>(seg);
    std::memcpy(CMSG_DATA(cm), &s16, sizeof s16);
    EXPECT_EQ(sendmsg(fd, &mh, 0), static_cast<ssize_t>(b.size())) << std::strerror(errno);
}

// A scripted SOCKS5 server: one control connection, one UDP relay socket.
struct FakeSocks {
    bool auth = false;                // expect username "u" / password "pw"
    uint8_t auth_status = 0;          // RFC 1929 status to answer
    uint8_t rep = 0;                  // REP of the UDP ASSOCIATE reply
    std::atomic<bool> release{true};  // answer the ASSOCIATE request only once set
    std::atomic<bool> close_ctl{false};
    std::atomic<int> relayed{0};  // datagrams received on the relay
    // GSO mode: no fragment/malformed noise; each received datagram's size is recorded, and once
    // `gso_after` have come, their answers go back in one UDP_SEGMENT send (one segment each).
    int gso_after = 0;
    std::vector<size_t> sizes;
    std::vector<Bytes> held;
    std::atomic<bool> request_ok{false};
    std::string last_payload;
    Bytes last_header;
    int tcp = -1, udp = -1;
    std::thread thread;
    std::atomic<bool> stop{false};

    void start() {
        tcp = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        plan::SockAddr a = loopback(0);
        EXPECT_EQ(bind(tcp, a.get(), a.len), 0);
        EXPECT_EQ(listen(tcp, 4), 0);
        udp = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        EXPECT_EQ(bind(udp, a.get(), a.len), 0);
        thread = std::thread([this] { run(); });
    }
    ~FakeSocks() {
        stop = true;
        if (thread.joinable()) {
            thread.join();
        }
        close(tcp);
        close(udp);
    }
    uint16_t port() const { return local_port(tcp); }

    void run() {
        pollfd pf{tcp, POLLIN, 0};
        int c = -1;
        while (!stop && c < 0) {
            if (poll(&pf, 1, 50) > 0) {
                c = accept4(tcp, nullptr, nullptr, SOCK_CLOEXEC);
            }
        }
        if (c < 0) {
            return;
        }
        uint8_t g[3];
        bool ok = read_n(c, g, 3) && g[0] == 5 && g[1] == 1 && g[2] == (auth ? 2 : 0);
        if (ok) {
            send_split(c, {5, g[2]}, 1);
        }
        if (ok && auth) {
            uint8_t h[2], user[255], plen, pass[255];
            ok = read_n(c, h, 2) && read_n(c, user, h[1]) && read_n(c, &plen, 1) &&
                 read_n(c, pass, plen) && std::string(reinterpret_cast<char*>(user), h[1]) == "u" &&
                 std::string(reinterpret_cast<char*>(pass), plen) == "pw";
            send_split(c, {1, auth_status}, 1);
            ok = ok && auth_status == 0;
        }
        uint8_t req[10];
        ok = ok && read_n(c, req, 10);
        request_ok = ok && req[0] == 5 && req[1] == 3 && req[3] == 1 &&
                     Bytes(req + 4, req + 10) == Bytes(6, 0);  // 0.0.0.0:0
        while (ok && !release && !stop) {
            std::this_thread::sleep_for(std::chrono::milliseconds(5));
        }
        uint16_t up = local_port(udp);
        // BND.ADDR 0.0.0.0: the client must use the address it reached us at.
        if (ok) {
            send_split(c,
                       {5, rep, 0, 1, 0, 0, 0, 0, static_cast<uint8_t>(up >> 8),
                        static_cast<uint8_t>(up & 0xFF)},
                       3);
        }
        while (!stop && !close_ctl) {
            pollfd p{udp, POLLIN, 0};
            if (poll(&p, 1, 20) <= 0) {
                continue;
            }
            uint8_t buf[2048];
            sockaddr_in from{};
            socklen_t len = sizeof from;
            ssize_t n = recvfrom(udp, buf, sizeof buf, 0, reinterpret_cast<sockaddr*>(&from), &len);
            if (n < 10) {
                continue;
            }
            ++relayed;
            if (gso_after > 0) {
                sizes.push_back(static_cast<size_t>(n));
                Bytes answer(buf, buf + 10);
                std::string text = "pong:";
                answer.insert(answer.end(), text.begin(), text.end());
                answer.insert(answer.end(), buf + 10, buf + n);
                held.push_back(answer);
                if (held.size() == static_cast<size_t>(gso_after)) {
                    Bytes all;
                    for (const Bytes& h : held) {
                        all.insert(all.end(), h.begin(), h.end());
                    }
                    send_gso(udp, all, held[0].size(), reinterpret_cast<sockaddr*>(&from), len);
                    held.clear();
                }
                continue;
            }
            last_header.assign(buf, buf + 10);
            last_payload.assign(reinterpret_cast<char*>(buf) + 10, static_cast<size_t>(n) - 10);
            // First a fragment and a malformed header (both dropped), then the answer from the
            // destination the header named.
            Bytes frag(buf, buf + 10);
            frag[2] = 1;
            frag.push_back('F');
            Bytes bad(buf, buf + 10);
            bad[0] = 1;
            bad.push_back('B');
            Bytes answer(buf, buf + 10);
            std::string text = "pong:" + last_payload;
            answer.insert(answer.end(), text.begin(), text.end());
            for (const Bytes* d : {&frag, &bad, &answer}) {
                sendto(udp, d->data(), d->size(), 0, reinterpret_cast<sockaddr*>(&from), len);
            }
            // A stranger (not the relay) with a well-formed header: dropped too.
            int other = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
            sendto(other, answer.data(), answer.size(), 0, reinterpret_cast<sockaddr*>(&from), len);
            close(other);
        }
        if (c >= 0) {
            close(c);  // the association ends with this connection
        }
        while (!stop) {
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
    }
};

// A UDP listener on loopback whose flows go to 127.0.0.1:`dst_port` (fixed target), routed
// for that port to a socks5 upstream with udp: true.
plan::Plan socks_plan(uint16_t dst_port, uint16_t socks_port, bool auth, bool pipeline = false) {
    plan::Plan p;
    p.workers = 1;
    p.buffers_per_worker = 64;
    plan::Listener l;
    l.name = "u";
    l.address = loopback(0);
    l.protocol = plan::Protocol::udp;
    l.target = plan::UpstreamTarget::fixed;
    l.upstream_address = loopback(dst_port);
    l.timeouts.handshake_ms = 5'000;
    plan::Upstream up;
    up.name = "s";
    up.kind = plan::UpstreamKind::socks5;
    up.address = loopback(socks_port);
    up.udp = true;
    up.pipeline = pipeline;
    if (auth) {
        up.username = "u";
        up.password = "pw";
    }
    l.upstreams.push_back(up);
    plan::Route r;
    r.ports.emplace_back(dst_port, dst_port);
    r.upstream = 0;
    l.routes.push_back(r);
    p.listeners.push_back(l);
    return p;
}

uint16_t listener_port(Engine& e) {
    return ntohs(
        reinterpret_cast<const sockaddr_in*>(&e.listening_addresses()[0].storage)->sin_port);
}

std::string recv_text(int fd) {
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, 3000) <= 0) {
        return "";
    }
    char buf[2048];
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    return n > 0 ? std::string(buf, static_cast<size_t>(n)) : "";
}

void send_text(int fd, uint16_t port, const std::string& s) {
    plan::SockAddr to = loopback(port);
    sendto(fd, s.data(), s.size(), 0, to.get(), to.len);
}

size_t udp_drop(const StatsSnapshot& s, UdpDrop d) {
    return s.udp.dropped[static_cast<size_t>(d)];
}
size_t udp_end(const StatsSnapshot& s, UdpEnd e) {
    return s.udp.ended[static_cast<size_t>(e)];
}

TEST(UdpSocks, RelaysThroughTheAssociationAndEndsWithItsControlConnection) {
    FakeSocks fs;
    fs.auth = true;
    fs.start();
    const uint16_t dst = 5399;  // nothing listens there: only the relay answers for it
    auto e = Engine::start(socks_plan(dst, fs.port(), true));
    ASSERT_TRUE(e) << e.error().what;
    Engine& eng = *e.value();
    int c = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    size_t fds0 = open_fds();
    send_text(c, listener_port(eng), "ping");
    EXPECT_EQ(recv_text(c), "pong:ping");
    EXPECT_TRUE(fs.request_ok) << "UDP ASSOCIATE request was not 5 3 0 1 0.0.0.0:0";
    EXPECT_EQ(fs.last_header, Bytes({0, 0, 0, 1, 127, 0, 0, 1, dst >> 8, dst & 0xFF}));
    // A second datagram on the same flow uses the same association.
    send_text(c, listener_port(eng), "again");
    EXPECT_EQ(recv_text(c), "pong:again");
    EXPECT_TRUE(eventually([&] {
        StatsSnapshot s = eng.stats();
        return udp_drop(s, UdpDrop::socks_fragment) == 2 &&
               udp_drop(s, UdpDrop::socks_malformed) == 4;  // bad header + stranger, twice
    }));
    StatsSnapshot s = eng.stats();
    EXPECT_EQ(s.udp.socks_flows, 1u);
    EXPECT_EQ(s.udp.flows_created, 1u);
    EXPECT_EQ(s.udp.dgrams_up, 2u);
    EXPECT_EQ(s.udp.bytes_up, 9u);  // payload only, not the SOCKS header

    fs.close_ctl = true;
    EXPECT_TRUE(eventually([&] { return udp_end(eng.stats(), UdpEnd::socks_closed) == 1; }));
    EXPECT_EQ(eng.stats().udp.flows_active, 0u);
    // The flow's UDP socket and the control connection are closed; the fake server's own
    // connection (closed on its side) is gone as well.
    EXPECT_TRUE(eventually([&] { return open_fds() <= fds0; }))
        << open_fds() << " descriptors, " << fds0 << " before the flow";
    close(c);
    eng.drain(std::chrono::milliseconds(1000));
}

// Datagrams that travel in GSO batches (a client sending with UDP_SEGMENT, a relay answering so)
// each keep their own SOCKS header both ways: never one header for the batch, never merged.
TEST(UdpSocks, GsoBatchesKeepOneHeaderPerDatagram) {
    FakeSocks fs;
    fs.gso_after = 5;  // the warm-up and the four
    fs.start();
    const uint16_t dst = 5394;
    auto e = Engine::start(socks_plan(dst, fs.port(), false));
    ASSERT_TRUE(e) << e.error().what;
    Engine& eng = *e.value();
    int c = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    send_text(c, listener_port(eng), "warm-up-..");  // 10 bytes, as the four
    // Then four 10-byte datagrams in one UDP_SEGMENT send.
    std::string four = "aaaaaaaaaabbbbbbbbbbccccccccccdddddddddd";
    plan::SockAddr to = loopback(listener_port(eng));
    send_gso(c, Bytes(four.begin(), four.end()), 10, to.get(), to.len);
    std::vector<std::string> got;
    for (int i = 0; i < 5; ++i) {
        got.push_back(recv_text(c));
    }
    EXPECT_EQ(fs.sizes, std::vector<size_t>(5, 20u)) << "header (10) + 10 bytes each";
    EXPECT_EQ(got,
              (std::vector<std::string>{"pong:warm-up-..", "pong:aaaaaaaaaa", "pong:bbbbbbbbbb",
                                        "pong:cccccccccc", "pong:dddddddddd"}));
    // A datagram counts when its send completes, which the worker may reap a moment after the
    // client already has it.
    EXPECT_TRUE(eventually([&] { return eng.stats().udp.dgrams_down >= 5; }));
    EXPECT_EQ(eng.stats().udp.dgrams_up, 5u);
    EXPECT_EQ(eng.stats().udp.dgrams_down, 5u);
    close(c);
    eng.drain(std::chrono::milliseconds(1000));
}

TEST(UdpSocks, PipelinedGreetingCredentialsAndRequest) {
    FakeSocks fs;  // it reads by message length, so one write of all three is fine
    fs.auth = true;
    fs.start();
    auto e = Engine::start(socks_plan(5395, fs.port(), true, true));
    ASSERT_TRUE(e) << e.error().what;
    int c = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    send_text(c, listener_port(*e.value()), "p");
    EXPECT_EQ(recv_text(c), "pong:p");
    EXPECT_TRUE(fs.request_ok);
    close(c);
    e.value()->drain(std::chrono::milliseconds(1000));
}

TEST(UdpSocks, HoldsABoundedQueueUntilTheAssociationIsReady) {
    FakeSocks fs;
    fs.release = false;
    fs.start();
    const uint16_t dst = 5398;
    auto e = Engine::start(socks_plan(dst, fs.port(), false));
    ASSERT_TRUE(e) << e.error().what;
    Engine& eng = *e.value();
    int c = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    for (int i = 0; i < 10; ++i) {
        send_text(c, listener_port(eng), "q" + std::to_string(i));
    }
    EXPECT_TRUE(eventually([&] { return udp_drop(eng.stats(), UdpDrop::socks_queue) == 2; }));
    fs.release = true;
    EXPECT_TRUE(eventually([&] { return fs.relayed == 8; })) << fs.relayed;
    std::vector<std::string> got;
    for (int i = 0; i < 8; ++i) {
        got.push_back(recv_text(c));
    }
    EXPECT_EQ(got.front(), "pong:q0");  // in order, the first ones kept
    EXPECT_EQ(got.back(), "pong:q7");
    close(c);
    eng.drain(std::chrono::milliseconds(1000));
}

TEST(UdpSocks, RefusalsFailTheAssociationByCause) {
    struct Case {
        bool auth;
        uint8_t auth_status;
        uint8_t rep;
        hs::Cause cause;
    };
    for (Case k : {Case{true, 1, 0, hs::Cause::socks_auth_refused},
                   Case{false, 0, 7, hs::Cause::socks_cmd_unsupported},
                   Case{false, 0, 2, hs::Cause::socks_not_allowed}}) {
        FakeSocks fs;
        fs.auth = k.auth;
        fs.auth_status = k.auth_status;
        fs.rep = k.rep;
        fs.start();
        auto e = Engine::start(socks_plan(5397, fs.port(), k.auth));
        ASSERT_TRUE(e) << e.error().what;
        Engine& eng = *e.value();
        int c = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        send_text(c, listener_port(eng), "x");
        EXPECT_TRUE(eventually([&] {
            StatsSnapshot s = eng.stats();
            return s.udp.socks_failed[static_cast<size_t>(k.cause)] == 1 &&
                   udp_end(s, UdpEnd::socks_failed) == 1 && s.udp.flows_active == 0;
        })) << hs::cause_name(k.cause);
        close(c);
        eng.drain(std::chrono::milliseconds(1000));
    }
    // A server that never answers the request: the handshake timeout fails it.
    {
        FakeSocks fs;
        fs.release = false;
        fs.start();
        plan::Plan p = socks_plan(5394, fs.port(), false);
        p.listeners[0].timeouts.handshake_ms = 200;
        auto e = Engine::start(p);
        ASSERT_TRUE(e) << e.error().what;
        int c = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        send_text(c, listener_port(*e.value()), "x");
        EXPECT_TRUE(eventually([&] {
            StatsSnapshot s = e.value()->stats();
            return s.udp.socks_failed[static_cast<size_t>(hs::Cause::timeout)] == 1 &&
                   s.udp.flows_active == 0;
        }));
        close(c);
        e.value()->drain(std::chrono::milliseconds(1000));
    }
    // Nobody listening: the connect fails, counted apart.
    int probe = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    plan::SockAddr a = loopback(0);
    ASSERT_EQ(bind(probe, a.get(), a.len), 0);
    uint16_t closed_port = local_port(probe);  // bound, never listening: connects are refused
    auto e = Engine::start(socks_plan(5396, closed_port, false));
    ASSERT_TRUE(e) << e.error().what;
    int c = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    send_text(c, listener_port(*e.value()), "x");
    EXPECT_TRUE(eventually([&] { return e.value()->stats().udp.socks_connect_failed == 1; }));
    close(c);
    close(probe);
    e.value()->drain(std::chrono::milliseconds(1000));
}

}  // namespace
}  // namespace tp::engine

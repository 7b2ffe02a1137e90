// The UDP relay in-process on loopback through Engine (no root, no timing asserted): a `both`
// listener serves TCP and UDP on one port; a reload with the same listener, or with new UDP
// settings only (changed in place), keeps live flows and their upstream mapping; a reload that
// needs new sockets (udp -> both) ends a non-transparent listener's flows (their replies left
// through its socket) and the new sockets serve new flows; an invalid UDP plan is refused.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <string>
#include <thread>

#include "engine/engine.h"
#include "tests/engine/test_util.h"

namespace tp::engine {
namespace {
using namespace test;

uint16_t port_of(const sockaddr_in& s) {
    return ntohs(s.sin_port);
}

// UDP echo server that answers "PAYLOAD|SOURCE-PORT".
class UdpEcho {
  public:
    UdpEcho() {
        fd_ = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        plan::SockAddr a = loopback(0);
        EXPECT_EQ(bind(fd_, a.get(), a.len), 0);
        sockaddr_in s{};
        socklen_t len = sizeof s;
        getsockname(fd_, reinterpret_cast<sockaddr*>(&s), &len);
        port_ = port_of(s);
        thread_ = std::thread([this] { run(); });
    }
    ~UdpEcho() {
        stop_ = true;
        thread_.join();
        close(fd_);
    }
    uint16_t port() const { return port_; }

  private:
    void run() {
        char buf[70000];
        while (!stop_) {
            pollfd p{fd_, POLLIN, 0};
            if (poll(&p, 1, 50) <= 0) {
                continue;
            }
            sockaddr_in from{};
            socklen_t len = sizeof from;
            ssize_t n =
                recvfrom(fd_, buf, sizeof buf - 16, 0, reinterpret_cast<sockaddr*>(&from), &len);
            if (n < 0) {
                continue;
            }
            std::string out(buf, static_cast<size_t>(n));
            out += "|" + std::to_string(port_of(from));
            sendto(fd_, out.data(), out.size(), 0, reinterpret_cast<sockaddr*>(&from), len);
        }
    }
    int fd_ = -1;
    uint16_t port_ = 0;
    std::atomic<bool> stop_{false};
    std::thread thread_;
};

// One client socket: send, wait (bounded) for the answer; "" on timeout.
std::string ask(int fd, uint16_t port, const std::string& msg) {
    plan::SockAddr to = loopback(port);
    sendto(fd, msg.data(), msg.size(), 0, to.get(), to.len);
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, 3000) <= 0) {
        return "";
    }
    char buf[70000];
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    return n > 0 ? std::string(buf, static_cast<size_t>(n)) : "";
}

int udp_client() {
    return socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
}

plan::Plan udp_plan(uint16_t upstream_port, plan::Protocol proto) {
    plan::Plan p;
    p.workers = 1;
    p.buffers_per_worker = 64;
    plan::Listener l;
    l.name = "u";
    l.address = loopback(0);
    l.protocol = proto;
    l.target = plan::UpstreamTarget::fixed;
    l.upstream_address = loopback(upstream_port);
    p.listeners.push_back(l);
    return p;
}

TEST(UdpEngine, BothServesTcpAndUdpOnOnePort) {
    UdpEcho echo;
    auto e = Engine::start(udp_plan(echo.port(), plan::Protocol::both));
    ASSERT_TRUE(e) << e.error().what;
    uint16_t port =
        ntohs(reinterpret_cast<const sockaddr_in*>(&e.value()->listening_addresses()[0].storage)
                  ->sin_port);
    int c = udp_client();
    std::string got = ask(c, port, "ping");
    EXPECT_EQ(got.substr(0, 5), "ping|");
    close(c);
    // TCP on the same port: the connection is accepted (the upstream refuses: no TCP server).
    int t = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    plan::SockAddr a = loopback(port);
    EXPECT_EQ(connect(t, a.get(), a.len), 0);
    close(t);
    EXPECT_TRUE(eventually([&] { return e.value()->stats().accepted == 1; }));
    EXPECT_EQ(e.value()->stats().udp.flows_created, 1u);
    e.value()->drain(std::chrono::milliseconds(2000));
    EXPECT_EQ(e.value()->stats().udp.flows_active, 0u);
}

TEST(UdpEngine, ReloadKeepsFlowsOfAnUnchangedListener) {
    UdpEcho echo;
    // The TCP port the change to `both` below binds must stay free meanwhile: other processes'
    // connections may take any ephemeral port. A bound SO_REUSEPORT socket keeps it ours, and
    // the engine's listener joins its group.
    int reserve = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    ASSERT_EQ(setsockopt(reserve, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one), 0);
    plan::SockAddr any = loopback(0);
    ASSERT_EQ(bind(reserve, any.get(), any.len), 0);
    sockaddr_in bound{};
    socklen_t bound_len = sizeof bound;
    ASSERT_EQ(getsockname(reserve, reinterpret_cast<sockaddr*>(&bound), &bound_len), 0);
    plan::Plan p = udp_plan(echo.port(), plan::Protocol::udp);
    p.listeners[0].address = loopback(ntohs(bound.sin_port));
    auto e = Engine::start(p);
    ASSERT_TRUE(e) << e.error().what;
    Engine& eng = *e.value();
    uint16_t port = ntohs(
        reinterpret_cast<const sockaddr_in*>(&eng.listening_addresses()[0].storage)->sin_port);
    int c = udp_client();
    std::string first = ask(c, port, "a");
    ASSERT_EQ(first.substr(0, 2), "a|");
    ASSERT_TRUE(eng.update(p));  // same listener, port 0 = keep
    std::string second = ask(c, port, "b");
    ASSERT_EQ(second.substr(0, 2), "b|");
    EXPECT_EQ(first.substr(2), second.substr(2)) << "the upstream mapping changed across reload";
    EXPECT_EQ(eng.stats().udp.flows_created, 1u);
    EXPECT_EQ(eng.stats().udp.flows_active, 1u);
    // The listener's own counters (metrics by listener) say the same, across the reload.
    ASSERT_EQ(eng.stats().listeners.size(), 1u);
    EXPECT_TRUE(eng.stats().listeners[0].udp);
    EXPECT_EQ(eng.stats().listeners[0].udp_flows, 1u);
    EXPECT_EQ(eng.stats().listeners[0].udp_active, 1u);

    // New UDP settings only: changed in place, the flow and its mapping stay.
    p.listeners[0].udp.idle_ms = 30'000;
    ASSERT_TRUE(eng.update(p));
    std::string kept = ask(c, port, "k");
    ASSERT_EQ(kept.substr(0, 2), "k|");
    EXPECT_EQ(first.substr(2), kept.substr(2)) << "an in-place change lost the mapping";
    EXPECT_EQ(eng.stats().udp.flows_created, 1u);

    // New sockets (udp -> both): the non-transparent listener's flows end, new ones work.
    p.listeners[0].protocol = plan::Protocol::both;
    p.listeners[0].address = loopback(port);
    auto r = eng.update(p);
    ASSERT_TRUE(r) << r.error().what << ": " << std::strerror(r.error().code);
    EXPECT_TRUE(eventually(
        [&] { return eng.stats().udp.ended[static_cast<size_t>(UdpEnd::shutdown)] == 1; }));
    std::string third = ask(c, port, "c");
    EXPECT_EQ(third.substr(0, 2), "c|");
    EXPECT_EQ(eng.stats().udp.flows_created, 2u);
    close(c);
    eng.drain(std::chrono::milliseconds(2000));
    close(reserve);
}

TEST(UdpEngine, InvalidUdpPlansAreRefused) {
    plan::Plan p = udp_plan(9, plan::Protocol::udp);
    p.listeners[0].udp.max_datagram = 65'508;
    EXPECT_FALSE(Engine::start(p));
    p = udp_plan(9, plan::Protocol::udp);
    p.listeners[0].udp.max_flows_per_worker = 0;
    EXPECT_FALSE(Engine::start(p));
    p = udp_plan(9, plan::Protocol::udp);
    p.udp_reply_sockets_per_worker = 0;
    EXPECT_FALSE(Engine::start(p));
}

}  // namespace
}  // namespace tp::engine

// The whole engine in-process on loopback: byte-exact relay through real workers (with a
// buffer ring small enough to run dry), reload adding and removing listeners, a fixed upstream
// that is our own listener refused, graceful drain. No timing is asserted.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <random>
#include <thread>
#include <vector>

#include "engine/engine.h"
#include "tests/engine/test_util.h"

namespace tp::engine {
namespace {
using namespace test;

// Echo server: every connection echoes until EOF, then half-closes.
class EchoServer {
  public:
    EchoServer() {
        fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        plan::SockAddr a = loopback(0);
        EXPECT_EQ(bind(fd_, a.get(), a.len), 0);
        EXPECT_EQ(listen(fd_, 128), 0);
        socklen_t len = sizeof a.storage;
        getsockname(fd_, reinterpret_cast<sockaddr*>(&a.storage), &len);
        port_ = a.port();
        thread_ = std::thread([this] { run(); });
    }
    ~EchoServer() {
        stop_ = true;
        shutdown(fd_, SHUT_RDWR);
        thread_.join();
        for (auto& t : conns_) {
            t.join();
        }
        close(fd_);
    }
    uint16_t port() const { return port_; }

  private:
    void run() {
        while (!stop_) {
            int c = accept(fd_, nullptr, nullptr);
            if (c < 0) {
                return;
            }
            conns_.emplace_back([c] {
                char buf[65536];
                for (;;) {
                    ssize_t n = recv(c, buf, sizeof buf, 0);
                    if (n <= 0) {
                        break;
                    }
                    for (ssize_t off = 0; off < n;) {
                        ssize_t w = send(c, buf + off, static_cast<size_t>(n - off), MSG_NOSIGNAL);
                        if (w <= 0) {
                            close(c);
                            return;
                        }
                        off += w;
                    }
                }
                shutdown(c, SHUT_WR);
                close(c);
            });
        }
    }
    int fd_ = -1;
    uint16_t port_ = 0;
    std::atomic<bool> stop_{false};
    std::thread thread_;
    std::vector<std::thread> conns_;
};

int connect_to(uint16_t port) {
    int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    plan::SockAddr a = loopback(port);
    if (connect(s, a.get(), a.len) != 0) {
        close(s);
        return -1;
    }
    return s;
}

// Sends `data`, half-closes, returns everything read until EOF (empty + *reset on a reset).
std::vector<uint8_t> talk(int s, const std::vector<uint8_t>& data, bool* reset = nullptr) {
    std::vector<uint8_t> got;
    size_t sent = 0;
    bool shut = data.empty();
    if (shut) {
        shutdown(s, SHUT_WR);
    }
    uint8_t buf[65536];
    for (;;) {
        pollfd p{s, static_cast<short>(POLLIN | (shut ? 0 : POLLOUT)), 0};
        if (poll(&p, 1, 20000) <= 0) {
            break;
        }
        if (!shut && (p.revents & POLLOUT)) {
            ssize_t w =
                send(s, data.data() + sent, data.size() - sent, MSG_NOSIGNAL | MSG_DONTWAIT);
            if (w > 0) {
                sent += static_cast<size_t>(w);
            }
            if (sent == data.size()) {
                shutdown(s, SHUT_WR);
                shut = true;
            }
        }
        if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
            ssize_t n = recv(s, buf, sizeof buf, MSG_DONTWAIT);
            if (n > 0) {
                got.insert(got.end(), buf, buf + n);
            } else if (n == 0) {
                break;
            } else if (errno != EAGAIN) {
                if (reset) {
                    *reset = errno == ECONNRESET;
                }
                break;
            }
        }
    }
    return got;
}

bool wait_idle(Engine& e) {
    for (int i = 0; i < 1000; ++i) {
        if (e.stats().active == 0) {
            return true;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return false;
}

plan::Plan base_plan(uint16_t upstream) {
    plan::Plan p;
    p.workers = 2;
    p.buffer_size = 4096;
    p.buffers_per_worker = 8;  // small: concurrent bulk transfers run the ring dry
    plan::Listener l;
    l.name = "a";
    l.address = loopback(0);
    l.target = plan::UpstreamTarget::fixed;
    l.upstream_address = loopback(upstream);
    p.listeners.push_back(l);
    return p;
}

TEST(EngineLoopback, ByteExactConcurrentWithADryBufferRing) {
    EchoServer echo;
    auto started = Engine::start(base_plan(echo.port()));
    if (!started) {
        GTEST_SKIP() << "engine could not start: " << std::strerror(started.error().code) << " ("
                     << started.error().what << ")";
    }
    Engine& e = *started.value();
    uint16_t port = e.listening_addresses()[0].port();
    ASSERT_NE(port, 0);
    constexpr int kConns = 16;
    std::vector<std::thread> clients;
    std::atomic<int> ok{0};
    for (int i = 0; i < kConns; ++i) {
        clients.emplace_back([&, i] {
            std::mt19937 rng(static_cast<unsigned>(i));
            std::vector<uint8_t> data(200'000 + static_cast<size_t>(i) * 1000);
            for (auto& b : data) {
                b = static_cast<uint8_t>(rng());
            }
            int s = connect_to(port);
            if (s < 0) {
                return;
            }
            if (talk(s, data) == data) {
                ++ok;
            }
            close(s);
        });
    }
    for (auto& t : clients) {
        t.join();
    }
    EXPECT_EQ(ok.load(), kConns);
    ASSERT_TRUE(wait_idle(e));
    StatsSnapshot st = e.stats();
    EXPECT_EQ(st.accepted, static_cast<uint64_t>(kConns));
    EXPECT_EQ(st.closed[static_cast<size_t>(CloseCause::normal)], static_cast<uint64_t>(kConns));
    EXPECT_EQ(st.accepted, st.active + st.closed_total());
    EXPECT_EQ(st.bytes_up, st.bytes_down);
    EXPECT_EQ(st.per_worker.size(), 2u);
    EXPECT_TRUE(e.drain(std::chrono::milliseconds(5000)));
}

TEST(EngineLoopback, FixedUpstreamOnOwnListenerIsRefused) {
    plan::Plan p = base_plan(1);
    p.listeners[0].address = loopback(0);
    auto started = Engine::start(p);
    if (!started) {
        GTEST_SKIP() << "engine could not start";
    }
    Engine& e = *started.value();
    uint16_t port = e.listening_addresses()[0].port();
    // Reload: the same listener now relays to itself.
    plan::Plan self = p;
    self.listeners[0].address = loopback(port);
    self.listeners[0].upstream_address = loopback(port);
    self.listeners[0].name = "self";
    ASSERT_TRUE(e.update(self).has_value());
    // Until the old listener's socket is retired a connection may still reach it (and its
    // refused upstream); retry until one reaches the new listener.
    uint64_t self_refused = 0;
    for (int i = 0; i < 200 && self_refused == 0; ++i) {
        int s = connect_to(port);
        if (s >= 0) {
            auto got = talk(s, std::vector<uint8_t>(10, 1));
            close(s);
            EXPECT_TRUE(got.empty());
        }
        ASSERT_TRUE(wait_idle(e));
        self_refused = e.stats().closed[static_cast<size_t>(CloseCause::self_connect)];
    }
    EXPECT_GE(self_refused, 1u);
    StatsSnapshot st = e.stats();
    EXPECT_EQ(st.accepted, st.active + st.closed_total());
    EXPECT_TRUE(e.drain(std::chrono::milliseconds(2000)));
}

TEST(EngineLoopback, ReloadAddsAndRemovesListeners) {
    EchoServer echo;
    plan::Plan p = base_plan(echo.port());
    auto started = Engine::start(p);
    if (!started) {
        GTEST_SKIP() << "engine could not start";
    }
    Engine& e = *started.value();
    uint16_t port_a = e.listening_addresses()[0].port();
    plan::Plan p2 = p;
    plan::Listener b = p.listeners[0];
    b.name = "b";
    p2.listeners.push_back(b);
    ASSERT_TRUE(e.update(p2).has_value());
    auto addrs = e.listening_addresses();
    ASSERT_EQ(addrs.size(), 2u);
    EXPECT_EQ(addrs[0].port(), port_a) << "an unchanged listener keeps its socket";
    uint16_t port_b = addrs[1].port();
    std::vector<uint8_t> msg = {1, 2, 3, 4, 5};
    int s = connect_to(port_b);
    ASSERT_GE(s, 0);
    EXPECT_EQ(talk(s, msg), msg);
    close(s);

    // Remove "a": its port stops accepting; "b" goes on.
    plan::Plan p3 = p2;
    p3.listeners.erase(p3.listeners.begin());
    ASSERT_TRUE(e.update(p3).has_value());
    bool refused = false;
    for (int i = 0; i < 500 && !refused; ++i) {
        int t = connect_to(port_a);
        refused = t < 0;
        if (t >= 0) {
            close(t);
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    EXPECT_TRUE(refused);
    s = connect_to(port_b);
    ASSERT_GE(s, 0);
    EXPECT_EQ(talk(s, msg), msg);
    close(s);
    ASSERT_TRUE(wait_idle(e));
    StatsSnapshot st = e.stats();
    EXPECT_EQ(st.accepted, st.active + st.closed_total());
    EXPECT_TRUE(e.drain(std::chrono::milliseconds(2000)));
}

TEST(EngineLoopback, BindFailureNamesTheListener) {
    int blocker = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    plan::SockAddr a = loopback(0);
    ASSERT_EQ(bind(blocker, a.get(), a.len), 0);
    ASSERT_EQ(listen(blocker, 1), 0);  // no SO_REUSEPORT: our bind must fail
    socklen_t len = sizeof a.storage;
    getsockname(blocker, reinterpret_cast<sockaddr*>(&a.storage), &len);
    plan::Plan p = base_plan(1);
    p.listeners[0].address = a;
    auto started = Engine::start(p);
    ASSERT_FALSE(started.has_value());
    EXPECT_EQ(started.error().code, EADDRINUSE);
    EXPECT_EQ(started.error().listener, 0);
    close(blocker);
}

TEST(EngineLoopback, DrainTimeoutClosesLiveConnections) {
    EchoServer echo;
    auto started = Engine::start(base_plan(echo.port()));
    if (!started) {
        GTEST_SKIP() << "engine could not start";
    }
    Engine& e = *started.value();
    uint16_t port = e.listening_addresses()[0].port();
    int s = connect_to(port);
    ASSERT_GE(s, 0);
    ASSERT_EQ(send(s, "x", 1, 0), 1);
    char c;
    ASSERT_EQ(recv(s, &c, 1, 0), 1);  // relayed and echoed: the connection is live
    EXPECT_FALSE(e.drain(std::chrono::milliseconds(200)));
    StatsSnapshot st = e.stats();
    EXPECT_EQ(st.active, 0u);
    EXPECT_EQ(st.closed[static_cast<size_t>(CloseCause::shutdown)], 1u);
    EXPECT_LE(recv(s, &c, 1, 0), 0);
    close(s);
}

}  // namespace
}  // namespace tp::engine

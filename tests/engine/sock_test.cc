// Socket helpers that need no privileges: v4-mapped unmapping, address text, and the
// self-connect test (exact listener, wildcard listener on a local address, other ports).
#include "engine/sock.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>

#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace tp::engine {
namespace {

plan::SockAddr v4(const char* ip, uint16_t port) {
    plan::SockAddr a;
    auto* s = reinterpret_cast<sockaddr_in*>(&a.storage);
    s->sin_family = AF_INET;
    s->sin_port = htons(port);
    inet_pton(AF_INET, ip, &s->sin_addr);
    a.len = sizeof(sockaddr_in);
    return a;
}

plan::SockAddr v6(const char* ip, uint16_t port) {
    plan::SockAddr a;
    auto* s = reinterpret_cast<sockaddr_in6*>(&a.storage);
    s->sin6_family = AF_INET6;
    s->sin6_port = htons(port);
    inet_pton(AF_INET6, ip, &s->sin6_addr);
    a.len = sizeof(sockaddr_in6);
    return a;
}

TEST(Sock, UnmapV4) {
    plan::SockAddr m = unmap_v4(v6("::ffff:192.0.2.7", 80));
    EXPECT_EQ(m.family(), AF_INET);
    EXPECT_EQ(format_addr(m), "192.0.2.7:80");
    EXPECT_EQ(unmap_v4(v6("2001:db8::1", 443)).family(), AF_INET6);
    EXPECT_EQ(format_addr(v6("2001:db8::1", 443)), "[2001:db8::1]:443");
}

TEST(Sock, SelfSetExactAndWildcard) {
    SelfSet s;
    s.add_listener(v4("192.0.2.1", 8080));
    s.add_listener(v6("::", 9000));
    s.load_local_addresses();
    EXPECT_TRUE(s.contains(v4("192.0.2.1", 8080)));
    EXPECT_TRUE(s.contains(v6("::ffff:192.0.2.1", 8080)));
    EXPECT_FALSE(s.contains(v4("192.0.2.1", 8081)));
    EXPECT_FALSE(s.contains(v4("198.51.100.9", 8080)));
    // Wildcard: any local address on that port is us; a remote one is an intercepted flow.
    EXPECT_TRUE(s.contains(v4("127.0.0.1", 9000)));
    EXPECT_TRUE(s.contains(v4("127.1.2.3", 9000)));
    EXPECT_TRUE(s.contains(v6("::1", 9000)));
    EXPECT_FALSE(s.contains(v4("203.0.113.5", 9000)));
    EXPECT_FALSE(s.contains(v6("2001:db8::99", 9000)));
    EXPECT_FALSE(s.contains(plan::SockAddr{}));
}

// tcprdr -T binds the client's address AND port. When that port is taken on the proxy itself
// (here: a listener of ours, whose port lies inside the usual ephemeral range), the upstream
// keeps the client's address with a kernel-chosen port instead of failing the connection.
// Without NAT the original destination is the accepted socket's local address: the listener's
// own on a listener bound to one address, the connected-to address on a wildcard listener.
TEST(Sock, OriginalDestinationWithoutNat) {
    for (const char* bind_ip : {"127.0.0.1", "0.0.0.0"}) {
        UniqueFd l(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
        ASSERT_TRUE(l.valid());
        plan::SockAddr a = v4(bind_ip, 0);
        ASSERT_EQ(bind(l.get(), a.get(), a.len), 0);
        ASSERT_EQ(listen(l.get(), 8), 0);
        plan::Listener lc;
        lc.address = local_addr(l.get());  // with the port the kernel chose, as the engine has it
        uint16_t port = ntohs(reinterpret_cast<const sockaddr_in*>(&lc.address.storage)->sin_port);
        UniqueFd c(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
        plan::SockAddr to = v4("127.0.0.1", port);
        ASSERT_EQ(connect(c.get(), to.get(), to.len), 0);
        UniqueFd s(accept4(l.get(), nullptr, nullptr, SOCK_CLOEXEC));
        ASSERT_TRUE(s.valid());
        plan::SockAddr orig;
        ASSERT_TRUE(original_destination(s.get(), lc, orig, peer_addr(s.get()))) << bind_ip;
        EXPECT_EQ(format_addr(orig), "127.0.0.1:" + std::to_string(port)) << bind_ip;
        plan::SockAddr again;
        ASSERT_TRUE(original_destination(s.get(), lc, again)) << bind_ip;  // peer not known
        EXPECT_EQ(format_addr(again), format_addr(orig)) << bind_ip;
    }
}

TEST(Sock, ClientPortTakenFallsBackToClientAddress) {
    if (geteuid() != 0) {
        GTEST_SKIP() << "IP_TRANSPARENT needs root";
    }
    UniqueFd l(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    ASSERT_TRUE(l.valid());
    int one = 1;
    setsockopt(l.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    plan::SockAddr any = v4("127.0.0.1", 0);
    ASSERT_EQ(bind(l.get(), any.get(), any.len), 0);
    ASSERT_EQ(listen(l.get(), 8), 0);
    sockaddr_in bound{};
    socklen_t blen = sizeof bound;
    ASSERT_EQ(getsockname(l.get(), reinterpret_cast<sockaddr*>(&bound), &blen), 0);
    uint16_t taken = ntohs(bound.sin_port);

    plan::SockAddr target = v4("127.0.0.1", taken);
    auto up =
        make_upstream(target, plan::SourceMode::client_port, v4("127.0.0.1", taken), 0, false);
    if (!up.has_value() && up.error().code == ENOPROTOOPT) {
        // qemu-user (the arm64 cross-build's test run) does not emulate IP_TRANSPARENT.
        GTEST_SKIP() << "IP_TRANSPARENT is not available here (" << up.error().what << ")";
    }
    ASSERT_TRUE(up.has_value()) << std::strerror(up.error().code) << " (" << up.error().what << ")";
    sockaddr_in src{};
    socklen_t slen = sizeof src;
    ASSERT_EQ(getsockname(up->get(), reinterpret_cast<sockaddr*>(&src), &slen), 0);
    EXPECT_EQ(src.sin_addr.s_addr, htonl(INADDR_LOOPBACK));
    EXPECT_NE(ntohs(src.sin_port), taken);

    // A free client port is kept exactly.
    plan::SockAddr free_port = v4("127.0.0.1", 0);
    UniqueFd probe(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    ASSERT_EQ(bind(probe.get(), free_port.get(), free_port.len), 0);
    ASSERT_EQ(getsockname(probe.get(), reinterpret_cast<sockaddr*>(&bound), &blen), 0);
    uint16_t port = ntohs(bound.sin_port);
    probe.reset();
    auto exact =
        make_upstream(target, plan::SourceMode::client_port, v4("127.0.0.1", port), 0, false);
    ASSERT_TRUE(exact.has_value());
    ASSERT_EQ(getsockname(exact->get(), reinterpret_cast<sockaddr*>(&src), &slen), 0);
    EXPECT_EQ(ntohs(src.sin_port), port);
}

}  // namespace
}  // namespace tp::engine

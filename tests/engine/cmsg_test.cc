// Parsing a multishot recvmsg buffer without sockets: the io_uring_recvmsg_out header, the
// sender's name, IP_ORIGDSTADDR / IPV6_ORIGDSTADDR (v4, v6 and v4-mapped), UDP_GRO and
// truncation.
#include "engine/cmsg.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <netinet/udp.h>

#include <cstring>
#include <vector>

namespace tp::engine {
namespace {

// Lays out a buffer as the kernel does for a template with `namelen` and `controllen`.
struct Built {
    std::vector<uint8_t> buf;
    msghdr mh{};
    int res = 0;
};

Built build(const void* name, socklen_t name_len, int level, int type, const void* data,
            size_t data_len, const std::string& payload, uint32_t real_len, bool trunc) {
    Built b;
    b.mh.msg_namelen = kNameLen;
    b.mh.msg_controllen = kListenerControlLen;
    size_t head = sizeof(io_uring_recvmsg_out) + b.mh.msg_namelen + b.mh.msg_controllen;
    b.buf.assign(head + payload.size(), 0);
    auto* o = reinterpret_cast<io_uring_recvmsg_out*>(b.buf.data());
    o->namelen = name_len;
    std::memcpy(b.buf.data() + sizeof *o, name, name_len);
    uint8_t* ctl = b.buf.data() + sizeof *o + b.mh.msg_namelen;
    if (data != nullptr) {
        auto* c = reinterpret_cast<cmsghdr*>(ctl);
        c->cmsg_level = level;
        c->cmsg_type = type;
        c->cmsg_len = CMSG_LEN(data_len);
        std::memcpy(CMSG_DATA(c), data, data_len);
        o->controllen = CMSG_SPACE(data_len);
    }
    o->payloadlen = real_len;
    o->flags = trunc ? MSG_TRUNC : 0;
    std::memcpy(b.buf.data() + head, payload.data(), payload.size());
    b.res = static_cast<int>(b.buf.size());
    return b;
}

sockaddr_in sin4(const char* ip, uint16_t port) {
    sockaddr_in s{};
    s.sin_family = AF_INET;
    s.sin_port = htons(port);
    inet_pton(AF_INET, ip, &s.sin_addr);
    return s;
}

sockaddr_in6 sin6(const char* ip, uint16_t port) {
    sockaddr_in6 s{};
    s.sin6_family = AF_INET6;
    s.sin6_port = htons(port);
    inet_pton(AF_INET6, ip, &s.sin6_addr);
    return s;
}

TEST(Cmsg, V4OrigDst) {
    sockaddr_in from = sin4("192.0.2.10", 40000);
    sockaddr_in dst = sin4("198.51.100.5", 53);
    Built b =
        build(&from, sizeof from, SOL_IP, IP_ORIGDSTADDR, &dst, sizeof dst, "query", 5, false);
    RecvView v;
    ASSERT_TRUE(parse_recvmsg(b.buf.data(), b.res, b.mh, v));
    ASSERT_NE(v.name, nullptr);
    EXPECT_EQ(v.namelen, sizeof from);
    EXPECT_EQ(std::memcmp(v.name, &from, sizeof from), 0);
    ASSERT_TRUE(v.has_origdst);
    ASSERT_EQ(v.origdst.family(), AF_INET);
    EXPECT_EQ(std::memcmp(&v.origdst.storage, &dst, sizeof dst), 0);
    EXPECT_EQ(std::string(reinterpret_cast<const char*>(v.payload), v.len), "query");
    EXPECT_FALSE(v.truncated);
}

TEST(Cmsg, V6OrigDst) {
    sockaddr_in6 from = sin6("2001:db8::10", 40000);
    sockaddr_in6 dst = sin6("2001:db8:1::5", 443);
    Built b =
        build(&from, sizeof from, SOL_IPV6, IPV6_ORIGDSTADDR, &dst, sizeof dst, "quic", 4, false);
    RecvView v;
    ASSERT_TRUE(parse_recvmsg(b.buf.data(), b.res, b.mh, v));
    ASSERT_TRUE(v.has_origdst);
    ASSERT_EQ(v.origdst.family(), AF_INET6);
    EXPECT_EQ(v.origdst.len, sizeof(sockaddr_in6));
    const auto* got = reinterpret_cast<const sockaddr_in6*>(&v.origdst.storage);
    EXPECT_EQ(std::memcmp(&got->sin6_addr, &dst.sin6_addr, 16), 0);
    EXPECT_EQ(got->sin6_port, htons(443));
    EXPECT_EQ(v.len, 4u);
}

TEST(Cmsg, V4MappedOrigDstIsUnmapped) {
    sockaddr_in6 from = sin6("::ffff:192.0.2.10", 40000);
    sockaddr_in6 dst = sin6("::ffff:203.0.113.7", 123);
    Built b =
        build(&from, sizeof from, SOL_IPV6, IPV6_ORIGDSTADDR, &dst, sizeof dst, "ntp", 3, false);
    RecvView v;
    ASSERT_TRUE(parse_recvmsg(b.buf.data(), b.res, b.mh, v));
    ASSERT_TRUE(v.has_origdst);
    ASSERT_EQ(v.origdst.family(), AF_INET);
    sockaddr_in want = sin4("203.0.113.7", 123);
    EXPECT_EQ(std::memcmp(&v.origdst.storage, &want, sizeof want), 0);
}

TEST(Cmsg, OtherControlMessagesAreNotOrigDst) {
    sockaddr_in from = sin4("192.0.2.10", 40000);
    int tos = 0x10;
    Built b = build(&from, sizeof from, SOL_IP, IP_TOS, &tos, sizeof tos, "x", 1, false);
    RecvView v;
    ASSERT_TRUE(parse_recvmsg(b.buf.data(), b.res, b.mh, v));
    EXPECT_FALSE(v.has_origdst);
    Built none = build(&from, sizeof from, 0, 0, nullptr, 0, "x", 1, false);
    ASSERT_TRUE(parse_recvmsg(none.buf.data(), none.res, none.mh, v));
    EXPECT_FALSE(v.has_origdst);
}

TEST(Cmsg, GroSegmentSize) {
    sockaddr_in from = sin4("192.0.2.10", 40000);
    int seg = 4;
    // Three datagrams of 4 bytes and a last one of 2, back to back.
    Built b =
        build(&from, sizeof from, SOL_UDP, UDP_GRO, &seg, sizeof seg, "aaaabbbbccccdd", 14, false);
    RecvView v;
    ASSERT_TRUE(parse_recvmsg(b.buf.data(), b.res, b.mh, v));
    EXPECT_FALSE(v.has_origdst);
    EXPECT_EQ(v.gro_size, 4u);
    EXPECT_EQ(v.len, 14u);
    EXPECT_EQ(v.dgrams(), 4u);
    EXPECT_EQ(v.dgram_max(), 4u);
    EXPECT_FALSE(v.truncated);
    // A GRO buffer of one segment is an ordinary datagram.
    seg = 20;
    Built one = build(&from, sizeof from, SOL_UDP, UDP_GRO, &seg, sizeof seg, "short", 5, false);
    ASSERT_TRUE(parse_recvmsg(one.buf.data(), one.res, one.mh, v));
    EXPECT_EQ(v.gro_size, 0u);
    EXPECT_EQ(v.dgrams(), 1u);
    EXPECT_EQ(v.dgram_max(), 5u);
    // Without the control message: one datagram whatever its length.
    Built none = build(&from, sizeof from, 0, 0, nullptr, 0, "aaaabbbb", 8, false);
    ASSERT_TRUE(parse_recvmsg(none.buf.data(), none.res, none.mh, v));
    EXPECT_EQ(v.gro_size, 0u);
    EXPECT_EQ(v.dgrams(), 1u);
}

TEST(Cmsg, TruncationIsReported) {
    sockaddr_in from = sin4("192.0.2.10", 40000);
    Built b = build(&from, sizeof from, 0, 0, nullptr, 0, "abc", 70000, true);
    RecvView v;
    ASSERT_TRUE(parse_recvmsg(b.buf.data(), b.res, b.mh, v));
    EXPECT_TRUE(v.truncated);
    EXPECT_EQ(v.len, 3u);
    EXPECT_EQ(v.full_len, 70000u);
}

TEST(Cmsg, ShortBufferIsRejected) {
    msghdr mh{};
    mh.msg_namelen = kNameLen;
    mh.msg_controllen = kListenerControlLen;
    std::vector<uint8_t> buf(sizeof(io_uring_recvmsg_out) + 4, 0);
    RecvView v;
    EXPECT_FALSE(parse_recvmsg(buf.data(), static_cast<int>(buf.size()), mh, v));
    EXPECT_FALSE(parse_recvmsg(buf.data(), -11, mh, v));
}

}  // namespace
}  // namespace tp::engine

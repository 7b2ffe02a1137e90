// The provided buffer ring on a real io_uring: receives take buffers from it, released buffers
// come back, and an empty ring makes the receive fail with ENOBUFS (never blocks or corrupts).
#include "engine/buf_ring.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "engine/ring.h"

namespace tp::engine {
namespace {

struct Completion {
    int res;
    unsigned flags;
};

Completion recv_one(Ring& ring, BufRing& bufs, int fd) {
    io_uring_sqe* sqe = ring.get_sqe();
    io_uring_prep_recv(sqe, fd, nullptr, bufs.buffer_size(), 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = bufs.group();
    io_uring_submit(ring.get());
    io_uring_cqe* cqe = nullptr;
    EXPECT_EQ(io_uring_wait_cqe(ring.get(), &cqe), 0);
    Completion c{cqe->res, cqe->flags};
    io_uring_cqe_seen(ring.get(), cqe);
    return c;
}

TEST(BufRing, RecycleThroughARealRing) {
    Ring ring;
    auto r = ring.init(64, 256);
    if (!r) {
        GTEST_SKIP() << "io_uring unavailable: " << std::strerror(r.error().code);
    }
    BufRing bufs;
    auto b = bufs.init(ring.get(), 1, 2, 64);  // two buffers of 64 bytes
    if (!b) {
        GTEST_SKIP() << "provided buffer rings unavailable: " << std::strerror(b.error().code);
    }
    ASSERT_EQ(bufs.count(), 2u);
    int sv[2];
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);

    unsigned used[2];
    for (int i = 0; i < 2; ++i) {
        char msg[8];
        std::snprintf(msg, sizeof msg, "m%d", i);
        ASSERT_EQ(write(sv[1], msg, 2), 2);
        Completion c = recv_one(ring, bufs, sv[0]);
        ASSERT_EQ(c.res, 2);
        ASSERT_TRUE(c.flags & IORING_CQE_F_BUFFER);
        used[i] = c.flags >> IORING_CQE_BUFFER_SHIFT;
        EXPECT_EQ(std::memcmp(bufs.addr(static_cast<uint16_t>(used[i])), msg, 2), 0);
    }
    EXPECT_NE(used[0], used[1]);

    // Both buffers are held: the ring is empty.
    ASSERT_EQ(write(sv[1], "xy", 2), 2);
    Completion empty = recv_one(ring, bufs, sv[0]);
    EXPECT_EQ(empty.res, -ENOBUFS);

    // One comes back; the pending bytes land in it.
    bufs.release(static_cast<uint16_t>(used[0]));
    EXPECT_EQ(bufs.flush(), 1);
    Completion again = recv_one(ring, bufs, sv[0]);
    ASSERT_EQ(again.res, 2);
    EXPECT_EQ(again.flags >> IORING_CQE_BUFFER_SHIFT, used[0]);
    EXPECT_EQ(std::memcmp(bufs.addr(static_cast<uint16_t>(used[0])), "xy", 2), 0);
    close(sv[0]);
    close(sv[1]);
}

TEST(BufRing, GrowsByChunksUpToItsMaximum) {
    Ring ring;
    if (!ring.init(8, 16)) {
        GTEST_SKIP() << "io_uring unavailable";
    }
    BufRing bufs;
    if (!bufs.init(ring.get(), 2, 600, 128, 1)) {  // max rounds up to 1024, starts one chunk
        GTEST_SKIP() << "provided buffer rings unavailable";
    }
    EXPECT_EQ(bufs.max_count(), 1024u);
    EXPECT_EQ(bufs.count(), 256u);
    int grown = 0;
    while (bufs.grow()) {
        ++grown;
    }
    bufs.flush();
    EXPECT_EQ(grown, 3);
    EXPECT_EQ(bufs.count(), 1024u);
    // Every buffer has its own memory: write each, read back.
    for (uint32_t b = 0; b < bufs.count(); ++b) {
        std::memset(bufs.addr(static_cast<uint16_t>(b)), static_cast<int>(b & 0xff), 128);
    }
    for (uint32_t b = 0; b < bufs.count(); ++b) {
        EXPECT_EQ(bufs.addr(static_cast<uint16_t>(b))[127], static_cast<uint8_t>(b & 0xff));
    }
}

TEST(Ring, ReportsItsMode) {
    Ring ring;
    auto r = ring.init(8, 16);
    if (!r) {
        GTEST_SKIP() << "io_uring unavailable";
    }
    EXPECT_STRNE(ring.mode_name(), "");
    // get_sqe never returns null: it submits when the queue is full.
    for (int i = 0; i < 40; ++i) {
        io_uring_sqe* sqe = ring.get_sqe();
        ASSERT_NE(sqe, nullptr);
        io_uring_prep_nop(sqe);
    }
    io_uring_submit(ring.get());
}

}  // namespace
}  // namespace tp::engine

// The relay state machine driven by synthetic events: every transition, checked through the
// actions it asks for and the in-flight accounting that decides when a slot may be freed.
#include "engine/relay.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>

#include <poll.h>

#include <cerrno>
#include <vector>

#include "engine/handshake/upstream.h"

namespace tp::engine {
namespace {

constexpr Side C = Side::client;
constexpr Side U = Side::upstream;

class RelayTest : public ::testing::Test {
  protected:
    void SetUp() override {
        plan::Timeouts t;
        t.connect_ms = 1000;
        t.idle_ms = 5000;
        t.half_closed_ms = 2000;
        r.init(t, BufChain{next_.data(), len_.data()});
    }

    // Counts actions of a type (and side, unless any_side).
    int count(ActionType type, Side side, bool any_side = false) const {
        int n = 0;
        for (const Action& a : out) {
            n += a.type == type && (any_side || a.side == side);
        }
        return n;
    }
    int count(ActionType type) const { return count(type, C, true); }
    // Buffers given back, one by one or as a chain.
    int released() const {
        int n = 0;
        for (const Action& a : out) {
            n += a.type == ActionType::release_buf     ? 1
                 : a.type == ActionType::release_chain ? static_cast<int>(a.len)
                                                       : 0;
        }
        return n;
    }
    const Action* find(ActionType type, Side side) const {
        for (const Action& a : out) {
            if (a.type == type && a.side == side) {
                return &a;
            }
        }
        return nullptr;
    }
    // The send asked for on `side`: which buffer, from where, how many bytes.
    void expect_send(Side side, uint16_t buf, uint32_t off, uint32_t len) const {
        const Action* s = find(ActionType::send, side);
        ASSERT_NE(s, nullptr);
        EXPECT_EQ(s->buf, buf);
        EXPECT_EQ(s->off, off);
        EXPECT_EQ(s->len, len);
    }
    const Action* find(ActionType type) const {
        for (const Action& a : out) {
            if (a.type == type) {
                return &a;
            }
        }
        return nullptr;
    }
    // The connection ended with `cause`, with every operation accounted for.
    void expect_finished(CloseCause cause) {
        const Action* f = find(ActionType::finish);
        ASSERT_NE(f, nullptr);
        EXPECT_EQ(f->cause, cause);
        EXPECT_EQ(&out.items[out.count - 1], f) << "finish must be the last action";
        EXPECT_EQ(r.phase(), Relay::Phase::done);
        EXPECT_EQ(r.ops_in_flight(C), 0);
        EXPECT_EQ(r.ops_in_flight(U), 0);
    }

    // accepted -> connect -> relaying, with recvs posted on both sides.
    void connected() {
        out.clear();
        r.on_start(0, StartOutcome::ok, out);
        out.clear();
        r.on_connect(10, 0, out);
        ASSERT_EQ(r.phase(), Relay::Phase::relaying);
        out.clear();
    }

    std::vector<uint16_t> next_ = std::vector<uint16_t>(65536);
    std::vector<uint32_t> len_ = std::vector<uint32_t>(65536);
    Relay r;
    Actions out;
};

TEST_F(RelayTest, StartConnectsAndReadsClientEarly) {
    r.on_start(0, StartOutcome::ok, out);
    EXPECT_EQ(count(ActionType::connect, U), 1);
    EXPECT_EQ(count(ActionType::recv, C), 1);
    const Action* t = find(ActionType::arm_timer);
    ASSERT_NE(t, nullptr);
    EXPECT_EQ(t->deadline_ms, 1000u);
    EXPECT_EQ(r.phase(), Relay::Phase::connecting);
    EXPECT_EQ(r.ops_in_flight(U), 1);
    EXPECT_EQ(r.ops_in_flight(C), 1);
}

TEST_F(RelayTest, RefusedStartsResetTheClientWithoutConnecting) {
    const StartOutcome outcomes[] = {StartOutcome::self_connect, StartOutcome::no_origdst,
                                     StartOutcome::error};
    const CloseCause causes[] = {CloseCause::self_connect, CloseCause::no_origdst,
                                 CloseCause::error};
    for (int i = 0; i < 3; ++i) {
        SetUp();
        out.clear();
        r.on_start(0, outcomes[i], out);
        EXPECT_EQ(count(ActionType::connect), 0);
        const Action* c = find(ActionType::close, C);
        ASSERT_NE(c, nullptr);
        EXPECT_TRUE(c->reset);
        EXPECT_EQ(count(ActionType::close, U), 0);  // no upstream socket exists
        expect_finished(causes[i]);
    }
}

TEST_F(RelayTest, ConnectedPostsUpstreamRecvAndIdleTimer) {
    r.on_start(0, StartOutcome::ok, out);
    out.clear();
    r.on_connect(10, 0, out);
    EXPECT_EQ(count(ActionType::recv, U), 1);
    EXPECT_EQ(count(ActionType::recv, C), 0);  // already posted at start
    const Action* t = find(ActionType::arm_timer);
    ASSERT_NE(t, nullptr);
    EXPECT_EQ(t->deadline_ms, 10u + 5000u);
}

TEST_F(RelayTest, EarlyClientDataIsSentOnceConnected) {
    r.on_start(0, StartOutcome::ok, out);
    out.clear();
    r.on_recv(5, C, 100, true, 7, out);
    EXPECT_EQ(count(ActionType::send), 0);  // not connected yet
    out.clear();
    r.on_connect(10, 0, out);
    const Action* s = find(ActionType::send, U);
    ASSERT_NE(s, nullptr);
    EXPECT_EQ(s->buf, 7);
    EXPECT_EQ(s->off, 0u);
    EXPECT_EQ(s->len, 100u);
    EXPECT_EQ(count(ActionType::recv, C), 0);  // backpressure: the buffer is not sent yet
}

TEST_F(RelayTest, BackpressureAndRecycle) {
    connected();
    r.on_recv(20, C, 1000, true, 3, out);
    EXPECT_EQ(count(ActionType::send, U), 1);
    EXPECT_EQ(count(ActionType::recv, C), 1) << "one receive overlaps the send";
    out.clear();
    r.on_recv(20, C, 500, true, 4, out);
    EXPECT_EQ(count(ActionType::send), 0) << "one send at a time";
    EXPECT_EQ(count(ActionType::recv, C), 0) << "both buffers held: no receive (backpressure)";
    EXPECT_EQ(r.ops_in_flight(C), 0);
    out.clear();
    r.on_send(21, U, 1000, out);
    const Action* rel = find(ActionType::release_buf);
    ASSERT_NE(rel, nullptr);
    EXPECT_EQ(rel->buf, 3);
    EXPECT_EQ(count(ActionType::recv, C), 1);
    const Action* s = find(ActionType::send, U);
    ASSERT_NE(s, nullptr);
    EXPECT_EQ(s->buf, 4);
    EXPECT_EQ(s->len, 500u);
}

TEST_F(RelayTest, PartialSendsContinueFromTheOffset) {
    connected();
    r.on_recv(20, U, 1000, true, 9, out);
    out.clear();
    r.on_send(21, C, 400, out);
    expect_send(C, 9, 400, 600);
    EXPECT_EQ(released(), 0);
    out.clear();
    r.on_send(22, C, 599, out);
    expect_send(C, 9, 999, 1);
    out.clear();
    r.on_send(23, C, 1, out);
    EXPECT_EQ(released(), 1);
    EXPECT_EQ(count(ActionType::send), 0);
    EXPECT_EQ(r.ops_in_flight(U), 1);  // the overlapping receive is still pending
}

TEST_F(RelayTest, SendThatWouldBlockIsRetriedNotTreatedAsFailure) {
    // A non-blocking socket (splice mode) can complete a send with -EAGAIN: same bytes again.
    connected();
    r.on_recv(20, U, 1000, true, 9, out);
    out.clear();
    r.on_send(21, C, 300, out);
    out.clear();
    int ops = r.ops_in_flight(C);
    r.on_send(22, C, -EAGAIN, out);
    expect_send(C, 9, 300, 700);
    EXPECT_EQ(released(), 0);
    EXPECT_EQ(count(ActionType::close, C, true), 0);
    EXPECT_EQ(r.ops_in_flight(C), ops);  // one send completed, one issued
    out.clear();
    r.on_send(23, C, 700, out);
    EXPECT_EQ(released(), 1);
}

TEST_F(RelayTest, SecondFinWhileFirstShutdownInFlightWaitsForIt) {
    connected();
    r.on_recv(20, C, 0, false, 0, out);  // shutdown(upstream) issued, not completed
    out.clear();
    r.on_recv(21, U, 0, false, 0, out);
    EXPECT_EQ(count(ActionType::shutdown, C), 1);
    out.clear();
    r.on_shutdown(U, 0, out);
    EXPECT_EQ(count(ActionType::finish), 0);
    r.on_shutdown(C, 0, out);
    expect_finished(CloseCause::normal);
}

TEST_F(RelayTest, HalfCloseClientFirstThenUpstream) {
    connected();
    r.on_recv(20, C, 0, false, 0, out);  // client FIN
    EXPECT_EQ(count(ActionType::shutdown, U), 1);
    EXPECT_TRUE(r.half_closed());
    out.clear();
    r.on_shutdown(U, 0, out);
    EXPECT_EQ(count(ActionType::finish), 0);
    // The other direction keeps flowing.
    r.on_recv(30, U, 50, true, 4, out);
    EXPECT_EQ(count(ActionType::send, C), 1);
    out.clear();
    r.on_send(31, C, 50, out);
    EXPECT_EQ(released(), 1);
    out.clear();
    r.on_recv(40, U, 0, false, 0, out);  // upstream FIN: close() sends the last FIN itself
    EXPECT_EQ(count(ActionType::shutdown), 0);
    const Action* cc = find(ActionType::close, C);
    const Action* cu = find(ActionType::close, U);
    ASSERT_TRUE(cc && cu);
    EXPECT_FALSE(cc->reset);
    EXPECT_FALSE(cu->reset);
    expect_finished(CloseCause::normal);
}

TEST_F(RelayTest, HalfCloseUpstreamFirstWaitsForPendingBytes) {
    connected();
    r.on_recv(20, U, 10, true, 2, out);  // bytes towards the client
    out.clear();
    r.on_send(21, C, 10, out);  // sent; the overlapping upstream recv is still pending
    EXPECT_EQ(r.ops_in_flight(U), 1);
    out.clear();
    r.on_recv(22, U, 0, false, 0, out);
    EXPECT_EQ(count(ActionType::shutdown, C), 1);
    out.clear();
    r.on_shutdown(C, 0, out);
    // Client still sends; it is relayed.
    r.on_recv(30, C, 5, true, 1, out);
    EXPECT_EQ(count(ActionType::send, U), 1);
    out.clear();
    r.on_send(31, U, 5, out);
    out.clear();
    r.on_recv(32, C, 0, false, 0, out);
    EXPECT_EQ(count(ActionType::shutdown), 0);
    expect_finished(CloseCause::normal);
}

TEST_F(RelayTest, ClientEofDuringConnectShutsUpstreamAfterEarlyData) {
    r.on_start(0, StartOutcome::ok, out);
    r.on_recv(1, C, 0, false, 0, out);
    out.clear();
    r.on_connect(5, 0, out);
    EXPECT_EQ(count(ActionType::shutdown, U), 1);
    EXPECT_EQ(count(ActionType::recv, U), 1);
}

TEST_F(RelayTest, SendFailureStillDeliversWhatTheFailedSideSent) {
    connected();
    r.on_recv(20, U, 100, true, 5, out);  // upstream -> client, send in flight
    r.on_recv(20, C, 30, true, 6, out);   // client -> upstream, send in flight
    out.clear();
    r.on_send(21, U, -ECONNRESET, out);  // the upstream is gone
    EXPECT_EQ(count(ActionType::cancel_recv, C), 1) << "client -> upstream is pointless now";
    EXPECT_EQ(count(ActionType::finish), 0);
    EXPECT_EQ(count(ActionType::close), 0);
    out.clear();
    // What the upstream sent before it failed is still read and delivered.
    r.on_recv(22, U, 20, true, 7, out);
    EXPECT_EQ(released(), 0);
    r.on_recv(23, C, -ECANCELED, false, 0, out);
    r.on_cancel_done(C, out);
    out.clear();
    r.on_send(24, C, 100, out);
    const Action* s = find(ActionType::send, C);
    ASSERT_NE(s, nullptr);
    EXPECT_EQ(s->buf, 7);
    EXPECT_EQ(count(ActionType::recv, U), 1);
    out.clear();
    r.on_recv(25, U, -ECONNRESET, false, 0, out);  // now the read fails too
    EXPECT_EQ(count(ActionType::finish), 0) << "buffer 7 is still being delivered";
    out.clear();
    r.on_send(26, C, 20, out);
    const Action* cc = find(ActionType::close, C);
    ASSERT_NE(cc, nullptr);
    EXPECT_TRUE(cc->reset);
    EXPECT_TRUE(cc->drain_first) << "the client's kernel queue must drain before the RST";
    expect_finished(CloseCause::upstream_reset);
}

TEST_F(RelayTest, ClientResetDropsBytesQueuedForIt) {
    connected();
    r.on_recv(20, U, 100, true, 5, out);  // send to client in flight, recv overlaps
    r.on_recv(21, U, 50, true, 6, out);   // queued
    out.clear();
    r.on_recv(22, C, -ECONNRESET, false, 0, out);    // client resets: nothing of its to deliver
    EXPECT_EQ(count(ActionType::cancel_all, C), 1);  // the send to it
    EXPECT_EQ(count(ActionType::cancel_all, U), 0);  // nothing in flight there
    out.clear();
    r.on_send(23, C, -ECANCELED, out);
    r.on_cancel_done(C, out);
    EXPECT_EQ(released(), 2);
    const Action* cu = find(ActionType::close, U);
    ASSERT_NE(cu, nullptr);
    EXPECT_TRUE(cu->reset);
    EXPECT_TRUE(cu->drain_first);
    expect_finished(CloseCause::client_reset);
}

TEST_F(RelayTest, ResetWhileWriteInFlight) {
    connected();
    r.on_recv(20, C, 100, true, 5, out);  // send to upstream in flight
    out.clear();
    r.on_recv(21, U, -ECONNRESET, false, 0, out);  // upstream resets meanwhile
    EXPECT_EQ(count(ActionType::cancel_all, U), 1) << "the in-flight write must be cancelled";
    EXPECT_EQ(count(ActionType::finish), 0);
    out.clear();
    r.on_send(22, U, -ECANCELED, out);
    EXPECT_EQ(released(), 1);
    EXPECT_EQ(count(ActionType::finish), 0);
    out.clear();
    r.on_cancel_done(U, out);
    EXPECT_EQ(count(ActionType::finish), 0);  // the overlapping client recv is cancelled too
    r.on_recv(23, C, -ECANCELED, false, 0, out);
    r.on_cancel_done(C, out);
    const Action* cc = find(ActionType::close, C);
    ASSERT_NE(cc, nullptr);
    EXPECT_TRUE(cc->reset);
    expect_finished(CloseCause::upstream_reset);
}

TEST_F(RelayTest, ClientResetBecomesUpstreamReset) {
    connected();
    r.on_recv(20, C, -ECONNRESET, false, 0, out);
    EXPECT_EQ(count(ActionType::cancel_all, U), 1);  // the upstream recv
    out.clear();
    r.on_recv(21, U, -ECANCELED, false, 0, out);
    EXPECT_EQ(count(ActionType::finish), 0);
    r.on_cancel_done(U, out);
    const Action* cu = find(ActionType::close, U);
    ASSERT_NE(cu, nullptr);
    EXPECT_TRUE(cu->reset);
    expect_finished(CloseCause::client_reset);
}

TEST_F(RelayTest, DataRacingACancelIsDropped) {
    connected();
    r.on_recv(20, C, -ECONNRESET, false, 0, out);
    out.clear();
    r.on_recv(21, U, 10, true, 8, out);  // completed before the cancel reached it
    const Action* rel = find(ActionType::release_buf);
    ASSERT_NE(rel, nullptr);
    EXPECT_EQ(rel->buf, 8);
    EXPECT_EQ(count(ActionType::send), 0);
    r.on_cancel_done(U, out);
    expect_finished(CloseCause::client_reset);
}

TEST_F(RelayTest, UpstreamRefusedResetsTheClient) {
    r.on_start(0, StartOutcome::ok, out);
    out.clear();
    r.on_connect(3, -ECONNREFUSED, out);
    EXPECT_EQ(count(ActionType::cancel_all, C), 1);  // the early client recv
    EXPECT_EQ(count(ActionType::finish), 0);
    out.clear();
    r.on_recv(4, C, -ECANCELED, false, 0, out);
    out.clear();
    r.on_cancel_done(C, out);
    const Action* cc = find(ActionType::close, C);
    ASSERT_NE(cc, nullptr);
    EXPECT_TRUE(cc->reset) << "refused upstream must be a reset, not EOF, for the client";
    EXPECT_NE(find(ActionType::close, U), nullptr);
    expect_finished(CloseCause::connect_failed);
}

TEST_F(RelayTest, CloseDuringConnectCleansUpTheUpstreamSocket) {
    r.on_start(0, StartOutcome::ok, out);
    out.clear();
    r.on_recv(3, C, -ECONNRESET, false, 0, out);  // the client goes away while connecting
    EXPECT_EQ(count(ActionType::cancel_all, U), 1);
    EXPECT_EQ(count(ActionType::finish), 0);
    out.clear();
    r.on_connect(4, -ECANCELED, out);
    EXPECT_EQ(count(ActionType::finish), 0);  // the cancel itself is still in flight
    r.on_cancel_done(U, out);
    EXPECT_NE(find(ActionType::close, U), nullptr);
    expect_finished(CloseCause::client_reset);
}

TEST_F(RelayTest, StopDuringConnect) {
    r.on_start(0, StartOutcome::ok, out);
    out.clear();
    r.on_stop(out);
    EXPECT_EQ(count(ActionType::cancel_all, U), 1);
    EXPECT_EQ(count(ActionType::cancel_all, C), 1);
    out.clear();
    r.on_connect(1, -ECANCELED, out);
    r.on_recv(1, C, -ECANCELED, false, 0, out);
    r.on_cancel_done(U, out);
    r.on_cancel_done(C, out);
    expect_finished(CloseCause::shutdown);
}

TEST_F(RelayTest, ConnectTimeout) {
    r.on_start(0, StartOutcome::ok, out);
    out.clear();
    r.on_timer(500, out);  // early tick: re-armed for the same deadline
    const Action* t = find(ActionType::arm_timer);
    ASSERT_NE(t, nullptr);
    EXPECT_EQ(t->deadline_ms, 1000u);
    out.clear();
    r.on_timer(1000, out);
    EXPECT_EQ(count(ActionType::cancel_all, U), 1);
    r.on_connect(1001, -ECANCELED, out);
    r.on_recv(1001, C, -ECANCELED, false, 0, out);
    r.on_cancel_done(U, out);
    r.on_cancel_done(C, out);
    const Action* cc = find(ActionType::close, C);
    ASSERT_NE(cc, nullptr);
    EXPECT_TRUE(cc->reset);
    expect_finished(CloseCause::connect_timeout);
}

TEST_F(RelayTest, IdleTimeoutCountsActivityEitherWay) {
    connected();  // idle deadline 5010
    r.on_recv(3000, U, 10, true, 1, out);
    r.on_send(3001, C, 10, out);
    out.clear();
    r.on_timer(5010, out);  // activity at 3001: not idle yet
    const Action* t = find(ActionType::arm_timer);
    ASSERT_NE(t, nullptr);
    EXPECT_EQ(t->deadline_ms, 3001u + 5000u);
    EXPECT_EQ(count(ActionType::cancel_all), 0);
    out.clear();
    r.on_timer(8001, out);
    EXPECT_EQ(count(ActionType::cancel_all), 2);
    r.on_recv(8002, C, -ECANCELED, false, 0, out);
    r.on_recv(8002, U, -ECANCELED, false, 0, out);
    r.on_cancel_done(C, out);
    r.on_cancel_done(U, out);
    expect_finished(CloseCause::idle_timeout);
}

TEST_F(RelayTest, HalfClosedTimeout) {
    connected();
    r.on_recv(100, C, 0, false, 0, out);  // client FIN: half-closed from now on
    const Action* t = find(ActionType::arm_timer);
    ASSERT_NE(t, nullptr);
    EXPECT_EQ(t->deadline_ms, 100u + 2000u);
    r.on_shutdown(U, 0, out);
    out.clear();
    r.on_timer(2100, out);
    EXPECT_EQ(count(ActionType::cancel_all, U), 1);  // the upstream recv
    r.on_recv(2101, U, -ECANCELED, false, 0, out);
    r.on_cancel_done(U, out);
    expect_finished(CloseCause::half_closed_timeout);
}

TEST_F(RelayTest, EmptyBufferRingRetriesLater) {
    connected();
    r.on_recv(20, U, -ENOBUFS, false, 0, out);
    EXPECT_EQ(count(ActionType::recv_later, U), 1);
    EXPECT_EQ(r.ops_in_flight(U), 1);  // still counted as in flight
    EXPECT_EQ(count(ActionType::finish), 0);
}

TEST_F(RelayTest, StopWhileRelaying) {
    connected();
    r.on_recv(20, C, 10, true, 1, out);
    out.clear();
    r.on_stop(out);
    r.on_send(21, U, -ECANCELED, out);
    r.on_recv(21, U, -ECANCELED, false, 0, out);
    r.on_recv(21, C, -ECANCELED, false, 0, out);
    r.on_cancel_done(U, out);
    r.on_cancel_done(C, out);
    EXPECT_EQ(released(), 1);
    expect_finished(CloseCause::shutdown);
}

TEST_F(RelayTest, ClientResetDuringConnectWithFullBuffersIsWatched) {
    r.on_start(0, StartOutcome::ok, out);
    r.on_recv(1, C, 10, true, 1, out);
    out.clear();
    r.on_recv(2, C, 10, true, 2, out);  // both buffers full: no recv can notice a reset
    EXPECT_EQ(count(ActionType::recv), 0);
    EXPECT_EQ(count(ActionType::watch, C), 1);
    out.clear();
    r.on_watch(POLLERR | POLLHUP, out);
    EXPECT_EQ(count(ActionType::cancel_all, U), 1);  // the connect
    r.on_connect(3, -ECANCELED, out);
    r.on_cancel_done(U, out);
    EXPECT_EQ(released(), 2);
    expect_finished(CloseCause::client_reset);
}

TEST_F(RelayTest, WatchIsCancelledOnceConnected) {
    r.on_start(0, StartOutcome::ok, out);
    r.on_recv(1, C, 10, true, 1, out);
    r.on_recv(2, C, 10, true, 2, out);
    out.clear();
    r.on_connect(3, 0, out);
    EXPECT_EQ(count(ActionType::cancel_watch, C), 1);
    EXPECT_EQ(count(ActionType::send, U), 1);
    r.on_watch(-ECANCELED, out);
    r.on_cancel_done(C, out);
    EXPECT_EQ(r.ops_in_flight(C), 0);
    EXPECT_EQ(r.phase(), Relay::Phase::relaying);
}

TEST_F(RelayTest, MultishotReceiveStaysArmed) {
    connected();
    EXPECT_EQ(r.ops_in_flight(U), 1);
    r.on_recv(20, U, 10, true, 1, /*more=*/true, out);
    EXPECT_EQ(count(ActionType::send, C), 1);
    EXPECT_EQ(count(ActionType::recv), 0) << "the multishot receive is still armed";
    EXPECT_EQ(r.ops_in_flight(U), 1);
    out.clear();
    r.on_send(21, C, 10, out);
    EXPECT_EQ(count(ActionType::recv), 0);
    EXPECT_EQ(released(), 1);
}

TEST_F(RelayTest, MultishotStoppedWhenQueueFullAndRearmedWhenDrained) {
    connected();
    r.on_recv(20, C, 100, true, 1, true, out);
    EXPECT_EQ(count(ActionType::cancel_recv), 0);
    out.clear();
    r.on_recv(21, C, 100, true, 2, true, out);
    EXPECT_EQ(count(ActionType::cancel_recv, C), 1) << "two buffers queued: stop receiving";
    out.clear();
    r.on_recv(22, C, 100, true, 3, true, out);  // landed before the stop took effect
    EXPECT_EQ(r.queued(C), 3);
    EXPECT_EQ(count(ActionType::cancel_recv), 0) << "one stop is enough";
    r.on_recv(23, C, -ECANCELED, false, 0, false, out);
    r.on_cancel_done(C, out);
    EXPECT_EQ(count(ActionType::recv), 0) << "still full";
    out.clear();
    // Drain in order: 1, 2, 3; the receive comes back once fewer than two are queued.
    r.on_send(24, U, 100, out);
    const Action* s = find(ActionType::send, U);
    ASSERT_NE(s, nullptr);
    EXPECT_EQ(s->buf, 2);
    EXPECT_EQ(count(ActionType::recv), 0);
    out.clear();
    r.on_send(25, U, 100, out);
    s = find(ActionType::send, U);
    ASSERT_NE(s, nullptr);
    EXPECT_EQ(s->buf, 3);
    EXPECT_EQ(count(ActionType::recv, C), 1);
    out.clear();
    r.on_send(26, U, 100, out);
    EXPECT_EQ(released(), 1);
    EXPECT_EQ(r.queued(C), 0);
}

TEST_F(RelayTest, TeardownReleasesEveryQueuedBuffer) {
    connected();
    r.on_recv(20, C, 100, true, 1, true, out);
    r.on_recv(21, C, 100, true, 2, true, out);
    r.on_recv(22, C, 100, true, 3, true, out);
    out.clear();
    r.on_stop(out);
    r.on_send(23, U, -ECANCELED, out);
    r.on_recv(23, C, -ECANCELED, false, 0, false, out);
    r.on_recv(23, U, -ECANCELED, false, 0, false, out);
    r.on_cancel_done(C, out);  // the backpressure stop
    r.on_cancel_done(C, out);
    r.on_cancel_done(U, out);
    EXPECT_EQ(released(), 3);
    expect_finished(CloseCause::shutdown);
}

TEST_F(RelayTest, ALongQueueIsReleasedInOneActionAndTeardownStillHappens) {
    // Regression: a multishot overshoot of many buffers used to overflow the action list
    // with one release per buffer, dropping the teardown that followed (a stuck slot).
    connected();
    r.on_recv(10, U, 0, false, 0, false, out);  // upstream FIN: shutdown(client)
    for (uint16_t b = 1; b <= 30; ++b) {
        r.on_recv(20, C, 100, true, b, true, out);
    }
    EXPECT_EQ(r.queued(C), 30);
    r.on_shutdown(C, 0, out);
    out.clear();
    r.on_send(21, U, -EPIPE, out);  // the upstream is gone with 29 buffers queued
    EXPECT_LT(out.size(), Actions::capacity);
    EXPECT_EQ(released(), 30);
    EXPECT_EQ(count(ActionType::cancel_all, C), 1) << "the teardown must not be lost";
    EXPECT_EQ(r.phase(), Relay::Phase::closing);
    r.on_recv(22, C, -ECANCELED, false, 0, false, out);
    while (r.ops_in_flight(C) > 0) {  // the stop, the second stop and the teardown's cancel
        r.on_cancel_done(C, out);
    }
    EXPECT_EQ(count(ActionType::finish), 1) << "the upstream reset must end the connection";
    EXPECT_EQ(r.phase(), Relay::Phase::done);
}

TEST_F(RelayTest, EveryStartFinishesExactlyOnce) {
    // Balance: whatever the sequence, one finish per connection.
    connected();
    r.on_recv(20, C, -EPIPE, false, 0, out);
    r.on_stop(out);  // a second close reason is ignored
    r.on_recv(21, U, -ECANCELED, false, 0, out);
    r.on_cancel_done(U, out);
    EXPECT_EQ(count(ActionType::finish), 1);
    Actions more;
    r.on_stop(more);
    r.on_timer(100000, more);
    EXPECT_EQ(more.size(), 0);
}

// ---------------------------------------------------------------------------------------------
// Upstream handshakes and the sniff phase (issue 10): the relay drives a real codec.

class HandshakeTest : public RelayTest {
  protected:
    void SetUp() override {
        RelayTest::SetUp();
        auto* s = reinterpret_cast<sockaddr_in*>(&dst.storage);
        s->sin_family = AF_INET;
        inet_pton(AF_INET, "192.0.2.7", &s->sin_addr);
        s->sin_port = htons(443);
        dst.len = sizeof *s;
    }
    // Connect succeeded with a SOCKS5 handshake (no auth) set.
    void socks_connected(bool pipeline = false) {
        ASSERT_TRUE(h.socks5({"", "", pipeline}, {&dst, {}, 0}));
        r.set_handshake(&h);
        r.on_start(0, StartOutcome::ok, out);
        out.clear();
        r.on_connect(10, 0, out);
        ASSERT_EQ(r.phase(), Relay::Phase::handshaking);
    }
    // The bytes of the send_handshake asked for.
    std::vector<uint8_t> hs_sent() const {
        const Action* a = find(ActionType::send_handshake, U);
        if (a == nullptr) {
            return {};
        }
        return {r.handshake_data() + a->off, r.handshake_data() + a->off + a->len};
    }
    void recv_upstream(uint64_t now, std::vector<uint8_t> bytes, uint16_t buf) {
        data = std::move(bytes);
        r.on_recv(now, U, static_cast<int>(data.size()), true, buf, true, out, data.data());
    }

    plan::SockAddr dst;
    hs::Upstream h;
    std::vector<uint8_t> data;
};

TEST_F(HandshakeTest, Socks5ThenRelayWithTheBannerThatCameWithTheReply) {
    socks_connected();
    EXPECT_EQ(hs_sent(), (std::vector<uint8_t>{5, 1, 0}));
    EXPECT_EQ(count(ActionType::recv, U), 1);
    EXPECT_EQ(count(ActionType::send, U), 0);
    const Action* t = find(ActionType::arm_timer);
    ASSERT_NE(t, nullptr);
    EXPECT_EQ(t->deadline_ms, 10u + plan::Timeouts{}.handshake_ms);
    // Client bytes meanwhile are held, not sent to the proxy.
    out.clear();
    r.on_recv(11, C, 5, true, 7, true, out);
    EXPECT_EQ(count(ActionType::send), 0);
    out.clear();
    r.on_send(12, U, 3, out);  // greeting sent
    EXPECT_EQ(r.phase(), Relay::Phase::handshaking);
    out.clear();
    recv_upstream(13, {5, 0}, 1);
    EXPECT_EQ(released(), 1);
    std::vector<uint8_t> req = hs_sent();
    ASSERT_EQ(req.size(), 10u);
    EXPECT_EQ(req[1], 1);  // CONNECT
    out.clear();
    r.on_send(14, U, 10, out);
    out.clear();
    // The reply and 3 banner bytes in one buffer: relaying starts, the client gets the banner
    // from the reply's end, and the held client bytes go to the destination.
    recv_upstream(15, {5, 0, 0, 1, 198, 51, 100, 1, 0, 80, 'a', 'b', 'c'}, 2);
    EXPECT_EQ(r.phase(), Relay::Phase::relaying);
    expect_send(C, 2, 10, 3);
    expect_send(U, 7, 0, 5);
    EXPECT_EQ(released(), 0);
}

TEST_F(HandshakeTest, RefusalResetsTheClientAndRecordsTheCause) {
    socks_connected(true);
    out.clear();
    r.on_send(12, U, 13, out);
    out.clear();
    recv_upstream(13, {5, 0, 5, 5}, 1);  // REP 5: connection refused
    EXPECT_EQ(r.handshake_cause(), hs::Cause::socks_refused);
    // The multishot receive is still armed: cancelled, then the slot is freed.
    EXPECT_EQ(count(ActionType::cancel_all, U), 1);
    out.clear();
    r.on_recv(14, U, -ECANCELED, false, 0, false, out);
    r.on_cancel_done(U, out);
    r.on_cancel_done(C, out);
    r.on_recv(14, C, -ECANCELED, false, 0, false, out);
    expect_finished(CloseCause::handshake_failed);
    const Action* c = find(ActionType::close, C);
    ASSERT_NE(c, nullptr);
    EXPECT_TRUE(c->reset);
}

TEST_F(HandshakeTest, ProxyClosingMidHandshakeIsCountedAsClosed) {
    socks_connected();
    out.clear();
    r.on_send(12, U, 3, out);
    out.clear();
    r.on_recv(13, U, 0, false, 0, false, out);
    EXPECT_EQ(r.handshake_cause(), hs::Cause::closed);
    EXPECT_EQ(r.phase(), Relay::Phase::closing);
}

TEST_F(HandshakeTest, TimeoutDuringTheHandshake) {
    socks_connected();
    uint64_t deadline = 10 + plan::Timeouts{}.handshake_ms;
    out.clear();
    r.on_timer(deadline - 1, out);
    EXPECT_EQ(r.phase(), Relay::Phase::handshaking);
    EXPECT_EQ(count(ActionType::arm_timer), 1);
    out.clear();
    r.on_timer(deadline, out);
    EXPECT_EQ(r.handshake_cause(), hs::Cause::timeout);
    EXPECT_EQ(r.phase(), Relay::Phase::closing);
    r.on_send(deadline, U, -ECANCELED, out);
    r.on_recv(deadline, U, -ECANCELED, false, 0, false, out);
    r.on_recv(deadline, C, -ECANCELED, false, 0, false, out);
    r.on_cancel_done(U, out);
    r.on_cancel_done(C, out);
    expect_finished(CloseCause::handshake_timeout);
}

TEST_F(HandshakeTest, PartialHandshakeSendContinuesFromTheOffset) {
    socks_connected(true);
    out.clear();
    r.on_send(12, U, 2, out);
    const Action* a = find(ActionType::send_handshake, U);
    ASSERT_NE(a, nullptr);
    EXPECT_EQ(a->off, 2u);
    EXPECT_EQ(a->len, 11u);
}

TEST_F(HandshakeTest, ProxyHeaderNeedsNoReply) {
    plan::SockAddr src = dst;
    ASSERT_TRUE(h.proxy_v2(src, dst, "a.example"));
    r.set_handshake(&h);
    r.on_start(0, StartOutcome::ok, out);
    r.on_recv(1, C, 100, true, 4, true, out);  // early client data
    out.clear();
    r.on_connect(10, 0, out);
    EXPECT_EQ(r.phase(), Relay::Phase::handshaking);
    EXPECT_EQ(count(ActionType::recv, U), 0) << "nothing to read before the header is out";
    EXPECT_EQ(hs_sent().size(), 16u + 12u + 3u + 9u);
    EXPECT_EQ(count(ActionType::send, U), 0) << "the header goes first";
    out.clear();
    r.on_send(11, U, 40, out);
    EXPECT_EQ(r.phase(), Relay::Phase::relaying);
    expect_send(U, 4, 0, 100);
    EXPECT_EQ(count(ActionType::recv, U), 1);
}

TEST_F(RelayTest, SniffWaitsForClientBytesThenConnects) {
    r.on_start(0, StartOutcome::sniff, out);
    EXPECT_EQ(r.phase(), Relay::Phase::sniffing);
    EXPECT_EQ(count(ActionType::connect), 0);
    EXPECT_EQ(count(ActionType::recv, C), 1);
    const Action* t = find(ActionType::arm_timer);
    ASSERT_NE(t, nullptr);
    EXPECT_EQ(t->deadline_ms, plan::Timeouts{}.sniff_ms);
    out.clear();
    r.on_recv(5, C, 50, true, 3, true, out);
    const Action* s = find(ActionType::sniff);
    ASSERT_NE(s, nullptr);
    EXPECT_FALSE(s->reset) << "more bytes may still come";
    out.clear();
    r.on_routed(6, StartOutcome::ok, out);
    EXPECT_EQ(r.phase(), Relay::Phase::connecting);
    EXPECT_EQ(count(ActionType::connect, U), 1);
    out.clear();
    r.on_connect(7, 0, out);
    expect_send(U, 3, 0, 50);  // the sniffed bytes are relayed, not lost
}

TEST_F(RelayTest, SniffTimeoutDecidesForAServerThatSpeaksFirst) {
    r.on_start(0, StartOutcome::sniff, out);
    uint32_t sniff = plan::Timeouts{}.sniff_ms;
    out.clear();
    r.on_timer(sniff - 1, out);
    EXPECT_EQ(count(ActionType::sniff), 0);
    out.clear();
    r.on_timer(sniff, out);
    const Action* s = find(ActionType::sniff);
    ASSERT_NE(s, nullptr);
    EXPECT_TRUE(s->reset) << "decide now";
    out.clear();
    r.on_routed(sniff, StartOutcome::ok, out);
    EXPECT_EQ(count(ActionType::connect, U), 1);
}

TEST_F(RelayTest, SniffFullQueueOrEofDecidesNow) {
    r.on_start(0, StartOutcome::sniff, out);
    out.clear();
    r.on_recv(1, C, 10, true, 1, true, out);
    r.on_recv(1, C, 10, true, 2, true, out);  // depth reached: no more can come
    ASSERT_EQ(count(ActionType::sniff), 2);
    EXPECT_TRUE(out[out.size() - 1].type == ActionType::cancel_recv ||
                find(ActionType::cancel_recv, C) != nullptr);
    bool last_final = false;
    for (const Action& a : out) {
        if (a.type == ActionType::sniff) {
            last_final = a.reset;
        }
    }
    EXPECT_TRUE(last_final);

    SetUp();
    out.clear();
    r.on_start(0, StartOutcome::sniff, out);
    out.clear();
    r.on_recv(1, C, 0, false, 0, false, out);
    const Action* s = find(ActionType::sniff);
    ASSERT_NE(s, nullptr);
    EXPECT_TRUE(s->reset);
}

TEST_F(RelayTest, RejectedRouteResetsTheClient) {
    r.on_start(0, StartOutcome::sniff, out);
    out.clear();
    r.on_recv(1, C, 10, true, 1, true, out);
    out.clear();
    r.on_routed(2, StartOutcome::rejected, out);
    EXPECT_EQ(count(ActionType::connect), 0);
    EXPECT_EQ(count(ActionType::cancel_all, C), 1);
    r.on_recv(2, C, -ECANCELED, false, 0, false, out);
    r.on_cancel_done(C, out);
    expect_finished(CloseCause::rejected);
    EXPECT_EQ(released(), 1);
    const Action* c = find(ActionType::close, C);
    ASSERT_NE(c, nullptr);
    EXPECT_TRUE(c->reset);

    SetUp();
    out.clear();
    r.on_start(0, StartOutcome::rejected, out);
    expect_finished(CloseCause::rejected);
}

TEST_F(RelayTest, ProxyHeaderPhaseConsumesTheHeaderThenSniffsOrConnects) {
    r.on_start(0, StartOutcome::proxy_header, out);
    EXPECT_EQ(r.phase(), Relay::Phase::sniffing);
    const Action* t = find(ActionType::arm_timer);
    ASSERT_NE(t, nullptr);
    EXPECT_EQ(t->deadline_ms, plan::Timeouts{}.handshake_ms) << "a PROXY header may take >= 3 s";
    out.clear();
    r.on_recv(1, C, 100, true, 5, true, out);  // header (28 bytes) + 72 bytes of payload
    ASSERT_NE(find(ActionType::sniff), nullptr);
    out.clear();
    r.consume(C, 28, out);
    EXPECT_EQ(released(), 0) << "the buffer still holds payload";
    EXPECT_EQ(r.queued_off(C), 28u);
    // The route needs a name: sniff again at once (bytes are queued), under the sniff timeout.
    r.on_routed(2, StartOutcome::sniff, out);
    EXPECT_EQ(r.phase(), Relay::Phase::sniffing);
    const Action* s = find(ActionType::sniff);
    ASSERT_NE(s, nullptr);
    t = find(ActionType::arm_timer);
    ASSERT_NE(t, nullptr);
    EXPECT_EQ(t->deadline_ms, 2u + plan::Timeouts{}.sniff_ms);
    out.clear();
    r.on_routed(3, StartOutcome::ok, out);
    out.clear();
    r.on_connect(4, 0, out);
    expect_send(U, 5, 28, 72);  // the payload after the header, not the header
}

TEST_F(RelayTest, ConsumeReleasesWholeBuffers) {
    r.on_start(0, StartOutcome::proxy_header, out);
    r.on_recv(1, C, 10, true, 1, true, out);
    r.on_recv(1, C, 10, true, 2, true, out);
    out.clear();
    r.consume(C, 14, out);
    EXPECT_EQ(released(), 1);
    EXPECT_EQ(r.queued(C), 1);
    EXPECT_EQ(r.queued_head(C), 2);
    EXPECT_EQ(r.queued_off(C), 4u);
}

TEST_F(RelayTest, BadProxyHeaderResetsTheClient) {
    r.on_start(0, StartOutcome::proxy_header, out);
    r.on_recv(1, C, 10, true, 1, true, out);
    out.clear();
    r.on_routed(2, StartOutcome::bad_proxy_header, out);
    r.on_recv(2, C, -ECANCELED, false, 0, false, out);
    r.on_cancel_done(C, out);
    expect_finished(CloseCause::bad_proxy_header);
}

}  // namespace
}  // namespace tp::engine

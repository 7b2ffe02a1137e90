#pragma once
// The per-connection relay state machine: pure logic, no sockets and no io_uring. The worker
// feeds it completion events and executes the actions it returns; unit tests do the same with
// synthetic events. It tracks every operation in flight, so a slot is only freed (Finish) when
// the kernel holds nothing of it any more.

#include <cstdint>

#include "config/plan.h"
#include "engine/handshake/common.h"
#include "engine/stats.h"

namespace tp::engine {

namespace hs {
class Upstream;
}

enum class Side : uint8_t { client = 0, upstream = 1 };
constexpr Side other(Side s) {
    return s == Side::client ? Side::upstream : Side::client;
}
constexpr int idx(Side s) {
    return static_cast<int>(s);
}

enum class ActionType : uint8_t {
    connect,         // start the upstream connect
    recv,            // receive on `side` with a buffer from the provided ring
    recv_later,      // like recv, but the ring was empty: retry once buffers come back
    send,            // send buf[off, off+len) to `side`
    shutdown,        // shutdown(SHUT_WR) on `side`
    cancel_all,      // cancel every operation on `side`'s socket
    cancel_recv,     // cancel only the receive pending on `side`
    watch,           // poll `side` for an error/hangup (client during connect, buffers full)
    cancel_watch,    // cancel that poll
    release_buf,     // give `buf` back to the provided ring
    release_chain,   // give back `len` queued buffers, from `buf` along the BufChain
    close,           // close `side`'s socket; `reset` = SO_LINGER 0 first (RST)
    arm_timer,       // (re)arm the connection's one timer for `deadline_ms`
    disarm_timer,    // the connection no longer needs a timer
    finish,          // the connection is over: count `cause`, free the slot
    send_handshake,  // send handshake_data()[off, off+len) to the upstream
    sniff,           // look at the client's queued bytes for a name; `reset` = decide now
};

struct Action {
    ActionType type;
    Side side = Side::client;
    bool reset = false;
    bool drain_first = false;  // close: let the kernel deliver queued bytes before the RST
    uint16_t buf = 0;
    uint32_t off = 0;
    uint32_t len = 0;
    uint64_t deadline_ms = 0;
    CloseCause cause = CloseCause::normal;
};

// A fixed-capacity action list: an event never produces more than a handful of actions.
struct Actions {
    static constexpr int capacity = 24;  // an event needs at most ~12
    Action items[capacity];
    int count = 0;
    bool overflow = false;  // a bug if ever set: the worker reports it

    void clear() {
        count = 0;
        overflow = false;
    }
    void push(const Action& a) {
        if (count < capacity) {
            items[count++] = a;
        } else {
            overflow = true;
        }
    }
    const Action* begin() const { return items; }
    const Action* end() const { return items + count; }
    int size() const { return count; }
    const Action& operator[](int i) const { return items[i]; }
};

// The buffers a direction holds are linked through arrays the worker owns, one entry per
// buffer of its ring: a direction's queue costs no storage of its own, and its length is
// bounded by the ring, not by the connection.
struct BufChain {
    uint16_t* next = nullptr;  // next buffer id in the same queue
    uint32_t* len = nullptr;   // bytes received into the buffer
};

// Why a connection could not start relaying (decided by the worker before connect).
// `sniff`: the route needs the client's first bytes; the worker calls on_routed once decided.
// `rejected`: the route's upstream is `reject`.
// `proxy_header`: like sniff, but waiting (up to handshake_ms) for a PROXY protocol header.
enum class StartOutcome : uint8_t {
    ok,
    self_connect,
    no_origdst,
    error,
    sniff,
    rejected,
    proxy_header,
    bad_proxy_header,
};

class Relay {
  public:
    // sniffing: waiting for the client's first bytes to choose a route (before connect);
    // handshaking: connected, speaking the upstream proxy's protocol (before relaying).
    enum class Phase : uint8_t { idle, sniffing, connecting, handshaking, relaying, closing, done };

    void init(const plan::Timeouts& t, BufChain chain) {
        *this = Relay{};
        timeouts_ = t;
        chain_ = chain;
    }

    // Events. `now_ms` is a monotonic clock in milliseconds.
    void on_start(uint64_t now_ms, StartOutcome outcome, Actions& out);
    // After the sniff phase: the route is chosen (outcome ok, rejected or a start failure).
    void on_routed(uint64_t now_ms, StartOutcome outcome, Actions& out);
    // Before on_connect: speak `h` first (nullptr: none; plain connections never touch it).
    void set_handshake(hs::Upstream* h) { hs_ = h; }
    const uint8_t* handshake_data() const { return hs_out_; }
    hs::Cause handshake_cause() const { return hs_cause_; }
    void on_connect(uint64_t now_ms, int res, Actions& out);
    // `res` is the recv result; `buf` is valid when `has_buf` (IORING_CQE_F_BUFFER); `more`
    // (IORING_CQE_F_MORE) says the multishot receive stays armed.
    // `data` is the buffer's bytes: only read while handshaking (upstream replies).
    void on_recv(uint64_t now_ms, Side from, int res, bool has_buf, uint16_t buf, bool more,
                 Actions& out, const uint8_t* data = nullptr);
    void on_recv(uint64_t now_ms, Side from, int res, bool has_buf, uint16_t buf, Actions& out) {
        on_recv(now_ms, from, res, has_buf, buf, false, out);
    }
    void on_send(uint64_t now_ms, Side to, int res, Actions& out);
    void on_shutdown(Side side, int res, Actions& out);
    void on_cancel_done(Side side, Actions& out);  // the completion of a cancel request
    void on_watch(int res, Actions& out);          // the watch poll completed (res = revents)
    void on_timer(uint64_t now_ms, Actions& out);
    void on_stop(Actions& out);  // drain timeout: close now, cause `shutdown`

    Phase phase() const { return phase_; }
    bool half_closed() const { return dir_[0].shut != dir_[1].shut; }
    // Buffers a direction holds before its multishot receive is stopped: one being sent plus
    // one received meanwhile, so receiving overlaps sending while memory stays bounded (a few
    // more may land while the stop is on its way; the ring bounds them).
    static constexpr int depth = 2;
    int ops_in_flight(Side s) const { return ops_[idx(s)]; }
    CloseCause cause() const { return cause_; }
    int queued(Side from) const { return dir_[idx(from)].count; }
    uint16_t queued_head(Side from) const { return dir_[idx(from)].head; }
    uint32_t queued_off(Side from) const { return dir_[idx(from)].off; }
    // Drops the first `n` queued bytes from `from` (a PROXY header read before relaying).
    void consume(Side from, uint32_t n, Actions& out);

  private:
    // Bytes flowing from side `from` to other(from); indexed by idx(from).
    struct Dir {
        uint16_t head = 0;             // first queued buffer: the one being sent
        uint16_t tail = 0;             // last queued buffer
        uint16_t count = 0;            // buffers queued
        uint32_t off = 0;              // bytes of the head buffer already sent
        bool recv_inflight = false;    // a (multishot) receive is armed
        bool recv_cancelling = false;  // ... and asked to stop (queue full)
        bool send_inflight = false;
        bool eof = false;        // the source sent FIN
        bool shut = false;       // shutdown(SHUT_WR) issued on the destination
        bool shut_done = false;  // ... and completed
    };

    void push(Dir& d, uint16_t buf, uint32_t len);
    void pop(Dir& d);
    uint32_t head_len(const Dir& d) const { return chain_.len[d.head]; }
    void issue_recv(Side from, Actions& out);
    void issue_send(Side to, Actions& out);
    void issue_shutdown(Side to, Actions& out);
    void after_dir_drained(Side from, Actions& out);  // dir `from` has no bytes held
    void side_failed(Side s, Actions& out);           // s was reset or errored
    void teardown(CloseCause cause, bool rst_client, bool rst_upstream, Actions& out);
    void maybe_finish(Actions& out);
    void maybe_watch(Actions& out);
    void check_done(Actions& out);
    void arm(uint64_t deadline, Actions& out);
    void drop_bufs(Dir& d, Actions& out);  // release every buffer not being sent
    void release(uint16_t buf, Actions& out);
    void begin_connect(uint64_t now_ms, Actions& out);
    void begin_relaying(uint64_t now_ms, Actions& out);
    void handshake_send(Actions& out);  // the codec's pending bytes, if any
    void handshake_recv(uint64_t now_ms, int res, uint16_t buf, const uint8_t* data, Actions& out);
    void handshake_fail(hs::Cause cause, Actions& out);
    void handshake_sent(uint64_t now_ms, int res, Actions& out);
    void sniff_now(bool final, Actions& out);

    plan::Timeouts timeouts_{};
    BufChain chain_{};
    Dir dir_[2];
    uint16_t ops_[2] = {0, 0};  // operations in flight on each side's socket
    bool open_[2] = {false, false};
    bool dead_[2] = {false, false};  // reset or errored: no more I/O on it
    bool rst_[2] = {false, false};   // close with RST
    bool cancel_issued_[2] = {false, false};
    bool no_send_[2] = {false, false};  // a send to it failed; its queued bytes are still read
    bool watching_ = false;             // the client watch poll is in flight
    bool reset_after_drain_ = false;    // a side failed; reset the other once bytes are out
    Phase phase_ = Phase::idle;
    CloseCause cause_ = CloseCause::normal;
    CloseCause pending_cause_ = CloseCause::normal;
    uint64_t last_activity_ = 0;
    uint64_t connect_deadline_ = 0;  // also the sniff and handshake deadlines
    hs::Upstream* hs_ = nullptr;
    const uint8_t* hs_out_ = nullptr;  // bytes being sent by send_handshake
    uint32_t hs_out_len_ = 0;
    uint32_t hs_out_off_ = 0;
    hs::Cause hs_cause_ = hs::Cause::none;
};

}  // namespace tp::engine

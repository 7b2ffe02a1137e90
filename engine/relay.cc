// The relay state machine's transitions (see relay.h). Every operation issued is counted in
// ops_ on the socket it targets and uncounted by its completion, so teardown knows when the
// kernel has let go of the connection's buffers and sockets.
#include "engine/relay.h"

#include <poll.h>

#include <cerrno>

#include "engine/handshake/upstream.h"

namespace tp::engine {

namespace {
constexpr int C = 0;
constexpr int U = 1;

Action act(ActionType t, Side s) {
    Action a{};
    a.type = t;
    a.side = s;
    return a;
}

CloseCause reset_cause(Side s) {
    return s == Side::client ? CloseCause::client_reset : CloseCause::upstream_reset;
}
}  // namespace

void Relay::arm(uint64_t deadline, Actions& out) {
    Action a = act(ActionType::arm_timer, Side::client);
    a.deadline_ms = deadline;
    out.push(a);
}

void Relay::release(uint16_t buf, Actions& out) {
    Action a = act(ActionType::release_buf, Side::client);
    a.buf = buf;
    out.push(a);
}

void Relay::push(Dir& d, uint16_t buf, uint32_t len) {
    chain_.len[buf] = len;
    if (d.count == 0) {
        d.head = buf;
    } else {
        chain_.next[d.tail] = buf;
    }
    d.tail = buf;
    ++d.count;
}

void Relay::pop(Dir& d) {
    d.head = chain_.next[d.head];
    --d.count;
    d.off = 0;
}

void Relay::drop_bufs(Dir& d, Actions& out) {
    if (d.count == 0) {
        return;
    }
    // The kernel may still be reading the head buffer: keep it until its send completes.
    // One action for the whole queue: it may be long (multishot receives land a few more
    // buffers before a stop takes effect).
    int keep = d.send_inflight ? 1 : 0;
    if (d.count > keep) {
        Action a = act(ActionType::release_chain, Side::client);
        a.buf = keep ? chain_.next[d.head] : d.head;
        a.len = static_cast<uint32_t>(d.count - keep);
        out.push(a);
    }
    d.count = static_cast<uint16_t>(keep);
    d.tail = d.head;
    if (keep == 0) {
        d.off = 0;
    }
}

void Relay::issue_recv(Side from, Actions& out) {
    Dir& d = dir_[idx(from)];
    if (d.recv_inflight || d.eof || d.count >= depth || dead_[idx(from)] ||
        dead_[idx(other(from))] || no_send_[idx(other(from))]) {
        return;
    }
    d.recv_inflight = true;
    ++ops_[idx(from)];
    out.push(act(ActionType::recv, from));
}

void Relay::issue_send(Side to, Actions& out) {
    Dir& d = dir_[idx(other(to))];
    if (d.send_inflight || d.count == 0) {
        return;
    }
    d.send_inflight = true;
    ++ops_[idx(to)];
    Action a = act(ActionType::send, to);
    a.buf = d.head;
    a.off = d.off;
    a.len = head_len(d) - d.off;
    out.push(a);
}

void Relay::issue_shutdown(Side to, Actions& out) {
    Dir& d = dir_[idx(other(to))];
    if (d.shut || dead_[idx(to)] || no_send_[idx(to)]) {
        return;
    }
    if (dir_[idx(to)].shut_done) {
        // The other direction is over too and both FINs were read, so nothing is left unread:
        // close() sends this FIN itself, one operation fewer per connection.
        teardown(CloseCause::normal, false, false, out);
        return;
    }
    d.shut = true;
    ++ops_[idx(to)];
    out.push(act(ActionType::shutdown, to));
    // Half-closed from now on: its own (usually shorter) inactivity timeout applies.
    if (timeouts_.half_closed_ms > 0) {
        arm(last_activity_ + timeouts_.half_closed_ms, out);
    }
}

void Relay::on_start(uint64_t now_ms, StartOutcome outcome, Actions& out) {
    open_[C] = true;
    last_activity_ = now_ms;
    switch (outcome) {
        case StartOutcome::ok:
            break;
        case StartOutcome::self_connect:
            teardown(CloseCause::self_connect, true, false, out);
            return;
        case StartOutcome::no_origdst:
            teardown(CloseCause::no_origdst, true, false, out);
            return;
        case StartOutcome::error:
            teardown(CloseCause::error, true, false, out);
            return;
        case StartOutcome::rejected:
            teardown(CloseCause::rejected, true, false, out);
            return;
        case StartOutcome::bad_proxy_header:
            teardown(CloseCause::bad_proxy_header, true, false, out);
            return;
        case StartOutcome::proxy_header:
            // The header comes first from a trusted proxy; its sender may wait >= 3 s.
            phase_ = Phase::sniffing;
            issue_recv(Side::client, out);
            connect_deadline_ = now_ms + (timeouts_.handshake_ms ? timeouts_.handshake_ms : 3000);
            arm(connect_deadline_, out);
            return;
        case StartOutcome::sniff:
            // The client's first bytes choose the route: receive them (they are queued and
            // relayed later, never lost), bounded in time by sniff_ms and in bytes by depth.
            phase_ = Phase::sniffing;
            issue_recv(Side::client, out);
            connect_deadline_ = now_ms + timeouts_.sniff_ms;
            arm(connect_deadline_, out);
            return;
    }
    begin_connect(now_ms, out);
}

void Relay::on_routed(uint64_t now_ms, StartOutcome outcome, Actions& out) {
    if (phase_ != Phase::sniffing) {
        return;
    }
    if (outcome == StartOutcome::sniff) {
        // After a PROXY header: now the name, within the sniff timeout.
        connect_deadline_ = now_ms + timeouts_.sniff_ms;
        arm(connect_deadline_, out);
        Dir& d = dir_[C];
        if (d.count > 0 || d.eof) {
            sniff_now(d.count >= depth || d.eof, out);
        }
        return;
    }
    if (outcome != StartOutcome::ok) {
        phase_ = Phase::idle;
        open_[C] = true;
        on_start(now_ms, outcome, out);
        return;
    }
    begin_connect(now_ms, out);
}

void Relay::begin_connect(uint64_t now_ms, Actions& out) {
    open_[U] = true;
    phase_ = Phase::connecting;
    ++ops_[U];
    out.push(act(ActionType::connect, Side::upstream));
    // Receive from the client while connecting: early data waits in the buffers, and a client
    // that goes away during the connect is noticed at once.
    issue_recv(Side::client, out);
    if (timeouts_.connect_ms > 0) {
        connect_deadline_ = now_ms + timeouts_.connect_ms;
        arm(connect_deadline_, out);
    } else {
        out.push(act(ActionType::disarm_timer, Side::client));
    }
    maybe_watch(out);  // sniffing may have filled the client's queue
}

void Relay::consume(Side from, uint32_t n, Actions& out) {
    Dir& d = dir_[idx(from)];
    while (n > 0 && d.count > 0) {
        uint32_t avail = head_len(d) - d.off;
        if (n < avail) {
            d.off += n;
            return;
        }
        n -= avail;
        release(d.head, out);
        pop(d);
    }
    if (d.count == 0) {
        issue_recv(from, out);  // room again
    }
}

void Relay::sniff_now(bool final, Actions& out) {
    Action a = act(ActionType::sniff, Side::client);
    a.reset = final;
    out.push(a);
}

void Relay::on_connect(uint64_t now_ms, int res, Actions& out) {
    --ops_[U];
    if (phase_ != Phase::connecting) {
        maybe_finish(out);
        return;
    }
    if (res < 0) {
        teardown(CloseCause::connect_failed, true, false, out);
        return;
    }
    if (hs_ != nullptr) {
        // The proxy's protocol first; client bytes keep queueing meanwhile.
        phase_ = Phase::handshaking;
        last_activity_ = now_ms;
        if (timeouts_.handshake_ms > 0) {
            connect_deadline_ = now_ms + timeouts_.handshake_ms;
            arm(connect_deadline_, out);
        } else {
            out.push(act(ActionType::disarm_timer, Side::client));
        }
        handshake_send(out);
        if (hs_->expects_reply()) {
            issue_recv(Side::upstream, out);
        }
        return;
    }
    begin_relaying(now_ms, out);
}

void Relay::handshake_send(Actions& out) {
    std::span<const uint8_t> s = hs_->take_out();
    if (s.empty()) {
        return;
    }
    hs_out_ = s.data();
    hs_out_len_ = static_cast<uint32_t>(s.size());
    hs_out_off_ = 0;
    ++ops_[U];
    Action a = act(ActionType::send_handshake, Side::upstream);
    a.len = hs_out_len_;
    out.push(a);
}

void Relay::handshake_fail(hs::Cause cause, Actions& out) {
    hs_cause_ = cause;
    teardown(
        cause == hs::Cause::timeout ? CloseCause::handshake_timeout : CloseCause::handshake_failed,
        true, true, out);
}

void Relay::handshake_recv(uint64_t now_ms, int res, uint16_t buf, const uint8_t* data,
                           Actions& out) {
    hs::Step st = hs_->feed({data, static_cast<size_t>(res)});
    if (st.status == hs::Status::failed) {
        release(buf, out);
        handshake_fail(st.cause, out);
        return;
    }
    if (st.status == hs::Status::need_more) {
        release(buf, out);
        handshake_send(out);
        issue_recv(Side::upstream, out);
        return;
    }
    Dir& d = dir_[U];
    if (st.consumed < static_cast<uint32_t>(res)) {
        // Bytes past the reply came from the destination (a banner): they go to the client
        // first, from where the reply ended.
        push(d, buf, static_cast<uint32_t>(res));
        d.off = st.consumed;
    } else {
        release(buf, out);
    }
    begin_relaying(now_ms, out);
}

void Relay::begin_relaying(uint64_t now_ms, Actions& out) {
    phase_ = Phase::relaying;
    last_activity_ = now_ms;
    if (watching_) {
        ++ops_[C];
        out.push(act(ActionType::cancel_watch, Side::client));
    }
    if (timeouts_.idle_ms > 0) {
        arm(now_ms + timeouts_.idle_ms, out);
    } else {
        out.push(act(ActionType::disarm_timer, Side::client));
    }
    Dir& up = dir_[C];
    if (up.count > 0) {
        issue_send(Side::upstream, out);
    } else if (up.eof) {
        issue_shutdown(Side::upstream, out);
    }
    if (dir_[U].count > 0) {
        issue_send(Side::client, out);  // bytes that came with the handshake's reply
    }
    issue_recv(Side::client, out);
    issue_recv(Side::upstream, out);
}

void Relay::on_watch(int res, Actions& out) {
    --ops_[C];
    watching_ = false;
    if (phase_ == Phase::closing || phase_ == Phase::done) {
        maybe_finish(out);
        return;
    }
    if ((phase_ == Phase::connecting || phase_ == Phase::handshaking) && res > 0 &&
        (res & (POLLERR | POLLHUP))) {
        side_failed(Side::client, out);
    }
}

void Relay::on_recv(uint64_t now_ms, Side from, int res, bool has_buf, uint16_t buf, bool more,
                    Actions& out, const uint8_t* data) {
    Dir& d = dir_[idx(from)];
    Side to = other(from);
    if (!more) {  // the (multishot) receive has ended
        --ops_[idx(from)];
        d.recv_inflight = false;
        d.recv_cancelling = false;
    }
    if (phase_ == Phase::closing || phase_ == Phase::done) {
        if (has_buf) {
            release(buf, out);
        }
        maybe_finish(out);
        return;
    }
    if (phase_ == Phase::handshaking && from == Side::upstream) {
        if (res > 0 && has_buf && data != nullptr) {
            last_activity_ = now_ms;
            handshake_recv(now_ms, res, buf, data, out);
            return;
        }
        if (has_buf) {
            release(buf, out);
        }
        if (res >= 0 || (res != -ENOBUFS && res != -EINTR && res != -EAGAIN && res != -ECANCELED)) {
            handshake_fail(hs::Cause::closed, out);  // closed or reset mid-handshake
            return;
        }
        has_buf = false;  // a retry: handled below like any receive
    }
    if (res > 0 && has_buf) {
        if (dead_[idx(to)] || dead_[idx(from)] || no_send_[idx(to)]) {
            release(buf, out);  // nowhere to deliver it
            return;
        }
        push(d, buf, static_cast<uint32_t>(res));
        last_activity_ = now_ms;
        if (d.count >= depth && d.recv_inflight && !d.recv_cancelling) {
            // Backpressure: stop receiving until the queue drains.
            d.recv_cancelling = true;
            ++ops_[idx(from)];
            out.push(act(ActionType::cancel_recv, from));
        }
        if (phase_ == Phase::relaying) {
            issue_send(to, out);
        } else if (phase_ == Phase::sniffing) {
            // Decide now if no more bytes can come before the route is chosen.
            sniff_now(d.count >= depth, out);
        }
        issue_recv(from, out);
        maybe_watch(out);
        return;
    }
    if (has_buf) {  // no data in it: give it straight back
        release(buf, out);
    }
    if (res > 0) {  // data without a buffer: cannot happen with buffer select
        teardown(CloseCause::error, true, true, out);
        return;
    }
    if (res == 0) {
        d.eof = true;
        last_activity_ = now_ms;
        if (phase_ == Phase::sniffing) {
            sniff_now(true, out);  // the client said all it will say before an answer
            return;
        }
        if (d.count == 0 && !d.send_inflight) {
            if (no_send_[idx(from)]) {  // it can take nothing and sends nothing more
                side_failed(from, out);
            } else if (phase_ == Phase::relaying) {
                issue_shutdown(to, out);
            }
        }
        return;
    }
    switch (-res) {
        case ENOBUFS:  // provided ring empty: retry once buffers come back
            if (!d.recv_inflight) {
                d.recv_inflight = true;
                ++ops_[idx(from)];
                out.push(act(ActionType::recv_later, from));
            }
            return;
        case EINTR:
        case EAGAIN:
            issue_recv(from, out);
            return;
        case ECANCELED:  // stopped for backpressure, or the other side failed
            if (no_send_[idx(from)] && d.count == 0 && !d.send_inflight) {
                side_failed(from, out);
                return;
            }
            issue_recv(from, out);
            maybe_watch(out);
            return;
        default:
            side_failed(from, out);
            return;
    }
}

void Relay::maybe_watch(Actions& out) {
    // Connecting with the client's receive stopped (buffers full): watch it for a reset.
    Dir& d = dir_[C];
    if ((phase_ == Phase::connecting || phase_ == Phase::handshaking) && !d.recv_inflight &&
        !watching_ && !d.eof && !dead_[C]) {
        watching_ = true;
        ++ops_[C];
        out.push(act(ActionType::watch, Side::client));
    }
}

void Relay::handshake_sent(uint64_t now_ms, int res, Actions& out) {
    --ops_[U];
    if (res <= 0) {
        if (res == -EAGAIN || res == -EINTR) {
            res = 0;  // try the rest again
        } else {
            handshake_fail(hs::Cause::closed, out);
            return;
        }
    }
    last_activity_ = now_ms;
    hs_out_off_ += static_cast<uint32_t>(res);
    if (hs_out_off_ < hs_out_len_) {
        ++ops_[U];
        Action a = act(ActionType::send_handshake, Side::upstream);
        a.off = hs_out_off_;
        a.len = hs_out_len_ - hs_out_off_;
        out.push(a);
        return;
    }
    if (!hs_->expects_reply()) {
        begin_relaying(now_ms, out);  // a PROXY header: nothing to wait for
    }
}

void Relay::on_send(uint64_t now_ms, Side to, int res, Actions& out) {
    Side from = other(to);
    Dir& d = dir_[idx(from)];
    if (phase_ == Phase::handshaking && to != Side::client) {
        handshake_sent(now_ms, res, out);  // only handshake bytes go there before relaying
        return;
    }
    --ops_[idx(to)];
    d.send_inflight = false;
    if (phase_ == Phase::closing || phase_ == Phase::done) {
        drop_bufs(d, out);
        maybe_finish(out);
        return;
    }
    if ((res == -EAGAIN || res == -EINTR) && !dead_[idx(to)] && !no_send_[idx(to)]) {
        issue_send(to, out);  // a non-blocking socket (splice mode) was full: try again
        return;
    }
    if (res > 0 && !dead_[idx(to)] && !no_send_[idx(to)]) {
        last_activity_ = now_ms;
        d.off += static_cast<uint32_t>(res);
        if (d.off < head_len(d)) {  // partial send: continue from the offset
            issue_send(to, out);
            return;
        }
        release(d.head, out);
        pop(d);
        issue_recv(from, out);
        if (d.count > 0) {
            issue_send(to, out);
        } else {
            after_dir_drained(from, out);
        }
        return;
    }
    drop_bufs(d, out);
    if (dead_[idx(to)] || no_send_[idx(to)]) {  // cancelled: `to` already failed
        return;
    }
    if (reset_after_drain_) {  // delivering the last bytes before a reset failed too
        teardown(pending_cause_, true, true, out);
        return;
    }
    // `to` takes no more bytes, but what it sent before failing is still readable (Linux
    // returns queued data before the error): keep reading it and deliver it, and treat `to`
    // as reset once that read fails or ends.
    no_send_[idx(to)] = true;
    if (d.recv_inflight) {  // from -> to is pointless now
        ++ops_[idx(from)];
        out.push(act(ActionType::cancel_recv, from));
    }
    Dir& back = dir_[idx(to)];
    if (!back.recv_inflight && back.count == 0 && !back.send_inflight) {
        side_failed(to, out);
    }
}

void Relay::after_dir_drained(Side from, Actions& out) {
    Dir& d = dir_[idx(from)];
    Side to = other(from);
    if (reset_after_drain_ && dead_[idx(from)]) {
        teardown(pending_cause_, true, true, out);
    } else if (no_send_[idx(from)] && d.eof) {
        side_failed(from, out);
    } else if (d.eof) {
        issue_shutdown(to, out);
    } else {
        issue_recv(from, out);
    }
}

void Relay::side_failed(Side s, Actions& out) {
    if (phase_ == Phase::closing || phase_ == Phase::done || dead_[idx(s)]) {
        return;
    }
    dead_[idx(s)] = true;
    CloseCause cause = reset_cause(s);
    if (phase_ != Phase::relaying) {
        teardown(cause, s != Side::client, s != Side::upstream, out);
        return;
    }
    Side t = other(s);
    Dir& fwd = dir_[idx(s)];
    if (fwd.count == 0) {  // nothing of s's left to deliver: reset t now
        teardown(cause, true, true, out);
        return;
    }
    // The direction s -> t delivers what it already received, then t gets the reset.
    reset_after_drain_ = true;
    pending_cause_ = cause;
    // Nothing more goes to or comes from s.
    if (ops_[idx(s)] > 0 && !cancel_issued_[idx(s)]) {
        cancel_issued_[idx(s)] = true;
        ++ops_[idx(s)];
        out.push(act(ActionType::cancel_all, s));
    }
    // The direction t -> s is pointless now.
    Dir& back = dir_[idx(t)];
    if (back.recv_inflight) {
        ++ops_[idx(t)];
        out.push(act(ActionType::cancel_recv, t));
    }
    drop_bufs(back, out);
}

void Relay::on_shutdown(Side side, int, Actions& out) {
    --ops_[idx(side)];
    dir_[idx(other(side))].shut_done = true;
    if (phase_ == Phase::closing || phase_ == Phase::done) {
        maybe_finish(out);
        return;
    }
    check_done(out);
}

void Relay::on_cancel_done(Side side, Actions& out) {
    --ops_[idx(side)];
    maybe_finish(out);
}

void Relay::check_done(Actions& out) {
    if (dir_[C].shut_done && dir_[U].shut_done) {
        teardown(CloseCause::normal, false, false, out);
    }
}

void Relay::on_timer(uint64_t now_ms, Actions& out) {
    if (phase_ == Phase::sniffing || phase_ == Phase::handshaking) {
        if (now_ms < connect_deadline_) {
            arm(connect_deadline_, out);
        } else if (phase_ == Phase::sniffing) {
            sniff_now(true, out);  // a server that speaks first waits no longer
        } else {
            handshake_fail(hs::Cause::timeout, out);
        }
        return;
    }
    if (phase_ == Phase::connecting) {
        if (timeouts_.connect_ms == 0) {
            return;
        }
        if (now_ms >= connect_deadline_) {
            teardown(CloseCause::connect_timeout, true, false, out);
        } else {
            arm(connect_deadline_, out);
        }
        return;
    }
    if (phase_ != Phase::relaying) {
        return;
    }
    bool half = dir_[C].shut || dir_[U].shut;
    uint32_t timeout =
        (half && timeouts_.half_closed_ms > 0) ? timeouts_.half_closed_ms : timeouts_.idle_ms;
    if (timeout == 0) {
        return;
    }
    uint64_t deadline = last_activity_ + timeout;
    if (now_ms >= deadline) {
        bool by_half = half && timeouts_.half_closed_ms > 0;
        teardown(by_half ? CloseCause::half_closed_timeout : CloseCause::idle_timeout, true, true,
                 out);
    } else {
        arm(deadline, out);
    }
}

void Relay::on_stop(Actions& out) {
    teardown(CloseCause::shutdown, true, true, out);
}

void Relay::teardown(CloseCause cause, bool rst_client, bool rst_upstream, Actions& out) {
    if (phase_ == Phase::closing || phase_ == Phase::done) {
        return;
    }
    phase_ = Phase::closing;
    cause_ = cause;
    rst_[C] = rst_client;
    rst_[U] = rst_upstream;
    out.push(act(ActionType::disarm_timer, Side::client));
    for (int s = 0; s < 2; ++s) {
        if (open_[s] && ops_[s] > 0 && !cancel_issued_[s]) {
            cancel_issued_[s] = true;
            ++ops_[s];
            out.push(act(ActionType::cancel_all, static_cast<Side>(s)));
        }
    }
    maybe_finish(out);
}

void Relay::maybe_finish(Actions& out) {
    if (phase_ != Phase::closing || ops_[C] != 0 || ops_[U] != 0) {
        return;
    }
    drop_bufs(dir_[C], out);
    drop_bufs(dir_[U], out);
    for (int s = 0; s < 2; ++s) {
        if (open_[s]) {
            Action a = act(ActionType::close, static_cast<Side>(s));
            a.reset = rst_[s];
            // A reset relayed from the other side: what that side sent is still queued here
            // and must reach this peer before the RST, which would discard it.
            a.drain_first =
                rst_[s] && !dead_[s] && !no_send_[s] &&
                (cause_ == CloseCause::client_reset || cause_ == CloseCause::upstream_reset);
            out.push(a);
            open_[s] = false;
        }
    }
    Action f = act(ActionType::finish, Side::client);
    f.cause = cause_;
    out.push(f);
    phase_ = Phase::done;
}

}  // namespace tp::engine

// TCP connections: starting a relayed connection after accept, feeding its completions to the
// relay state machine (engine/relay.h), and turning the relay's actions into io_uring requests,
// direct sends and splices. The worker's event loop (worker.cc) routes every connection
// completion here.
#include <fcntl.h>
#include <linux/sockios.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "engine/log.h"
#include "engine/worker.h"
#include "engine/worker_internal.h"

namespace tp::engine {
using namespace worker_detail;

bool Worker::start_conn(uint32_t li, int fd) {
    ListenerState& l = *listeners_[li];
    const plan::Listener& lc = l.shared->cfg;
    plan::SockAddr client;
    bool routed = !l.shared->routes.empty();
    bool accept_proxy = lc.accept_proxy != plan::AcceptProxy::none;
    bool want_addrs = cfg_.log_connections || cfg_.close_log != nullptr;
    if (lc.source != plan::SourceMode::proxy || want_addrs || routed || accept_proxy) {
        client = peer_addr(fd);
    }
    // From a trusted proxy: addresses come from its PROXY header, read before anything else.
    bool proxied = accept_proxy && in_prefixes(lc.accept_proxy_from, client);
    routed = routed || proxied;
    plan::SockAddr orig;
    plan::SockAddr target;
    StartOutcome outcome = StartOutcome::ok;
    if (proxied) {
        // Decided once the header is in (proxy_header in routed_conn.cc).
    } else if (lc.target == plan::UpstreamTarget::original) {
        if (!original_destination(fd, lc, orig, client)) {
            outcome = StartOutcome::no_origdst;
        } else if (self_set_ && self_set_->contains(orig)) {
            outcome = StartOutcome::self_connect;
        } else {
            target = orig;
        }
    } else if (l.shared->fixed_is_self) {
        outcome = StartOutcome::self_connect;
    } else {
        target = unmap_v4(lc.upstream_address);
        if (want_addrs || routed) {
            original_destination(fd, lc, orig, client);
        }
    }
    int up_fd = -1;
    if (outcome == StartOutcome::ok && !routed) {  // routed: route_conn makes the socket
        auto up = make_upstream(target, lc.source, client, cfg_.bypass_mark, lc.fast_open);
        if (!up) {
            int err = up.error().code;
            log_limited(up.error().what, err);
            if (err == EMFILE || err == ENFILE) {
                // Out of descriptors: the client waits (first in line) for one to be freed
                // instead of being reset; accepting more would only add to the wait.
                fd_exhausted(li);
                l.shared->active.fetch_sub(1, std::memory_order_relaxed);
                l.held.insert(l.held.begin(), fd);
                pause_for_limit(li);
                return false;
            }
            ListenerCounters::add(l.ctr->connect_errors[connect_errno_slot(err)], 1);
            outcome = StartOutcome::error;
        } else {
            up_fd = up.value().release();
        }
    }
    WorkerStats::add(stats_.accepted, 1);
    WorkerStats::add(stats_.active, 1);
    ListenerCounters::add(l.ctr->accepted, 1);
    int64_t slot = pool_.acquire();
    if (slot < 0) {
        set_linger_reset(fd);
        ::close(fd);
        if (up_fd >= 0) {
            ::close(up_fd);
        }
        WorkerStats::add(stats_.closed[static_cast<size_t>(CloseCause::error)], 1);
        WorkerStats::sub(stats_.active, 1);
        ListenerCounters::add(l.ctr->closed[static_cast<size_t>(CloseReason::limit)], 1);
        l.shared->active.fetch_sub(1, std::memory_order_relaxed);
        return true;
    }
    wheel_.reserve_ids(pool_.capacity());
    uint32_t s = static_cast<uint32_t>(slot);
    Conn& c = pool_.slot(s).value;
    c.relay.init(lc.timeouts, BufChain{chain_next_.data(), chain_len_.data()});
    c.fd[0] = fd;
    c.fd[1] = up_fd;
    c.listener = li;
    c.target = target;
    c.ctr = l.ctr;
    ListenerCounters::add(c.ctr->active, 1);
    c.bytes[0] = c.bytes[1] = 0;
    c.start_ms = now_;
    c.connect_ns = 0;
    c.connect_err = 0;
    c.first_eof = -1;
    if (cfg_.close_log != nullptr) {
        if (log_addrs_.size() < pool_.capacity()) {
            log_addrs_.resize(pool_.capacity());
        }
        log_addrs_[s] = LogAddrs{client, orig};
    }
    for (int d = 0; d < 2; ++d) {
        c.pipe_r[d] = c.pipe_w[d] = -1;
        c.out_len[d] = 0;
        c.splice[d] = c.recv_is_splice[d] = c.in_parked[d] = c.in_cancelled[d] = false;
        c.in_local[d] = c.nonblock[d] = false;
    }
    c.routed.reset();
    if (outcome == StartOutcome::ok && proxied) {
        c.routed = std::make_unique<Routed>();
        c.routed->client = client;
        c.routed->await_proxy = true;
        outcome = StartOutcome::proxy_header;
    } else if (outcome == StartOutcome::ok && routed) {
        outcome = start_routed(c, client, orig);  // may wait for the client's first bytes
    }
    if (cfg_.log_connections) {
        const char* why = outcome == StartOutcome::ok             ? ""
                          : outcome == StartOutcome::self_connect ? " refused (own listener)"
                          : outcome == StartOutcome::no_origdst   ? " refused (no original dst)"
                                                                  : " refused (upstream socket)";
        log::write(log::Level::info, "tpengine: worker %u: client %s original %s upstream %s%s",
                   cfg_.index, format_addr(unmap_v4(client)).c_str(), format_addr(orig).c_str(),
                   format_addr(c.target).c_str(), why);
    }
    Actions acts;
    c.relay.on_start(now_, outcome, acts);
    execute(s, acts);
    return true;
}

void Worker::handle_conn(const UserData& u, const io_uring_cqe* cqe) {
    Pool::Slot* slot = pool_.find(u.slot, u.gen);
    if (slot == nullptr) {  // stale: its connection is gone; keep the buffer, though
        if (cqe->flags & IORING_CQE_F_BUFFER) {
            bufs_.release(static_cast<uint16_t>(cqe->flags >> IORING_CQE_BUFFER_SHIFT));
        }
        return;
    }
    Conn& c = slot->value;
    Actions acts;
    int res = cqe->res;
    switch (u.op) {
        case Op::connect:
            if (res == 0 && (c.splice[0] || c.splice[1]) && !set_nonblock(c, Side::upstream)) {
                res = -errno;  // splicing began while connecting and cannot go on safely
            }
            if (res == 0 && c.connect_ns != 0) {
                uint64_t us = (mono_ns() - c.connect_ns) / 1000;
                ListenerCounters::add(c.ctr->connect_time[connect_bucket(us)], 1);
                ListenerCounters::add(c.ctr->connect_time_sum_us, us);
            } else if (res < 0 && res != -ECANCELED) {
                c.connect_err = -res;
                ListenerCounters::add(c.ctr->connect_errors[connect_errno_slot(-res)], 1);
            }
            c.relay.on_connect(now_, res, acts);
            break;
        case Op::recv_client:
        case Op::recv_upstream: {
            Side side = u.op == Op::recv_client ? Side::client : Side::upstream;
            bool has_buf = cqe->flags & IORING_CQE_F_BUFFER;
            bool more = cqe->flags & IORING_CQE_F_MORE;
            uint16_t bid = static_cast<uint16_t>(cqe->flags >> IORING_CQE_BUFFER_SHIFT);
            if (res == 0 && c.first_eof < 0) {
                c.first_eof = static_cast<int8_t>(idx(side));
            }
            if (has_buf) {
                bufs_.taken(bid);
                ++recvs_since_trim_;
            }
            Relay::Phase ph = c.relay.phase();
            bool early = ph == Relay::Phase::sniffing || ph == Relay::Phase::handshaking;
            if (cfg_.splice && has_buf && res == static_cast<int>(bufs_.buffer_size()) &&
                !c.splice[idx(side)] && !early) {
                start_splice(c, side);  // a full buffer: bulk; splice from the next receive
            }
            // A proxy's handshake reply is read from the buffer itself.
            const uint8_t* data = early && has_buf && bid < token_base_ ? bufs_.addr(bid) : nullptr;
            c.relay.on_recv(now_, side, res, has_buf, bid, more, acts, data);
            break;
        }
        case Op::send_client:
        case Op::send_upstream: {
            Side side = u.op == Op::send_client ? Side::client : Side::upstream;
            int from = idx(other(side));
            if (c.in_parked[from]) {  // a splice-in waiting behind copied bytes: room now
                c.in_parked[from] = false;
                arm_recv(c, other(side), u.gen, u.slot);
            }
            if (res > 0) {
                count_bytes(c, side, static_cast<uint64_t>(res));
            }
            c.relay.on_send(now_, side, res, acts);
            break;
        }
        case Op::shutdown_client:
        case Op::shutdown_upstream:
            c.relay.on_shutdown(u.op == Op::shutdown_client ? Side::client : Side::upstream, res,
                                acts);
            break;
        case Op::watch_client:
            c.relay.on_watch(res, acts);
            break;
        case Op::splice_in_client:
        case Op::splice_in_upstream:
            splice_in(c, u.op == Op::splice_in_client ? Side::client : Side::upstream, u.gen,
                      u.slot, res, acts);
            break;
        case Op::splice_out_client:
        case Op::splice_out_upstream:
            splice_out(c, u.op == Op::splice_out_client ? Side::client : Side::upstream, u.gen,
                       u.slot, res, acts);
            break;
        case Op::cancel_client:
        case Op::cancel_upstream:
            c.relay.on_cancel_done(u.op == Op::cancel_client ? Side::client : Side::upstream, acts);
            break;
        case Op::sniff:
            sniff_conn(c, res == 1, acts);
            break;
        default:
            return;
    }
    execute(u.slot, acts);
}

void Worker::execute(uint32_t s, const Actions& acts) {
    if (acts.overflow) {
        log_limited("BUG: relay action list overflow", EOVERFLOW);
    }
    Pool::Slot& slot = pool_.slot(s);
    Conn& c = slot.value;
    const uint32_t gen = slot.gen;
    for (const Action& a : acts) {
        int fd = c.fd[idx(a.side)];
        switch (a.type) {
            case ActionType::connect: {
                io_uring_sqe* sqe = ring_.get_sqe();
                io_uring_prep_connect(sqe, c.fd[1], c.target.get(), c.target.len);
                c.connect_ns = mono_ns();
                io_uring_sqe_set_data64(sqe, ud(Op::connect, gen, s));
                break;
            }
            case ActionType::recv:
                arm_recv(c, a.side, gen, s);
                break;
            case ActionType::recv_later:
                starved_.push_back(Starved{s, gen, a.side});
                WorkerStats::add(stats_.buffer_starved, 1);
                break;
            case ActionType::send: {
                if (a.buf >= token_base_) {  // bytes in the direction's pipe
                    // Try the splice at once (the socket usually has room); splice_out arms a
                    // POLLOUT only when it would block.
                    c.out_len[idx(other(a.side))] = a.len;
                    complete_locally(ud(splice_out_op(a.side), gen, s), 0);
                    break;
                }
                if (a.len <= kDirectSendMax && batch_ <= kDirectSendBatch && cfg_.direct_send) {
                    // A lone small send (a quiet moment: few completions in this pass) goes
                    // straight out: the worker then sleeps in one io_uring_enter instead of
                    // submitting the send in one and sleeping in the next (the send's own CQE
                    // ends that wait at once). Busy passes batch their sends in one enter.
                    ssize_t n =
                        ::send(fd, bufs_.addr(a.buf) + a.off, a.len, MSG_DONTWAIT | MSG_NOSIGNAL);
                    if (n > 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) {
                        complete_locally(ud(send_op(a.side), gen, s),
                                         n > 0 ? static_cast<int>(n) : -errno);
                        break;
                    }
                }
                io_uring_sqe* sqe = ring_.get_sqe();
                // MSG_WAITALL: io_uring itself continues a short send on a stream socket.
                io_uring_prep_send(sqe, fd, bufs_.addr(a.buf) + a.off, a.len,
                                   MSG_NOSIGNAL | MSG_WAITALL);
                io_uring_sqe_set_data64(sqe, ud(send_op(a.side), gen, s));
                break;
            }
            case ActionType::shutdown: {
                // IORING_OP_SHUTDOWN always goes to an io-wq thread (a wake-up and two context
                // switches per connection); shutdown(SHUT_WR) on TCP never blocks, and the relay
                // only asks once the direction is drained.
                int r = ::shutdown(fd, SHUT_WR);
                complete_locally(ud(shutdown_op(a.side), gen, s), r == 0 ? 0 : -errno);
                break;
            }
            case ActionType::cancel_all: {
                unpark_cancelled(c, a.side, gen, s);
                io_uring_sqe* sqe = ring_.get_sqe();
                io_uring_prep_cancel_fd(sqe, fd, IORING_ASYNC_CANCEL_ALL);
                io_uring_sqe_set_data64(sqe, ud(cancel_op(a.side), gen, s));
                break;
            }
            case ActionType::cancel_recv: {
                unpark_cancelled(c, a.side, gen, s);
                io_uring_sqe* sqe = ring_.get_sqe();
                Op target = c.recv_is_splice[idx(a.side)] ? splice_in_op(a.side) : recv_op(a.side);
                io_uring_prep_cancel64(sqe, ud(target, gen, s), 0);
                io_uring_sqe_set_data64(sqe, ud(cancel_op(a.side), gen, s));
                break;
            }
            case ActionType::watch: {
                io_uring_sqe* sqe = ring_.get_sqe();
                io_uring_prep_poll_add(sqe, fd, POLLERR | POLLHUP);
                io_uring_sqe_set_data64(sqe, ud(Op::watch_client, gen, s));
                break;
            }
            case ActionType::cancel_watch: {
                io_uring_sqe* sqe = ring_.get_sqe();
                io_uring_prep_cancel64(sqe, ud(Op::watch_client, gen, s), 0);
                io_uring_sqe_set_data64(sqe, ud(Op::cancel_client, gen, s));
                break;
            }
            case ActionType::release_buf:
                release_buf(a.buf);
                break;
            case ActionType::release_chain: {
                uint16_t b = a.buf;
                for (uint32_t i = 0; i < a.len; ++i) {
                    uint16_t next = chain_next_[b];
                    release_buf(b);
                    b = next;
                }
                break;
            }
            case ActionType::close:
                if (fd >= 0) {
                    int queued = 0;
                    if (a.reset && a.drain_first && ioctl(fd, SIOCOUTQ, &queued) == 0 &&
                        queued > 0) {
                        const plan::Timeouts& t = listeners_[c.listener]->shared->cfg.timeouts;
                        uint64_t wait = t.half_closed_ms ? t.half_closed_ms : 10'000;
                        lingering_.push_back(Lingering{fd, now_ + wait});
                        c.fd[idx(a.side)] = -1;
                        break;
                    }
                    if (a.reset) {
                        set_linger_reset(fd);
                    }
                    ::close(fd);
                    c.fd[idx(a.side)] = -1;
                }
                break;
            case ActionType::send_handshake: {
                io_uring_sqe* sqe = ring_.get_sqe();
                io_uring_prep_send(sqe, fd, c.relay.handshake_data() + a.off, a.len,
                                   MSG_NOSIGNAL | MSG_WAITALL);
                io_uring_sqe_set_data64(sqe, ud(send_op(a.side), gen, s));
                break;
            }
            case ActionType::sniff:
                complete_locally(ud(Op::sniff, gen, s), a.reset ? 1 : 0);
                break;
            case ActionType::arm_timer:
                wheel_.arm(s, a.deadline_ms);
                break;
            case ActionType::disarm_timer:
                wheel_.disarm(s);
                break;
            case ActionType::finish: {
                uint32_t li = c.listener;
                if (a.cause == CloseCause::handshake_failed ||
                    a.cause == CloseCause::handshake_timeout) {
                    WorkerStats::add(
                        stats_.handshake[static_cast<size_t>(c.relay.handshake_cause())], 1);
                    ListenerCounters::add(c.ctr->handshake_failures, 1);
                }
                c.routed.reset();
                count_finish(s, c, a.cause);
                listeners_[li]->shared->active.fetch_sub(1, std::memory_order_relaxed);
                wheel_.disarm(s);
                end_splice(c);
                pool_.release(s);
                try_resume(li);
                return;  // always the last action; the slot may be reused from here on
            }
        }
    }
}

void Worker::prep_recv(int fd, Side side, uint32_t gen, uint32_t slot) {
    // One multishot receive per direction for as long as the relay wants bytes: no re-submit
    // and no poll re-arm per message. Buffers come from the provided ring.
    io_uring_sqe* sqe = ring_.get_sqe();
    io_uring_prep_recv_multishot(sqe, fd, nullptr, 0, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = bufs_.group();
    io_uring_sqe_set_data64(sqe, ud(recv_op(side), gen, slot));
}

void Worker::release_buf(uint16_t b) {
    if (b >= token_base_) {
        free_tokens_.push_back(b);
    } else {
        bufs_.release(b);
    }
}

void Worker::arm_recv(Conn& c, Side side, uint32_t gen, uint32_t slot) {
    int d = idx(side);
    c.recv_is_splice[d] = c.splice[d];
    if (c.splice[d]) {
        io_uring_sqe* sqe = ring_.get_sqe();
        io_uring_prep_poll_add(sqe, c.fd[d], POLLIN);
        io_uring_sqe_set_data64(sqe, ud(splice_in_op(side), gen, slot));
    } else {
        prep_recv(c.fd[d], side, gen, slot);
    }
}

void Worker::start_splice(Conn& c, Side from) {
    int d = idx(from);
    if (spliced_dirs_ >= kMaxSplicedDirs) {
        return;
    }
    bool connected =
        c.relay.phase() != Relay::Phase::idle && c.relay.phase() != Relay::Phase::connecting;
    if (!set_nonblock(c, Side::client) || (connected && !set_nonblock(c, Side::upstream))) {
        return;  // splicing needs non-blocking sockets: stay with copies
    }
    int p[2];
    if (pipe2(p, O_NONBLOCK | O_CLOEXEC) != 0) {
        return;  // out of descriptors: stay with copies
    }
    fcntl(p[1], F_SETPIPE_SZ, kPipeSize);
    c.pipe_r[d] = p[0];
    c.pipe_w[d] = p[1];
    c.splice[d] = true;
    ++spliced_dirs_;
}

bool Worker::set_nonblock(Conn& c, Side side) {
    // SPLICE_F_NONBLOCK covers only the pipe end: splice() into a socket without O_NONBLOCK
    // waits until the whole length fits, which would stall the worker (and deadlock a relay
    // whose peer is itself waiting for us to read). io_uring receives and sends still poll on
    // a non-blocking socket; an -EAGAIN that reaches us anyway is retried by the relay.
    int d = idx(side);
    if (c.nonblock[d] || c.fd[d] < 0) {
        return c.nonblock[d];
    }
    int fl = fcntl(c.fd[d], F_GETFL);
    if (fl >= 0 && fcntl(c.fd[d], F_SETFL, fl | O_NONBLOCK) == 0) {
        c.nonblock[d] = true;
    }
    return c.nonblock[d];
}

void Worker::end_splice(Conn& c) {
    for (int d = 0; d < 2; ++d) {
        if (c.pipe_r[d] >= 0) {
            ::close(c.pipe_r[d]);
            ::close(c.pipe_w[d]);
            c.pipe_r[d] = c.pipe_w[d] = -1;
        }
        if (c.splice[d]) {
            c.splice[d] = false;
            --spliced_dirs_;
        }
    }
}

void Worker::unpark_cancelled(Conn& c, Side side, uint32_t gen, uint32_t slot) {
    // A parked splice-in is not in the kernel, so no cancel can reach it: complete it with
    // ECANCELED through a NOP, as the relay expects of a cancelled receive.
    int d = idx(side);
    if (c.in_local[d]) {  // its local completion is still to come: make it the cancellation
        c.in_cancelled[d] = true;
        return;
    }
    if (c.in_parked[d]) {
        c.in_parked[d] = false;
        c.in_cancelled[d] = true;
        io_uring_sqe* sqe = ring_.get_sqe();
        io_uring_prep_nop(sqe);
        io_uring_sqe_set_data64(sqe, ud(splice_in_op(side), gen, slot));
    }
}

void Worker::splice_in(Conn& c, Side from, uint32_t gen, uint32_t slot, int res, Actions& acts) {
    int d = idx(from);
    bool local = c.in_local[d];
    c.in_local[d] = false;
    if (c.in_cancelled[d]) {
        c.in_cancelled[d] = false;
        c.relay.on_recv(now_, from, -ECANCELED, false, 0, false, acts);
        return;
    }
    if (res >= 0 && closing(c)) {
        // Torn down earlier in this pass (its cancel found nothing in the kernel): parking now
        // would wait for a splice-out that will not come.
        res = -ECANCELED;
    }
    if (res < 0) {
        c.relay.on_recv(now_, from, res, false, 0, false, acts);
        return;
    }
    if (free_tokens_.empty()) {  // cannot happen with kTokens >= depth * kMaxSplicedDirs
        c.relay.on_recv(now_, from, -ENOBUFS, false, 0, false, acts);
        return;
    }
    ssize_t n = splice(c.fd[d], nullptr, c.pipe_w[d], nullptr, kSpliceChunk,
                       SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
    if (n > 0) {
        uint16_t token = free_tokens_.back();
        free_tokens_.pop_back();
        c.relay.on_recv(now_, from, static_cast<int>(n), true, token, false, acts);
    } else if (n == 0) {
        if (c.first_eof < 0) {
            c.first_eof = static_cast<int8_t>(d);
        }
        c.relay.on_recv(now_, from, 0, false, 0, false, acts);
    } else if (errno == EAGAIN) {
        if (c.relay.queued(from) > 0 && !local) {
            c.in_parked[d] = true;  // the pipe is full: resume after the next splice-out
        } else {
            arm_recv(c, from, gen, slot);
        }
    } else {
        c.relay.on_recv(now_, from, -errno, false, 0, false, acts);
    }
}

void Worker::splice_out(Conn& c, Side to, uint32_t gen, uint32_t slot, int res, Actions& acts) {
    Side from = other(to);
    int d = idx(from);
    if (res >= 0 && closing(c)) {
        // Queued before a teardown in the same pass: a POLLOUT armed now would escape the
        // teardown's cancel and hold the slot until the peer reads.
        res = -ECANCELED;
    }
    if (res < 0) {
        c.relay.on_send(now_, to, res, acts);
        return;
    }
    ssize_t n = splice(c.pipe_r[d], nullptr, c.fd[idx(to)], nullptr, c.out_len[d],
                       SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
    if (n < 0 && errno == EAGAIN) {
        io_uring_sqe* sqe = ring_.get_sqe();
        io_uring_prep_poll_add(sqe, c.fd[idx(to)], POLLOUT);
        io_uring_sqe_set_data64(sqe, ud(splice_out_op(to), gen, slot));
        return;
    }
    int r = n > 0 ? static_cast<int>(n) : (n == 0 ? -EIO : -errno);
    if (n > 0) {
        count_bytes(c, to, static_cast<uint64_t>(n));
    }
    if (c.in_parked[d]) {  // the pipe has room again; the socket most likely has bytes
        c.in_parked[d] = false;
        c.in_local[d] = true;
        complete_locally(ud(splice_in_op(from), gen, slot), 0);
    }
    c.relay.on_send(now_, to, r, acts);
}

void Worker::complete_locally(uint64_t user_data, int res) {
    local_.push_back(LocalCompletion{user_data, res});
}

void Worker::drain_local() {
    // Handling one may queue more (a splice-out that frees room for a splice-in); each round
    // takes what is queued now, so the loop ends once no handler adds work.
    while (!local_.empty()) {
        local_scratch_.swap(local_);
        for (const LocalCompletion& l : local_scratch_) {
            io_uring_cqe cqe{};
            cqe.user_data = l.user_data;
            cqe.res = l.res;
            handle(&cqe);
        }
        local_scratch_.clear();
    }
}

void Worker::retry_starved(size_t limit) {
    // Oldest first, and about as many as there are buffers to take, so a dry ring does not
    // turn into a storm of receives that fail again.
    starved_scratch_.clear();
    size_t n = limit < starved_.size() ? limit : starved_.size();
    starved_scratch_.assign(starved_.begin(), starved_.begin() + static_cast<ptrdiff_t>(n));
    starved_.erase(starved_.begin(), starved_.begin() + static_cast<ptrdiff_t>(n));
    for (const Starved& st : starved_scratch_) {
        Pool::Slot* slot = pool_.find(st.slot, st.gen);
        if (slot == nullptr) {
            continue;
        }
        Conn& c = slot->value;
        Relay::Phase ph = c.relay.phase();
        if (ph == Relay::Phase::closing || ph == Relay::Phase::done) {
            Actions acts;
            c.relay.on_recv(now_, st.side, -ECANCELED, false, 0, acts);
            execute(st.slot, acts);
            continue;
        }
        arm_recv(c, st.side, st.gen, st.slot);
    }
}

void Worker::check_lingering(bool force) {
    size_t keep = 0;
    for (const Lingering& l : lingering_) {
        int queued = 0;
        if (!force && now_ < l.deadline_ms && ioctl(l.fd, SIOCOUTQ, &queued) == 0 && queued > 0) {
            lingering_[keep++] = l;
            continue;
        }
        set_linger_reset(l.fd);
        ::close(l.fd);
    }
    lingering_.resize(keep);
}

namespace {
CloseReason reason_of(CloseCause cause, int first_eof, int connect_err) {
    switch (cause) {
        case CloseCause::normal:
            return first_eof == idx(Side::upstream) ? CloseReason::upstream_eof
                                                    : CloseReason::client_eof;
        case CloseCause::client_reset:
            return CloseReason::client_reset;
        case CloseCause::upstream_reset:
            return CloseReason::upstream_reset;
        case CloseCause::connect_failed:
            return connect_err == ECONNREFUSED ? CloseReason::connect_refused
                                               : CloseReason::connect_failed;
        case CloseCause::connect_timeout:
            return CloseReason::connect_timeout;
        case CloseCause::idle_timeout:
            return CloseReason::idle_timeout;
        case CloseCause::half_closed_timeout:
            return CloseReason::half_closed_timeout;
        case CloseCause::self_connect:
            return CloseReason::loop_refused;
        case CloseCause::no_origdst:
            return CloseReason::no_origdst;
        case CloseCause::shutdown:
            return CloseReason::shutdown;
        case CloseCause::handshake_failed:
            return CloseReason::handshake_failed;
        case CloseCause::handshake_timeout:
            return CloseReason::handshake_timeout;
        case CloseCause::rejected:
            return CloseReason::rejected;
        case CloseCause::bad_proxy_header:
            return CloseReason::bad_proxy_header;
        case CloseCause::error:
        case CloseCause::count_:
            break;
    }
    return CloseReason::error;
}
}  // namespace

void Worker::count_finish(uint32_t slot, Conn& c, CloseCause cause) {
    WorkerStats::add(stats_.closed[static_cast<size_t>(cause)], 1);
    WorkerStats::sub(stats_.active, 1);
    CloseReason r = reason_of(cause, c.first_eof, c.connect_err);
    ListenerCounters::add(c.ctr->closed[static_cast<size_t>(r)], 1);
    ListenerCounters::sub(c.ctr->active, 1);
    if (cfg_.close_log != nullptr) {
        // Copies only: the writer thread turns the monotonic stamp into wall-clock time.
        CloseRecord rec;
        uint64_t dur = now_ - c.start_ms;
        rec.end_mono_ms = epoch_ns_ / 1'000'000 + now_;
        rec.duration_ms = dur;
        const plan::Listener& lc = listeners_[c.listener]->shared->cfg;
        if (slot < log_addrs_.size()) {
            const LogAddrs& a = log_addrs_[slot];
            set_record_addr(rec.client, unmap_v4(a.client));
            set_record_addr(rec.original, a.original);
            // A connection to the listener's own port reached it directly, not through a rule.
            if (!lc.rule.empty() && a.original.len != 0 && a.original.port() != lc.address.port()) {
                set_record_name(rec.rule, lc.rule);
            }
        }
        set_record_addr(rec.upstream, c.target);
        set_record_name(rec.listener, lc.name);
        rec.bytes_up = c.bytes[idx(Side::upstream)];
        rec.bytes_down = c.bytes[idx(Side::client)];
        rec.reason = r;
        rec.worker = static_cast<uint16_t>(cfg_.index);
        cfg_.close_log->push(rec);  // full: dropped and counted by the ring
    }
}

// Runs on the worker between batches. Addresses are looked up now (getpeername/getsockname),
// so accepting a connection pays nothing for this.
void Worker::list_connections(ConnQuery& q) {
    std::vector<ConnInfo> out;
    uint32_t cap = pool_.capacity();
    for (uint32_t i = 0; i < cap; ++i) {
        Pool::Slot& slot = pool_.slot(i);
        if (!slot.used) {
            continue;
        }
        const Conn& c = slot.value;
        const ListenerState& l = *listeners_[c.listener];
        ConnInfo ci;
        ci.worker = cfg_.index;
        ci.listener = l.shared->cfg.name;
        if (c.fd[0] >= 0) {
            ci.client = format_addr(unmap_v4(peer_addr(c.fd[0])));
            plan::SockAddr orig;
            if (l.shared->cfg.target == plan::UpstreamTarget::original) {
                orig = c.target;
            } else {
                orig = unmap_v4(local_addr(c.fd[0]));
            }
            ci.original = format_addr(orig);
        }
        ci.upstream = format_addr(c.target);
        ci.age_ms = now_ms() - c.start_ms;
        ci.bytes_up = c.bytes[idx(Side::upstream)];
        ci.bytes_down = c.bytes[idx(Side::client)];
        switch (c.relay.phase()) {
            case Relay::Phase::idle:
            case Relay::Phase::connecting:
                ci.state = "connecting";
                break;
            case Relay::Phase::relaying:
                ci.state = c.relay.half_closed() ? "half-closed" : "relaying";
                break;
            default:
                ci.state = "closing";
                break;
        }
        out.push_back(std::move(ci));
    }
    std::lock_guard<std::mutex> lock(q.mu);
    for (ConnInfo& ci : out) {
        q.conns.push_back(std::move(ci));
    }
    if (q.pending > 0) {
        --q.pending;
    }
    q.cv.notify_all();
}

}  // namespace tp::engine

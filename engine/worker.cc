// The worker's event loop: completions in batches, each routed by user_data to a listener,
// the tick, the command eventfd, or a connection's relay state machine, whose actions are
// turned back into io_uring requests here.
#include "engine/worker.h"

#include <fcntl.h>
#include <linux/sockios.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

namespace tp::engine {

namespace {
constexpr uint32_t kTickMs = 100;
constexpr uint64_t kFdPauseMs = 100;
constexpr uint32_t kTokens = 4096;          // chain ids for bytes held in pipes
constexpr uint32_t kMaxSplicedDirs = 2048;  // each holds at most Relay::depth tokens
constexpr int kPipeSize = 1 << 20;
constexpr size_t kSpliceChunk = 512 * 1024;  // two chunks fit the pipe
// A send of at most this many bytes, in a pass with at most this many completions, is made
// with send(2) at once; larger or busier ones are batched into the ring (measured in
// bench/RESULTS.md: -6.5% relay CPU per ping-pong request, rr64 unchanged).
constexpr uint32_t kDirectSendMax = 16384;
constexpr unsigned kDirectSendBatch = 2;

template <typename C>
bool closing(const C& c) {
    return c.relay.phase() == Relay::Phase::closing || c.relay.phase() == Relay::Phase::done;
}

uint64_t mono_ns() {
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000ull + static_cast<uint64_t>(ts.tv_nsec);
}

uint64_t ud(Op op, uint32_t gen, uint32_t slot) {
    return UserData{op, gen, slot}.pack();
}

Op recv_op(Side s) {
    return s == Side::client ? Op::recv_client : Op::recv_upstream;
}
Op send_op(Side s) {
    return s == Side::client ? Op::send_client : Op::send_upstream;
}
Op shutdown_op(Side s) {
    return s == Side::client ? Op::shutdown_client : Op::shutdown_upstream;
}
Op cancel_op(Side s) {
    return s == Side::client ? Op::cancel_client : Op::cancel_upstream;
}
Op splice_in_op(Side s) {
    return s == Side::client ? Op::splice_in_client : Op::splice_in_upstream;
}
Op splice_out_op(Side s) {
    return s == Side::client ? Op::splice_out_client : Op::splice_out_upstream;
}
}  // namespace

Worker::Worker(const WorkerConfig& cfg) : cfg_(cfg), wheel_(kTickMs) {
    wake_fd_.reset(eventfd(0, EFD_CLOEXEC));
    tick_ts_.tv_sec = 0;
    tick_ts_.tv_nsec = static_cast<long long>(kTickMs) * 1'000'000;
}

Worker::~Worker() {
    join();
    for (auto& l : listeners_) {
        for (int fd : l->held) {
            ::close(fd);
        }
    }
}

Result<void> Worker::start(std::vector<WorkerListener> listeners,
                           std::shared_ptr<const SelfSet> self_set) {
    if (!wake_fd_.valid()) {
        return errno_error("eventfd");
    }
    initial_ = std::move(listeners);
    self_set_ = std::move(self_set);
    thread_ = std::thread([this] { run(); });
    start_state_.wait(0);
    int st = start_state_.load();
    if (st < 0) {
        thread_.join();
        return Error{-st, start_what_};
    }
    return {};
}

void Worker::post(Command cmd) {
    {
        std::lock_guard<std::mutex> lock(mu_);
        commands_.push_back(std::move(cmd));
    }
    uint64_t one = 1;
    [[maybe_unused]] ssize_t n = ::write(wake_fd_.get(), &one, sizeof one);
}

void Worker::join() {
    if (thread_.joinable()) {
        thread_.join();
    }
}

uint64_t Worker::now_ms() const {
    return (mono_ns() - epoch_ns_) / 1'000'000;
}

void Worker::log_limited(const char* msg, int err) {
    if (log_ever_ && now_ - last_log_ms_ < 1000) {
        return;
    }
    log_ever_ = true;
    last_log_ms_ = now_;
    std::fprintf(stderr, "tpengine: worker %u: %s: %s\n", cfg_.index, msg, std::strerror(err));
}

Result<void> Worker::setup() {
    if (cfg_.cpu >= 0) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(cfg_.cpu, &set);
        pthread_setaffinity_np(pthread_self(), sizeof set, &set);
    }
    // Small rings: they are resident memory (bench: idle RSS). A full SQ is submitted early
    // by get_sqe(); a full CQ spills to the kernel overflow list (IORING_FEAT_NODROP).
    if (auto r = ring_.init(1024, 8192); !r) {
        return r;
    }
    ring_mode_ = ring_.mode_name();
    if (auto r = bufs_.init(ring_.get(), 0, cfg_.buffers, cfg_.buffer_size); !r) {
        return r;
    }
    token_base_ = bufs_.max_count();
    chain_next_.assign(token_base_ + kTokens, 0);
    chain_len_.assign(token_base_ + kTokens, 0);
    free_tokens_.clear();
    for (uint32_t t = 0; t < kTokens; ++t) {
        free_tokens_.push_back(static_cast<uint16_t>(token_base_ + kTokens - 1 - t));
    }
    epoch_ns_ = mono_ns();
    now_ = 0;
    io_uring_sqe* sqe = ring_.get_sqe();
    io_uring_prep_read(sqe, wake_fd_.get(), &wake_buf_, sizeof wake_buf_, 0);
    io_uring_sqe_set_data64(sqe, ud(Op::wake, 0, 0));
    arm_tick();
    Command c{CommandType::set_listeners, std::move(initial_), self_set_};
    apply(c);
    return {};
}

void Worker::run() {
    // Named for top -H, perf and ps: "tpengine-w0", "tpengine-w1"...
    char name[16];
    std::snprintf(name, sizeof name, "tpengine-w%u", cfg_.index);
    pthread_setname_np(pthread_self(), name);
    auto r = setup();
    if (!r) {
        start_what_ = r.error().what;
        start_state_.store(-(r.error().code ? r.error().code : EINVAL));
        start_state_.notify_all();
        return;
    }
    start_state_.store(1);
    start_state_.notify_all();
    loop();
    force_close_remaining();
    check_lingering(true);
    listeners_.clear();
}

void Worker::loop() {
    io_uring* ring = ring_.get();
    for (;;) {
        if (exit_requested_ && (pool_.used() == 0 || now_ >= exit_deadline_ms_)) {
            break;
        }
        // Local completions queued outside the CQE pass (retry_starved) must not wait.
        int rc = local_.empty() ? io_uring_submit_and_wait(ring, 1) : io_uring_submit(ring);
        if (rc < 0 && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY) {
            log_limited("io_uring_submit_and_wait", -rc);
        }
        now_ = now_ms();
        unsigned head;
        unsigned n = 0;
        io_uring_cqe* cqe;
        batch_ = io_uring_cq_ready(ring);
        io_uring_for_each_cqe(ring, head, cqe) {
            handle(cqe);
            ++n;
        }
        io_uring_cq_advance(ring, n);
        drain_local();
        if (!starved_.empty()) {
            bufs_.grow();  // the ring ran dry: add a chunk, up to the configured maximum
        }
        int returned = bufs_.flush();
        if (returned > 0 && !starved_.empty()) {
            retry_starved(static_cast<size_t>(returned));
        }
        if (!tick_armed_ && needs_tick()) {
            arm_tick();
        }
    }
}

bool Worker::needs_tick() const {
    // An idle worker sleeps until something arrives instead of waking ten times a second
    // (gateways idle most of the time). Anything with a deadline keeps the tick going.
    if (pool_.used() > 0 || !lingering_.empty() || !starved_.empty() || exit_requested_ ||
        closing_all_) {
        return true;
    }
    for (const auto& l : listeners_) {
        if (l->resume_at_ms > now_ || l->limit_paused || !l->held.empty()) {
            return true;
        }
    }
    return false;
}

void Worker::arm_tick() {
    io_uring_sqe* sqe = ring_.get_sqe();
    io_uring_prep_timeout(sqe, &tick_ts_, 0, 0);
    io_uring_sqe_set_data64(sqe, ud(Op::tick, 0, 0));
    tick_armed_ = true;
}

void Worker::handle(const io_uring_cqe* cqe) {
    UserData u = UserData::unpack(cqe->user_data);
    switch (u.op) {
        case Op::accept:
            handle_accept(u.slot, cqe);
            if (u.gen == listeners_[u.slot]->arm_gen && !(cqe->flags & IORING_CQE_F_MORE)) {
                ListenerState& l = *listeners_[u.slot];
                l.armed = false;
                if (l.retired) {
                    l.fd.reset();
                } else {
                    maybe_arm_accept(u.slot);
                }
            }
            return;
        case Op::tick:
            tick_armed_ = false;
            on_tick();
            return;
        case Op::wake: {
            on_wake();
            io_uring_sqe* sqe = ring_.get_sqe();
            io_uring_prep_read(sqe, wake_fd_.get(), &wake_buf_, sizeof wake_buf_, 0);
            io_uring_sqe_set_data64(sqe, ud(Op::wake, 0, 0));
            return;
        }
        case Op::ignore:
        case Op::none:
            return;
        default:
            handle_conn(u, cqe);
            return;
    }
}

void Worker::handle_accept(uint32_t li, const io_uring_cqe* cqe) {
    ListenerState& l = *listeners_[li];
    int res = cqe->res;
    if (res >= 0) {
        if (l.retired || !accepting_) {
            set_linger_reset(res);
            ::close(res);
            return;
        }
        if (!take_place(*l.shared)) {
            l.held.push_back(res);
            pause_for_limit(li);
            return;
        }
        start_conn(li, res);
        uint32_t max = l.shared->cfg.max_connections;
        if (max > 0 && l.shared->active.load(std::memory_order_relaxed) >= max) {
            pause_for_limit(li);
        }
        return;
    }
    switch (-res) {
        case EMFILE:
        case ENFILE:
        case ENOBUFS:
        case ENOMEM:
            // Pause briefly instead of spinning on a listener the kernel keeps reporting.
            l.resume_at_ms = now_ + kFdPauseMs;
            WorkerStats::add(stats_.accept_paused, 1);
            log_limited("accept paused (out of file descriptors or memory)", -res);
            if (cqe->flags & IORING_CQE_F_MORE) {
                cancel_accept(li);
            }
            return;
        default:  // ECANCELED (ours), ECONNABORTED...: nothing to do
            return;
    }
}

bool Worker::take_place(ListenerShared& l) {
    uint32_t max = l.cfg.max_connections;
    if (max == 0) {
        l.active.fetch_add(1, std::memory_order_relaxed);
        return true;
    }
    uint32_t cur = l.active.load(std::memory_order_relaxed);
    while (cur < max) {
        if (l.active.compare_exchange_weak(cur, cur + 1, std::memory_order_relaxed)) {
            return true;
        }
    }
    return false;
}

void Worker::arm_accept(uint32_t li) {
    ListenerState& l = *listeners_[li];
    l.arm_gen = (l.arm_gen + 1) & UserData::gen_mask;
    io_uring_sqe* sqe = ring_.get_sqe();
    io_uring_prep_multishot_accept(sqe, l.fd.get(), nullptr, nullptr, SOCK_CLOEXEC);
    io_uring_sqe_set_data64(sqe, ud(Op::accept, l.arm_gen, li));
    l.armed = true;
}

void Worker::cancel_accept(uint32_t li) {
    ListenerState& l = *listeners_[li];
    io_uring_sqe* sqe = ring_.get_sqe();
    io_uring_prep_cancel64(sqe, ud(Op::accept, l.arm_gen, li), 0);
    io_uring_sqe_set_data64(sqe, ud(Op::ignore, 0, 0));
}

void Worker::maybe_arm_accept(uint32_t li) {
    ListenerState& l = *listeners_[li];
    if (!l.armed && !l.retired && accepting_ && !l.limit_paused && now_ >= l.resume_at_ms &&
        l.fd.valid()) {
        arm_accept(li);
    }
}

void Worker::pause_for_limit(uint32_t li) {
    ListenerState& l = *listeners_[li];
    if (l.limit_paused) {
        return;
    }
    l.limit_paused = true;
    WorkerStats::add(stats_.accept_paused, 1);
    if (l.armed) {
        cancel_accept(li);
    }
}

void Worker::try_resume(uint32_t li) {
    ListenerState& l = *listeners_[li];
    if (!l.limit_paused) {
        return;
    }
    while (!l.held.empty() && accepting_ && !l.retired) {
        if (!take_place(*l.shared)) {
            return;
        }
        int fd = l.held.front();
        l.held.erase(l.held.begin());
        start_conn(li, fd);
    }
    uint32_t max = l.shared->cfg.max_connections;
    if (max == 0 || l.shared->active.load(std::memory_order_relaxed) < max) {
        l.limit_paused = false;
        maybe_arm_accept(li);
    }
}

void Worker::start_conn(uint32_t li, int fd) {
    ListenerState& l = *listeners_[li];
    const plan::Listener& lc = l.shared->cfg;
    WorkerStats::add(stats_.accepted, 1);
    WorkerStats::add(stats_.active, 1);
    int64_t slot = pool_.acquire();
    if (slot < 0) {
        set_linger_reset(fd);
        ::close(fd);
        WorkerStats::add(stats_.closed[static_cast<size_t>(CloseCause::error)], 1);
        WorkerStats::sub(stats_.active, 1);
        l.shared->active.fetch_sub(1, std::memory_order_relaxed);
        return;
    }
    wheel_.reserve_ids(pool_.capacity());
    uint32_t s = static_cast<uint32_t>(slot);
    Conn& c = pool_.slot(s).value;
    c.relay.init(lc.timeouts, BufChain{chain_next_.data(), chain_len_.data()});
    c.fd[0] = fd;
    c.fd[1] = -1;
    c.listener = li;
    c.target = plan::SockAddr{};
    for (int d = 0; d < 2; ++d) {
        c.pipe_r[d] = c.pipe_w[d] = -1;
        c.out_len[d] = 0;
        c.splice[d] = c.recv_is_splice[d] = c.in_parked[d] = c.in_cancelled[d] = false;
        c.in_local[d] = c.nonblock[d] = false;
    }

    plan::SockAddr client;
    if (lc.source != plan::SourceMode::proxy || cfg_.log_connections) {
        client = peer_addr(fd);
    }
    plan::SockAddr orig;
    StartOutcome outcome = StartOutcome::ok;
    if (lc.target == plan::UpstreamTarget::original) {
        if (!original_destination(fd, lc, orig)) {
            outcome = StartOutcome::no_origdst;
        } else if (self_set_ && self_set_->contains(orig)) {
            outcome = StartOutcome::self_connect;
        } else {
            c.target = orig;
        }
    } else if (l.shared->fixed_is_self) {
        outcome = StartOutcome::self_connect;
    } else {
        c.target = unmap_v4(lc.upstream_address);
        if (cfg_.log_connections) {
            original_destination(fd, lc, orig);
        }
    }
    if (outcome == StartOutcome::ok) {
        auto up = make_upstream(c.target, lc.source, client, cfg_.bypass_mark, lc.fast_open);
        if (!up) {
            outcome = StartOutcome::error;
            log_limited(up.error().what, up.error().code);
            int err = up.error().code;
            if ((err == EMFILE || err == ENFILE) && l.resume_at_ms <= now_) {
                // Out of descriptors: accepting more would only reset them too.
                l.resume_at_ms = now_ + kFdPauseMs;
                WorkerStats::add(stats_.accept_paused, 1);
                if (l.armed) {
                    cancel_accept(li);
                }
            }
        } else {
            c.fd[1] = up.value().release();
        }
    }
    if (cfg_.log_connections) {
        const char* why = outcome == StartOutcome::ok             ? ""
                          : outcome == StartOutcome::self_connect ? " refused (own listener)"
                          : outcome == StartOutcome::no_origdst   ? " refused (no original dst)"
                                                                  : " refused (upstream socket)";
        std::fprintf(stderr, "tpengine: worker %u: client %s original %s upstream %s%s\n",
                     cfg_.index, format_addr(unmap_v4(client)).c_str(), format_addr(orig).c_str(),
                     format_addr(c.target).c_str(), why);
    }
    Actions acts;
    c.relay.on_start(now_, outcome, acts);
    execute(s, acts);
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
            c.relay.on_connect(now_, res, acts);
            break;
        case Op::recv_client:
        case Op::recv_upstream: {
            Side side = u.op == Op::recv_client ? Side::client : Side::upstream;
            bool has_buf = cqe->flags & IORING_CQE_F_BUFFER;
            bool more = cqe->flags & IORING_CQE_F_MORE;
            uint16_t bid = static_cast<uint16_t>(cqe->flags >> IORING_CQE_BUFFER_SHIFT);
            if (cfg_.splice && has_buf && res == static_cast<int>(bufs_.buffer_size()) &&
                !c.splice[idx(side)]) {
                start_splice(c, side);  // a full buffer: bulk; splice from the next receive
            }
            c.relay.on_recv(now_, side, res, has_buf, bid, more, acts);
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
                WorkerStats::add(side == Side::upstream ? stats_.bytes_up : stats_.bytes_down,
                                 static_cast<uint64_t>(res));
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
                io_uring_sqe_set_data64(sqe, ud(Op::connect, gen, s));
                break;
            }
            case ActionType::recv:
                arm_recv(c, a.side, gen, s);
                break;
            case ActionType::recv_later:
                starved_.push_back(Starved{s, gen, a.side});
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
            case ActionType::arm_timer:
                wheel_.arm(s, a.deadline_ms);
                break;
            case ActionType::disarm_timer:
                wheel_.disarm(s);
                break;
            case ActionType::finish: {
                uint32_t li = c.listener;
                WorkerStats::add(stats_.closed[static_cast<size_t>(a.cause)], 1);
                WorkerStats::sub(stats_.active, 1);
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
        WorkerStats::add(to == Side::upstream ? stats_.bytes_up : stats_.bytes_down,
                         static_cast<uint64_t>(n));
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

void Worker::on_tick() {
    wheel_.advance(now_, [this](uint32_t id) {
        Pool::Slot& slot = pool_.slot(id);
        if (!slot.used) {
            return;
        }
        Actions acts;
        slot.value.relay.on_timer(now_, acts);
        execute(id, acts);
    });
    for (uint32_t li = 0; li < listeners_.size(); ++li) {
        try_resume(li);
        maybe_arm_accept(li);
    }
    if (!starved_.empty()) {
        retry_starved(starved_.size());
    }
    check_lingering(false);
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

void Worker::on_wake() {
    std::deque<Command> cmds;
    {
        std::lock_guard<std::mutex> lock(mu_);
        cmds.swap(commands_);
    }
    for (Command& c : cmds) {
        apply(c);
    }
}

void Worker::apply(Command& cmd) {
    switch (cmd.type) {
        case CommandType::set_listeners: {
            self_set_ = cmd.self_set;
            for (uint32_t li = 0; li < listeners_.size(); ++li) {
                ListenerState& l = *listeners_[li];
                bool kept = false;
                for (const WorkerListener& w : cmd.listeners) {
                    kept = kept || w.shared == l.shared;
                }
                if (!kept) {
                    retire_listener(li);
                }
            }
            for (WorkerListener& w : cmd.listeners) {
                bool known = false;
                for (auto& l : listeners_) {
                    known = known || l->shared == w.shared;
                }
                if (known || !w.fd.valid()) {
                    continue;
                }
                auto st = std::make_unique<ListenerState>();
                st->shared = w.shared;
                st->fd = std::move(w.fd);
                listeners_.push_back(std::move(st));
                maybe_arm_accept(static_cast<uint32_t>(listeners_.size() - 1));
            }
            return;
        }
        case CommandType::stop_accepting:
            stop_accepting();
            return;
        case CommandType::close_all:
            close_all();
            return;
        case CommandType::exit:
            stop_accepting();
            close_all();
            exit_requested_ = true;
            // Cancellations complete within microseconds; this only bounds a bug.
            exit_deadline_ms_ = now_ + 2000;
            return;
    }
}

// A retired listener accepts no more: connections it held back (over max_connections) are
// reset, and its socket closes once the multishot accept's cancellation completes.
void Worker::retire_listener(uint32_t li) {
    ListenerState& l = *listeners_[li];
    if (l.retired) {
        return;
    }
    l.retired = true;
    for (int fd : l.held) {
        set_linger_reset(fd);
        ::close(fd);
    }
    l.held.clear();
    if (l.armed) {
        cancel_accept(li);
    } else {
        l.fd.reset();
    }
}

void Worker::stop_accepting() {
    accepting_ = false;
    for (uint32_t li = 0; li < listeners_.size(); ++li) {
        retire_listener(li);
    }
}

void Worker::force_close_remaining() {
    uint32_t cap = pool_.capacity();
    for (uint32_t i = 0; i < cap; ++i) {
        Pool::Slot& slot = pool_.slot(i);
        if (!slot.used) {
            continue;
        }
        Conn& c = slot.value;
        log_limited("connection still busy at exit: closed by force", EBUSY);
        for (int d = 0; d < 2; ++d) {
            if (c.fd[d] >= 0) {
                set_linger_reset(c.fd[d]);
                ::close(c.fd[d]);
                c.fd[d] = -1;
            }
        }
        end_splice(c);
        WorkerStats::add(stats_.closed[static_cast<size_t>(CloseCause::shutdown)], 1);
        WorkerStats::sub(stats_.active, 1);
        listeners_[c.listener]->shared->active.fetch_sub(1, std::memory_order_relaxed);
        pool_.release(i);
    }
}

void Worker::close_all() {
    closing_all_ = true;
    uint32_t cap = pool_.capacity();
    for (uint32_t i = 0; i < cap; ++i) {
        Pool::Slot& slot = pool_.slot(i);
        if (!slot.used) {
            continue;
        }
        Actions acts;
        slot.value.relay.on_stop(acts);
        execute(i, acts);
    }
}

}  // namespace tp::engine

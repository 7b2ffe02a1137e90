// The worker's event loop: completions in batches, each routed by user_data to a listener,
// the tick, the command eventfd, or (in tcp_conn.cc) a connection's relay state machine; plus
// listeners, accept pauses, commands from other threads and graceful stop.
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

#include "engine/log.h"
#include "engine/udp_flows.h"
#include "engine/worker_internal.h"

namespace tp::engine {
using namespace worker_detail;

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
    log::write(log::Level::warning, "tpengine: worker %u: %s: %s", cfg_.index, msg,
               std::strerror(err));
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
    stats_.buffers.store(bufs_.count(), std::memory_order_relaxed);
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
    udp_ = std::make_unique<UdpFlows>(
        ring_, stats_,
        UdpConfig{cfg_.index, cfg_.bypass_mark, cfg_.udp_reply_sockets, cfg_.log_connections,
                  cfg_.udp_reply_mark, cfg_.udp_direct_send, cfg_.udp_gso, cfg_.udp_gro});
    Command c{CommandType::set_listeners, std::move(initial_), self_set_, nullptr};
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
    udp_.reset();  // unregisters its buffer ring from this (the submitting) thread
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
        if (!starved_.empty() &&
            bufs_.grow()) {  // the ring ran dry: add a chunk, up to the maximum
            WorkerStats::add(stats_.buffer_grows, 1);
            stats_.buffers.store(bufs_.count(), std::memory_order_relaxed);
        }
        udp_->after_pass(now_);
        if (trim_due_) {
            trim_due_ = false;
            maybe_trim();
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
        closing_all_ || recvs_since_trim_ > 0 || mem_paused_ || udp_->needs_tick()) {
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
                    finish_retire(u.slot);
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
        case Op::udp_listen:
        case Op::udp_upstream:
        case Op::udp_send:
        case Op::udp_socks:
            udp_->handle(u, cqe, now_);
            return;
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
        if ((l.retired && !l.serve_queue) || !accepting_) {
            set_linger_reset(res);
            ::close(res);
            return;
        }
        if (cfg_.mem && ++accepts_since_mem_check_ >= kMemCheckAccepts) {
            check_memory();
        }
        if (mem_paused_) {  // accepted before the pause took effect: refused, and counted
            set_linger_reset(res);
            ::close(res);
            WorkerStats::add(stats_.mem_refused, 1);
            return;
        }
        if (now_ < fd_recover_until_ms_ && drop_if_gone(res)) {
            return;
        }
        if (!take_place(*l.shared)) {
            l.held.push_back(res);
            pause_for_limit(li);
            return;
        }
        if (!start_conn(li, res)) {
            return;
        }
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
            log_limited("accept paused (out of file descriptors or memory)", -res);
            fd_exhausted(li);
            return;
        default:  // ECANCELED (ours), ECONNABORTED...: nothing to do
            return;
    }
}

// Out of descriptors (accept or the upstream socket): pause this listener briefly, and check
// what the backlog holds for a while once accepting again.
void Worker::fd_exhausted(uint32_t li) {
    ListenerState& l = *listeners_[li];
    fd_recover_until_ms_ = now_ + kFdPauseMs + kFdRecoverMs;
    if (l.resume_at_ms > now_) {
        return;  // already paused
    }
    l.resume_at_ms = now_ + kFdPauseMs;
    WorkerStats::add(stats_.accept_paused, 1);
    WorkerStats::add(stats_.accept_paused_fd, 1);
    ListenerCounters::add(l.ctr->accept_paused_fd, 1);
    if (l.armed) {
        cancel_accept(li);
    }
}

// A client that reset or closed without a byte while its connection waited in the backlog
// (or in `held`) is dropped here, before it costs an upstream socket and connect.
bool Worker::drop_if_gone(int fd) {
    if (!client_gone(fd)) {
        return false;
    }
    set_linger_reset(fd);
    ::close(fd);
    WorkerStats::add(stats_.stale_dropped, 1);
    return true;
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
    if (!l.armed && !l.retired && accepting_ && !l.limit_paused && !mem_paused_ &&
        now_ >= l.resume_at_ms && l.fd.valid()) {
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
    WorkerStats::add(stats_.accept_paused_limit, 1);
    ListenerCounters::add(l.ctr->accept_paused_limit, 1);
    if (l.armed) {
        cancel_accept(li);
    }
}

void Worker::try_resume(uint32_t li) {
    ListenerState& l = *listeners_[li];
    if (!l.limit_paused) {
        return;
    }
    while (!l.held.empty() && accepting_ && (!l.retired || l.serve_queue)) {
        if (!take_place(*l.shared)) {
            return;
        }
        int fd = l.held.front();
        l.held.erase(l.held.begin());
        if (drop_if_gone(fd)) {  // it waited: its client may have given up meanwhile
            l.shared->active.fetch_sub(1, std::memory_order_relaxed);
            continue;
        }
        if (!start_conn(li, fd)) {
            return;  // still out of descriptors: the tick tries again
        }
    }
    uint32_t max = l.shared->cfg.max_connections;
    if (max == 0 || l.shared->active.load(std::memory_order_relaxed) < max) {
        l.limit_paused = false;
        maybe_arm_accept(li);
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
    udp_->on_tick(now_);
    trim_due_ = true;  // checked in loop(), once the batch's completions are all handled
    if (cfg_.mem) {
        check_memory();
    }
}

// Sheds load before the kernel's OOM killer would: above the high mark every listener of this
// worker stops accepting (new clients wait in the listen queue, or are refused by the kernel
// once it is full); below the low mark accepting resumes. Live connections are not touched.
void Worker::check_memory() {
    accepts_since_mem_check_ = 0;
    uint64_t used = cfg_.mem->usage();
    if (!mem_paused_ && used >= cfg_.mem->high()) {
        mem_paused_ = true;
        WorkerStats::add(stats_.mem_paused, 1);
        if (!log_ever_ || now_ - last_log_ms_ >= 1000) {
            log_ever_ = true;
            last_log_ms_ = now_;
            std::fprintf(
                stderr, "tpengine: worker %u: accept paused: memory %llu KiB of %llu KiB (%s)\n",
                cfg_.index, static_cast<unsigned long long>(used >> 10),
                static_cast<unsigned long long>(cfg_.mem->limit() >> 10), cfg_.mem->source());
        }
        for (uint32_t li = 0; li < listeners_.size(); ++li) {
            if (listeners_[li]->armed) {
                cancel_accept(li);
            }
        }
        if (!tick_armed_) {
            arm_tick();
        }
    } else if (mem_paused_ && used < cfg_.mem->low()) {
        mem_paused_ = false;
        for (uint32_t li = 0; li < listeners_.size(); ++li) {
            maybe_arm_accept(li);
        }
    }
}

// Returns the provided buffers' pages once the traffic that touched them is gone: a burst or a
// set of stalled readers would otherwise leave the whole ring resident for good.
//
// Only where no buffer can be filled behind the worker's back: with DEFER_TASKRUN the kernel
// picks a buffer and copies into it only inside this thread's io_uring_enter, so once every
// completion of the batch is handled (the CQ empty, nothing in the overflow list) each buffer
// not marked taken is truly in the ring. Other ring modes run that work at any syscall's
// return, so they do not trim.
void Worker::maybe_trim() {
    if (recvs_since_trim_ == 0 || !(ring_.setup_flags() & IORING_SETUP_DEFER_TASKRUN)) {
        return;
    }
    io_uring* ring = ring_.get();
    if (io_uring_cq_ready(ring) != 0 ||
        (IO_URING_READ_ONCE(*ring->sq.kflags) & IORING_SQ_CQ_OVERFLOW)) {
        trim_due_ = true;  // completions still to handle: try after the next batch
        return;
    }
    bool idle = pool_.used() == 0;
    if (!idle && now_ < next_trim_check_ms_) {
        return;
    }
    uint32_t recent = recvs_since_trim_ - recvs_at_check_;
    recvs_at_check_ = recvs_since_trim_;
    next_trim_check_ms_ = now_ + kTrimCheckMs;
    if (recent > bufs_.count() / kTrimQuiet) {
        return;  // still busy: the pages would be faulted straight back in
    }
    // Buffers still held are trimmed on a later pass, once they are back in the ring.
    recvs_since_trim_ = bufs_.trim() > 0 ? 1 : 0;
    recvs_at_check_ = recvs_since_trim_;
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
            std::vector<std::shared_ptr<ListenerShared>> udp_ls, udp_replaces;
            std::vector<UniqueFd> udp_fds;
            for (WorkerListener& w : cmd.listeners) {
                if (w.shared->cfg.protocol != plan::Protocol::tcp) {
                    udp_ls.push_back(w.shared);
                    udp_replaces.push_back(w.replaces);
                    udp_fds.push_back(std::move(w.udp_fd));
                }
            }
            udp_->set_listeners(udp_ls, udp_replaces, udp_fds, self_set_.get());
            for (uint32_t li = 0; li < listeners_.size(); ++li) {
                ListenerState& l = *listeners_[li];
                bool kept = false;
                for (const WorkerListener& w : cmd.listeners) {
                    kept = kept || w.shared == l.shared || (w.replaces && w.replaces == l.shared);
                }
                if (!kept) {
                    retire_listener(li, true);  // its replacement is bound already
                }
            }
            for (uint32_t li = 0; li < listeners_.size(); ++li) {
                ListenerState& l = *listeners_[li];
                for (const WorkerListener& w : cmd.listeners) {
                    if (w.replaces && w.replaces == l.shared && !l.retired) {
                        // Same socket, new settings: new connections get them from now on.
                        if (l.fd.valid()) {
                            update_listener(l.fd.get(), l.shared->cfg, w.shared->cfg);
                        }
                        l.shared = w.shared;
                        try_resume(li);  // max_connections may have grown
                    }
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
                st->ctr = w.shared->counters ? &w.shared->counters->of(cfg_.index) : &spare_ctr_;
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
        case CommandType::list_connections:
            if (cmd.query) {
                list_connections(*cmd.query);
            }
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

// A retired listener accepts no more: its socket closes once the multishot accept's
// cancellation completes. Retired by a reload (`serve_queue`), it first serves what was
// already accepted or queued (its replacement, bound before, takes the new arrivals), so a
// reload resets nobody; stopped, it resets what it held back.
void Worker::retire_listener(uint32_t li, bool serve_queue) {
    ListenerState& l = *listeners_[li];
    if (l.retired) {
        if (!serve_queue) {
            l.serve_queue = false;
        }
        if (!serve_queue && !l.held.empty()) {
            for (int fd : l.held) {
                set_linger_reset(fd);
                ::close(fd);
            }
            l.held.clear();
        }
        return;
    }
    l.retired = true;
    l.serve_queue = serve_queue && accepting_;
    if (!l.serve_queue) {
        for (int fd : l.held) {
            set_linger_reset(fd);
            ::close(fd);
        }
        l.held.clear();
    }
    if (l.armed) {
        cancel_accept(li);
    } else {
        finish_retire(li);
    }
}

// The retired listener's multishot accept has ended. Closing a listening socket resets the
// connections in its accept queue, so a reload first accepts them (non-blocking, until the
// queue is empty) and relays them like any other; the socket closes right after, in the same
// pass. Left to chance: a handshake still in SYN_RECV on this socket at that instant.
void Worker::finish_retire(uint32_t li) {
    ListenerState& l = *listeners_[li];
    if (l.serve_queue && accepting_ && l.fd.valid()) {
        int fl = fcntl(l.fd.get(), F_GETFL);
        if (fl >= 0 && fcntl(l.fd.get(), F_SETFL, fl | O_NONBLOCK) == 0) {
            for (;;) {
                int fd = accept4(l.fd.get(), nullptr, nullptr, SOCK_CLOEXEC);
                if (fd < 0) {
                    if (errno == EMFILE || errno == ENFILE) {
                        log_limited("retired listener's queue not drained", errno);
                    }
                    break;  // EAGAIN: the queue is empty
                }
                if (!take_place(*l.shared)) {
                    l.held.push_back(fd);
                    l.limit_paused = true;
                    continue;
                }
                start_conn(li, fd);
            }
        }
    }
    l.fd.reset();
}

void Worker::stop_accepting() {
    accepting_ = false;
    udp_->stop_accepting();
    for (uint32_t li = 0; li < listeners_.size(); ++li) {
        retire_listener(li, false);
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
        count_finish(i, c, CloseCause::shutdown);
        listeners_[c.listener]->shared->active.fetch_sub(1, std::memory_order_relaxed);
        pool_.release(i);
    }
}

void Worker::close_all() {
    closing_all_ = true;
    udp_->close_all();
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

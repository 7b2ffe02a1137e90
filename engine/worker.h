#pragma once
// Worker: one thread pinned to one CPU, owning its io_uring, provided buffers, connection
// pool, listening sockets, timer wheel and counters. Other threads talk to it only through
// post(), which queues a command and wakes the ring through an eventfd.

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "config/plan.h"
#include "engine/buf_ring.h"
#include "engine/conn_log.h"
#include "engine/conn_pool.h"
#include "engine/handshake/upstream.h"
#include "engine/listener_stats.h"
#include "engine/mem_guard.h"
#include "engine/relay.h"
#include "engine/result.h"
#include "engine/ring.h"
#include "engine/route.h"
#include "engine/sock.h"
#include "engine/timer_wheel.h"
#include "engine/unique_fd.h"
#include "engine/user_data.h"
#include "engine/worker_stats.h"

namespace tp::engine {

// One listener as the engine sees it: its configuration and the connection count shared by
// every worker (touched on accept and close only, never per byte).
struct ListenerShared {
    ListenerShared() = default;
    // A reload that changes only settings a socket can take in place makes a new
    // ListenerShared around the same sockets and the same connection count.
    explicit ListenerShared(std::shared_ptr<std::atomic<uint32_t>> count)
        : counter(std::move(count)) {}

    plan::Listener cfg;
    bool fixed_is_self = false;  // the fixed upstream is one of our own listeners
    RouteTable routes;           // cfg.routes, ready for lookups
    std::shared_ptr<std::atomic<uint32_t>> counter = std::make_shared<std::atomic<uint32_t>>(0);
    std::atomic<uint32_t>& active = *counter;
    // Per-worker counter blocks (engine.cc); kept, like `counter`, by an in-place reload.
    std::shared_ptr<ListenerCounterSet> counters;
};

// A request for the live connections, answered by every worker between batches; the asker
// waits on it with a deadline (a worker never waits for the asker).
struct ConnQuery {
    std::mutex mu;
    std::condition_variable cv;
    unsigned pending = 0;  // workers yet to answer
    std::vector<ConnInfo> conns;
};

// A listener handed to one worker: the shared part plus this worker's own socket. An invalid
// fd means "keep the socket you already have for this listener".
struct WorkerListener {
    std::shared_ptr<ListenerShared> shared;
    UniqueFd fd;
    // Set for an in-place reload: the listener (and socket) this one takes over.
    std::shared_ptr<ListenerShared> replaces = nullptr;
    UniqueFd udp_fd;  // protocol udp or both (engine/udp_flows.h)
};

class UdpFlows;

struct WorkerConfig {
    unsigned index = 0;
    int cpu = -1;  // -1: not pinned
    uint32_t bypass_mark = 0;
    uint32_t buffer_size = 16384;
    uint32_t buffers = 4096;
    bool log_connections = false;
    CloseRing* close_log = nullptr;  // close records go here (owned by the engine); null = off
    bool splice = true;       // bulk directions move bytes socket -> pipe -> socket (no copies)
    bool direct_send = true;  // a lone small send uses send(2) instead of a ring round trip
    uint32_t udp_reply_sockets = 4096;
    uint32_t udp_reply_mark = 0;          // SO_MARK of UDP reply sockets (0 = bypass_mark)
    bool udp_direct_send = false;         // sendto(2) per datagram instead of ring SENDMSG
    bool udp_gso = true;                  // runs of one flow's datagrams in one UDP_SEGMENT send
    bool udp_gro = true;                  // UDP_GRO on UDP sockets (with udp_gso)
    std::shared_ptr<const MemGuard> mem;  // null or disabled: no memory limit
};

class Worker {
  public:
    enum class CommandType { set_listeners, stop_accepting, close_all, exit, list_connections };
    struct Command {
        CommandType type;
        std::vector<WorkerListener> listeners;    // set_listeners
        std::shared_ptr<const SelfSet> self_set;  // set_listeners
        std::shared_ptr<ConnQuery> query;         // list_connections
    };

    explicit Worker(const WorkerConfig& cfg);
    ~Worker();
    Worker(const Worker&) = delete;
    Worker& operator=(const Worker&) = delete;

    // Starts the thread with its first listeners; returns once its ring is ready (or failed).
    Result<void> start(std::vector<WorkerListener> listeners,
                       std::shared_ptr<const SelfSet> self_set);
    void post(Command cmd);
    void join();
    const WorkerStats& stats() const { return stats_; }
    const char* ring_mode() const { return ring_mode_; }

  private:
    // What a routed connection needs beyond a plain one (routed_conn.cc); allocated only for
    // connections of listeners with routes, so plain relaying carries one null pointer.
    struct Routed {
        hs::Upstream hs;
        plan::SockAddr client;
        plan::SockAddr orig;
        int upstream = -1;         // index into the listener's upstreams; -1 = the listener's own
        bool await_proxy = false;  // accept_proxy: the PROXY header comes first
        char name[256] = {};
        uint8_t name_len = 0;
    };
    struct Conn {
        Relay relay;
        std::unique_ptr<Routed> routed;
        int fd[2] = {-1, -1};
        uint32_t listener = 0;
        plan::SockAddr target;  // upstream address; stable while connect is in flight
        // Per direction (indexed by the source side): splice mode for bulk transfers.
        int pipe_r[2] = {-1, -1};
        int pipe_w[2] = {-1, -1};
        uint32_t out_len[2] = {0, 0};  // bytes the pending splice-out should move
        bool splice[2] = {false, false};
        bool recv_is_splice[2] = {false, false};  // the armed receive is a POLLIN for splice
        bool in_parked[2] = {false, false};       // splice-in waits for the pipe to drain
        bool in_cancelled[2] = {false, false};    // ... and was cancelled meanwhile
        bool in_local[2] = {false, false};        // a splice-in tried without a poll first
        bool nonblock[2] = {false, false};        // O_NONBLOCK set (for splice, see below)
        // Observability: plain fields written by this worker only (ctl connections, metrics).
        ListenerCounters* ctr = nullptr;  // the listener's block for this worker
        uint64_t bytes[2] = {0, 0};       // bytes delivered to client [0] / upstream [1]
        uint64_t start_ms = 0;            // worker clock at accept
        uint64_t connect_ns = 0;          // monotonic time the connect was issued
        int connect_err = 0;              // errno of a failed connect
        int8_t first_eof = -1;            // side that sent the first FIN (-1: none yet)
    };
    using Pool = ConnPool<Conn>;

    struct ListenerState {
        std::shared_ptr<ListenerShared> shared;
        UniqueFd fd;
        uint32_t arm_gen = 0;
        bool armed = false;               // a multishot accept is in flight
        bool retired = false;             // removed by reload or stopped
        bool serve_queue = false;         // retired by reload: what its queue holds is still served
        bool limit_paused = false;        // max_connections reached
        uint64_t resume_at_ms = 0;        // fd exhaustion pause
        std::vector<int> held;            // accepted, waiting for a place (max_connections, fds)
        ListenerCounters* ctr = nullptr;  // this worker's counter block of the listener
    };

    struct Lingering {  // closed by the relay, waiting for its send queue to drain before RST
        int fd;
        uint64_t deadline_ms;
    };

    // An operation the worker completed itself, without the kernel ring: handled like a CQE
    // after the current batch, so the relay sees every completion the same way.
    struct LocalCompletion {
        uint64_t user_data;
        int res;
    };

    struct Starved {
        uint32_t slot;
        uint32_t gen;
        Side side;
    };

    void run();
    Result<void> setup();
    void loop();
    void handle(const io_uring_cqe* cqe);
    void handle_accept(uint32_t li, const io_uring_cqe* cqe);
    void handle_conn(const UserData& ud, const io_uring_cqe* cqe);
    void on_tick();
    bool needs_tick() const;
    void arm_tick();
    void on_wake();
    void apply(Command& cmd);

    void arm_accept(uint32_t li);
    void cancel_accept(uint32_t li);
    void retire_listener(uint32_t li, bool serve_queue);
    void finish_retire(uint32_t li);
    void maybe_arm_accept(uint32_t li);
    void pause_for_limit(uint32_t li);
    void try_resume(uint32_t li);
    bool take_place(ListenerShared& l);
    bool drop_if_gone(int fd);
    void fd_exhausted(uint32_t li);
    // False: out of descriptors for the upstream socket; `fd` now waits first in `held`.
    bool start_conn(uint32_t li, int fd);
    StartOutcome start_routed(Conn& c, const plan::SockAddr& client, const plan::SockAddr& orig);
    StartOutcome route_conn(Conn& c, bool sniffed);
    void sniff_conn(Conn& c, bool final, Actions& acts);
    void proxy_header(Conn& c, std::span<const uint8_t> bytes, bool final, Actions& acts);
    void execute(uint32_t slot, const Actions& acts);
    void retry_starved(size_t limit);
    void complete_locally(uint64_t user_data, int res);
    void drain_local();
    void prep_recv(int fd, Side side, uint32_t gen, uint32_t slot);
    void arm_recv(Conn& c, Side side, uint32_t gen, uint32_t slot);
    void start_splice(Conn& c, Side from);
    bool set_nonblock(Conn& c, Side side);
    void unpark_cancelled(Conn& c, Side side, uint32_t gen, uint32_t slot);
    void end_splice(Conn& c);
    void splice_in(Conn& c, Side from, uint32_t gen, uint32_t slot, int res, Actions& acts);
    void splice_out(Conn& c, Side to, uint32_t gen, uint32_t slot, int res, Actions& acts);
    void stop_accepting();
    void close_all();
    void force_close_remaining();
    void release_buf(uint16_t b);
    void check_lingering(bool force);
    void maybe_trim();
    void check_memory();
    uint64_t now_ms() const;
    void log_limited(const char* msg, int err);
    void count_finish(uint32_t slot, Conn& c, CloseCause cause);  // tcp_conn.cc
    void count_bytes(Conn& c, Side to, uint64_t n) {              // bytes delivered to side `to`
        bool up = to == Side::upstream;
        WorkerStats::add(up ? stats_.bytes_up : stats_.bytes_down, n);
        ListenerCounters::add(up ? c.ctr->bytes_up : c.ctr->bytes_down, n);
        c.bytes[idx(to)] += n;
    }
    void list_connections(ConnQuery& q);  // tcp_conn.cc

    WorkerConfig cfg_;
    WorkerStats stats_;
    ListenerCounters spare_ctr_;  // for a listener handed over without counters
    struct LogAddrs {             // per slot, only while close records are on
        plan::SockAddr client;
        plan::SockAddr original;
    };
    std::vector<LogAddrs> log_addrs_;
    Ring ring_;
    BufRing bufs_;
    Pool pool_;
    TimerWheel wheel_;
    std::vector<std::unique_ptr<ListenerState>> listeners_;
    std::shared_ptr<const SelfSet> self_set_;
    std::vector<Starved> starved_;
    std::vector<Starved> starved_scratch_;
    std::vector<Lingering> lingering_;
    std::vector<LocalCompletion> local_;
    std::vector<LocalCompletion> local_scratch_;
    std::vector<uint16_t> chain_next_;  // BufChain storage: one entry per ring buffer
    std::vector<uint32_t> chain_len_;
    uint32_t token_base_ = 0;  // chain ids >= this stand for bytes in a pipe
    std::vector<uint16_t> free_tokens_;
    uint32_t spliced_dirs_ = 0;
    Actions acts_;

    UniqueFd wake_fd_;
    uint64_t wake_buf_ = 0;
    __kernel_timespec tick_ts_{};
    bool tick_armed_ = false;
    unsigned batch_ = 0;  // completions in the current pass
    std::mutex mu_;
    std::deque<Command> commands_;

    std::thread thread_;
    std::atomic<int> start_state_{0};  // 0 starting, 1 ready, <0 -errno
    const char* start_what_ = "";
    const char* ring_mode_ = "";
    std::vector<WorkerListener> initial_;

    uint64_t epoch_ns_ = 0;
    uint64_t now_ = 0;  // ms since the worker started, updated once per batch
    uint64_t last_log_ms_ = 0;
    uint64_t fd_recover_until_ms_ = 0;
    bool mem_paused_ = false;  // over the memory limit: accept nothing
    uint32_t accepts_since_mem_check_ = 0;
    bool trim_due_ = false;          // the tick asked for a trim check (maybe_trim)
    uint32_t recvs_since_trim_ = 0;  // buffer receives since the ring was last trimmed
    uint32_t recvs_at_check_ = 0;
    uint64_t next_trim_check_ms_ = 0;  // check accepted sockets for gone clients until then
    bool log_ever_ = false;
    bool accepting_ = true;
    bool exit_requested_ = false;
    uint64_t exit_deadline_ms_ = 0;
    bool closing_all_ = false;
    std::unique_ptr<UdpFlows> udp_;  // UDP listeners and flows; declared last: released first
};

}  // namespace tp::engine

#pragma once
// UdpFlows: a worker's UDP relay. It owns the worker's UDP listener sockets, the flow table
// (one upstream socket per client address and port), the reply sockets bound to original
// destinations, and a provided-buffer ring of its own. The worker's event loop hands it every
// completion whose Op is udp_*; datagrams are relayed one to one, never merged or split.

#include <liburing.h>
#include <sys/socket.h>

#include <cstdint>
#include <list>
#include <memory>
#include <unordered_map>
#include <vector>

#include "config/plan.h"
#include "engine/buf_ring.h"
#include "engine/cmsg.h"
#include "engine/flow_table.h"
#include "engine/ring.h"
#include "engine/sock.h"
#include "engine/udp_socks.h"
#include "engine/unique_fd.h"
#include "engine/user_data.h"
#include "engine/worker_stats.h"

namespace tp::engine {

struct ListenerShared;
struct ListenerCounters;

struct UdpConfig {
    unsigned worker = 0;
    uint32_t bypass_mark = 0;
    uint32_t reply_sockets = 4096;  // cache size
    bool log = false;
    // SO_MARK of reply sockets; differs from bypass_mark under `tpengine -c` so the UDP divert
    // rule (`socket mark` = bypass_mark) never hands a client's datagram to one.
    uint32_t reply_mark = 0;
    // Sends with sendto(2) at once instead of IORING_OP_SENDMSG batched in the ring (A/B switch
    // for benchmarks: TPENGINE_UDP_DIRECT_SEND=1).
    bool direct_send = false;
    // Consecutive datagrams of one flow and direction go out in one sendmsg with UDP_SEGMENT
    // (A/B switch: TPENGINE_UDP_NO_GSO=1 sends each with its own SENDMSG).
    bool gso = true;
    // UDP_GRO on listener and upstream sockets (needs gso; A/B: TPENGINE_UDP_NO_GRO=1).
    bool gro = true;
};

class UdpFlows {
  public:
    static constexpr uint16_t kBufGroup = 1;  // the TCP relay uses group 0

    UdpFlows(Ring& ring, WorkerStats& stats, const UdpConfig& cfg);
    ~UdpFlows();
    UdpFlows(const UdpFlows&) = delete;
    UdpFlows& operator=(const UdpFlows&) = delete;

    // Reload: listeners are matched by their shared part; `replaces[i]` names the listener an
    // in-place change takes over (same socket and flows, new settings); new ones start
    // receiving, missing ones are retired (flows of a retired non-transparent listener end:
    // their replies left through its socket). `fds[i]` is invalid for a listener already known.
    void set_listeners(const std::vector<std::shared_ptr<ListenerShared>>& ls,
                       const std::vector<std::shared_ptr<ListenerShared>>& replaces,
                       std::vector<UniqueFd>& fds, const SelfSet* self);
    void stop_accepting();  // no new flows; live flows keep relaying until close_all
    void close_all();       // ends every flow (engine stop)

    void handle(const UserData& u, const io_uring_cqe* cqe, uint64_t now_ms);
    void after_pass(uint64_t now_ms);  // publish returned buffers, re-arm starved receives
    void on_tick(uint64_t now_ms);
    bool needs_tick() const { return table_.size() > 0 || !starved_.empty(); }
    size_t flows() const { return table_.size(); }

  private:
    struct Listener {
        std::shared_ptr<ListenerShared> shared;
        UniqueFd fd;
        uint32_t gen = 0;
        uint32_t flows = 0;
        bool armed = false;
        bool retired = false;
    };
    struct Flow {
        UniqueFd fd;  // upstream, unconnected: one mapping for every destination
        std::shared_ptr<ListenerShared> listener;
        uint32_t li = 0;
        uint32_t gen = 0;
        uint32_t dns_pending = 0;
        bool dns = false;
        bool armed = false;
        bool socks = false;  // through a SOCKS5 UDP ASSOCIATE (socks_)
        socklen_t client_len = 0;
        socklen_t dst_len = 0;
        sockaddr_in6 client{};     // as received (v4 may be sockaddr_in or v4-mapped)
        sockaddr_in6 dst{};        // last destination, checked against SelfSet when it changes
        sockaddr_in6 first_dst{};  // reply source for a transparent listener with a fixed target
        socklen_t first_dst_len = 0;
        bool no_gso = false;  // a batch of this flow failed (path MTU, no checksum offload)
    };
    struct Reply {
        UniqueFd fd;
        uint64_t retry_at = 0;  // for a failed bind: when to try again
        bool in_use = false;    // EADDRINUSE: send through the raw socket meanwhile
        std::list<FlowKey>::iterator lru;
    };
    // A datagram being sent from its receive buffer (ring mode), indexed by buffer id.
    struct SendSlot {
        msghdr mh{};
        iovec iov{};
        sockaddr_in6 to{};
        uint32_t flow = 0;
        uint32_t gen = 0;
        bool up = false;
    };
    // Up to kGsoSegs datagrams sent with one IORING_OP_SENDMSG and a UDP_SEGMENT control
    // message: one flow, one direction, one socket and destination, all `seg` bytes long except
    // the last, which may be shorter. The kernel cuts the send back into exactly these
    // datagrams (GSO keeps each one's boundary), so nothing is merged or split on the wire.
    static constexpr uint32_t kGsoSegs = 64;  // UDP_MAX_SEGMENTS of older kernels
    struct GsoBatch {
        msghdr mh{};
        sockaddr_in6 to{};
        socklen_t to_len = 0;
        sockaddr_in6 from{};  // down, transparent listener: the reply socket's address
        socklen_t from_len = 0;
        alignas(cmsghdr) uint8_t ctrl[CMSG_SPACE(sizeof(uint16_t))]{};
        iovec iov[kGsoSegs];
        uint16_t bids[kGsoSegs];
        uint32_t n = 0;       // iovecs (buffers)
        uint32_t dgrams = 0;  // datagrams: a GRO buffer is one iovec of several
        uint32_t bytes = 0;
        uint32_t seg = 0;
        uint32_t flow = 0;
        uint32_t gen = 0;
        int fd = -1;
        bool up = false;
        bool full = false;  // a shorter datagram ended it
    };
    struct Starved {
        bool listener;
        uint32_t slot;
        uint32_t gen;
    };

    void arm_listener(uint32_t li);
    void arm_flow(uint32_t id);
    void on_listener(const UserData& u, const io_uring_cqe* cqe, void* buf);
    void on_upstream(const UserData& u, const io_uring_cqe* cqe, void* buf);
    void relay_up(uint32_t li, const RecvView& v);
    void relay_down(uint32_t id, const RecvView& in);
    uint32_t new_flow(uint32_t li, const FlowKey& k, const RecvView& v, const plan::SockAddr& dst,
                      const plan::Upstream* up);
    void cancel(uint64_t target);
    void send_dgram(bool up, uint32_t id, int fd, const RecvView& v, const void* to,
                    socklen_t to_len, const sockaddr* from = nullptr, socklen_t from_len = 0);
    // sendto(2) per datagram at once; `seg` != 0 cuts `data` at its GRO segment boundaries.
    void send_now(bool up, uint32_t id, uint32_t gen, int fd, const uint8_t* data, uint32_t len,
                  uint32_t seg, const void* to, socklen_t to_len);
    void enable_gro(int fd);
    ListenerCounters* counters(uint32_t li);  // this worker's block of listener li, if any
    void submit_queued();
    void send_one(bool up, uint32_t id, uint32_t gen, int fd, uint16_t bid, const uint8_t* data,
                  uint32_t len, const void* to, socklen_t to_len);
    bool gso_append(bool up, uint32_t id, int fd, const RecvView& v, const void* to,
                    socklen_t to_len);
    void gso_flush();
    void gso_done(uint32_t bi, int res);
    void sent(bool up, uint32_t id, uint32_t gen, int res, uint32_t len);
    void close_later(UniqueFd fd) { closing_.push_back(std::move(fd)); }
    void retire(uint32_t li);
    void end_flow(uint32_t id, UdpEnd why);
    void maybe_close_listener(uint32_t li);
    int reply_fd(const sockaddr* from, socklen_t len, bool& raw);
    int raw_fd(int family);
    void drop(UdpDrop d) { WorkerStats::add(stats_.udp_dropped[static_cast<size_t>(d)], 1); }
    void log_limited(const char* msg, int err);

    Ring& ring_;
    WorkerStats& stats_;
    UdpConfig cfg_;
    BufRing bufs_;
    bool bufs_ready_ = false;
    bool accepting_ = true;
    const SelfSet* self_ = nullptr;
    uint64_t now_ = 0;
    std::vector<std::unique_ptr<Listener>> listeners_;
    FlowTable table_;
    std::vector<Flow> flows_;  // indexed by flow id
    UdpSocks socks_;
    std::unordered_map<FlowKey, Reply, FlowKeyHash> replies_;
    std::list<FlowKey> reply_lru_;        // front = most recently used
    UniqueFd raw4_, raw6_;                // created on the first EADDRINUSE of each family
    std::vector<uint16_t> inuse_logged_;  // ports whose EADDRINUSE was explained once
    std::vector<Starved> starved_;
    std::vector<SendSlot> slots_;
    std::vector<std::unique_ptr<GsoBatch>> batches_;  // indexed by batch id; reused
    std::vector<uint32_t> free_batches_;
    uint32_t open_batch_ = UINT32_MAX;  // the batch the next datagram may join
    std::vector<UniqueFd>
        closing_;  // closed after the pass's SQEs that may name them are submitted
    uint16_t cur_bid_ = 0;
    bool keep_buf_ = false;  // the current completion's buffer is in a pending send
    // Multishot templates: they must outlive the requests (the kernel reads them per datagram).
    msghdr listen_mh_{};
    msghdr plain_mh_{};
    uint64_t last_log_ms_ = 0;
    bool log_ever_ = false;
};

}  // namespace tp::engine

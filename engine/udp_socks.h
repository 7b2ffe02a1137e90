#pragma once
// UdpSocks: a worker's SOCKS5 UDP ASSOCIATE associations (RFC 1928 section 7), one per UDP flow
// whose route chose a socks5 upstream with `udp: true`. It owns each association's TCP control
// connection (connect, greeting, optional RFC 1929 auth, UDP ASSOCIATE, then watched for EOF),
// the datagrams held until the relay address is known, and the SOCKS UDP header on both
// directions. The flow (engine/udp_flows.cc) owns the UDP socket; it calls in through a small
// seam: start at flow creation, send_up / unwrap per datagram, end when the flow ends.

#include <liburing.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "config/plan.h"
#include "engine/cmsg.h"
#include "engine/handshake/socks5.h"
#include "engine/ring.h"
#include "engine/stats.h"
#include "engine/unique_fd.h"
#include "engine/user_data.h"
#include "engine/worker_stats.h"

namespace tp::engine {

class UdpSocks {
  public:
    static constexpr uint32_t npos = UINT32_MAX;
    // Datagrams held per flow while the association is being set up; more are dropped.
    static constexpr uint32_t kQueueDgrams = 8;
    static constexpr uint32_t kQueueBytes = 16 * 1024;

    UdpSocks(Ring& ring, WorkerStats& stats, uint32_t bypass_mark)
        : ring_(ring), stats_(stats), mark_(bypass_mark) {}
    UdpSocks(const UdpSocks&) = delete;
    UdpSocks& operator=(const UdpSocks&) = delete;

    // Starts the association of flow `id` (generation `gen`) through `up`; `udp_fd` is the
    // flow's socket, of the family of up.address. False: it failed at once (counted), the
    // flow must end.
    bool start(uint32_t id, uint32_t gen, int udp_fd, const plan::Upstream& up,
               uint32_t handshake_ms, uint64_t now_ms);

    // One client datagram for `dst`: sent to the relay behind a SOCKS UDP header, or held
    // until the association is ready (dropped and counted when the queue is full).
    void send_up(uint32_t id, const plan::SockAddr& dst, const uint8_t* payload, uint32_t len);

    // A datagram the flow's socket received: it must come from the relay and carry a usable
    // header. Returns the payload alone, its name the remote the header names (valid until the
    // next call), or nullptr: drop it (counted).
    const RecvView* unwrap(uint32_t id, const RecvView& in);

    // A completion of Op::udp_socks. Returns the flow that must end (and why), or npos.
    uint32_t handle(const UserData& u, const io_uring_cqe* cqe, UdpEnd& why);

    // Associations not ready by their deadline fail (Cause::timeout); `end(id)` ends each flow.
    template <class F>
    void on_tick(uint64_t now_ms, F&& end) {
        for (uint32_t id = 0; pending_ > 0 && id < assocs_.size(); ++id) {
            Assoc* a = assocs_[id].get();
            if (a != nullptr && a->state != State::ready && a->deadline != 0 &&
                now_ms >= a->deadline) {
                failed(hs::Cause::timeout);
                end(id);
            }
        }
    }

    // The flow ended: the association is forgotten; its control connection is returned to be
    // closed once the pass's SQEs (a poll cancel naming it) are submitted.
    UniqueFd end(uint32_t id);

  private:
    enum class State : uint8_t { connecting, handshake, ready };
    struct Assoc {
        UniqueFd ctl;
        uint32_t gen = 0;
        int udp_fd = -1;
        State state = State::connecting;
        bool polling = false;
        uint64_t deadline = 0;  // 0: no handshake timeout
        plan::SockAddr server;
        plan::SockAddr relay;
        plan::SockAddr any;  // DST of the request: 0.0.0.0:0 or [::]:0 (our port is not known)
        std::string username, password;
        bool pipeline = false;
        hs::Socks5Client hs;
        std::vector<std::vector<uint8_t>> queue;  // header + payload, ready to send
        uint32_t queued_bytes = 0;
    };

    Assoc* get(uint32_t id, uint32_t gen);
    void poll(uint32_t id, Assoc& a, unsigned mask);
    bool send_all(Assoc& a, const uint8_t* p, size_t n);
    // Returns the flow to end (why set) or npos.
    uint32_t on_connected(uint32_t id, Assoc& a, UdpEnd& why);
    uint32_t on_readable(uint32_t id, Assoc& a, UdpEnd& why);
    bool relay_ready(Assoc& a);
    void send_one(Assoc& a, const uint8_t* hdr, uint32_t hlen, const uint8_t* p, uint32_t len);
    void failed(hs::Cause c) {
        WorkerStats::add(stats_.udp_socks_failed[static_cast<size_t>(c)], 1);
    }
    void drop(UdpDrop d) { WorkerStats::add(stats_.udp_dropped[static_cast<size_t>(d)], 1); }

    Ring& ring_;
    WorkerStats& stats_;
    uint32_t mark_;
    std::vector<std::unique_ptr<Assoc>> assocs_;  // indexed by flow id
    uint32_t pending_ = 0;
    RecvView view_;  // unwrap's result: kept here, not built per datagram by direct flows
    plan::SockAddr
        from_;  // its name  // associations not ready yet: the tick looks only while some are
};

}  // namespace tp::engine

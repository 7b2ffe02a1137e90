#pragma once
// FlowTable: one worker's UDP flows, keyed by the client's address and port (endpoint-
// independent mapping). Pure bookkeeping, no sockets: ids, the key index, the per-client
// counts, one least-recently-used order (worker-wide and per client) and idle deadlines on a
// timer wheel. The worker keeps each flow's sockets in its own array indexed by the same id.

#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdint>
#include <cstring>
#include <unordered_map>
#include <vector>

#include "engine/timer_wheel.h"

namespace tp::engine {

// A client endpoint as 16 address bytes (IPv4 as ::ffff:a.b.c.d) and a port (network order).
struct FlowKey {
    in6_addr addr{};
    uint16_t port = 0;

    bool operator==(const FlowKey& o) const {
        return port == o.port && std::memcmp(&addr, &o.addr, sizeof addr) == 0;
    }
    static bool from_sockaddr(const sockaddr* sa, FlowKey& out);
};

struct FlowKeyHash {
    size_t operator()(const FlowKey& k) const;
};
struct ClientHash {  // the address part only
    size_t operator()(const in6_addr& a) const;
};
struct ClientEq {
    bool operator()(const in6_addr& a, const in6_addr& b) const {
        return std::memcmp(&a, &b, sizeof a) == 0;
    }
};

class FlowTable {
  public:
    static constexpr uint32_t npos = 0xFFFFFFFF;

    // A flow idle for at least this long may be evicted for a new one at a limit; a limit
    // reached with only busier flows sheds the new flow instead.
    FlowTable(uint32_t max_flows, uint32_t max_per_client, uint32_t min_evict_idle_ms = 1000,
              uint32_t tick_ms = 100);

    enum class Verdict { ok, evict, shed };
    struct Admission {
        Verdict verdict = Verdict::ok;
        uint32_t victim = npos;  // for evict: the flow to remove before insert()
    };
    // Whether a new flow for `k` may be inserted now. Does not change the table.
    Admission admit(const FlowKey& k, uint64_t now_ms) const;

    uint32_t find(const FlowKey& k) const {
        auto it = index_.find(k);
        return it == index_.end() ? npos : it->second;
    }
    // Inserts a flow (admit() must have said ok, or the victim was removed). `idle_ms` 0 = the
    // flow never expires. Returns its id.
    uint32_t insert(const FlowKey& k, uint64_t now_ms, uint32_t idle_ms);
    void touch(uint32_t id, uint64_t now_ms);  // activity: most recently used, deadline moves
    void remove(uint32_t id);

    // Calls fire(id) for every flow idle past its timeout; fire must remove() it.
    template <typename F>
    void expire(uint64_t now_ms, F&& fire) {
        wheel_.advance(now_ms, [&](uint32_t id) {
            Entry& e = entries_[id];
            if (!e.used) {
                return;
            }
            uint64_t due = e.last_ms + e.idle_ms;
            if (due > now_ms) {  // touched since armed: the deadline moved, re-arm lazily
                wheel_.arm(id, due);
                return;
            }
            fire(id);
        });
    }

    size_t size() const { return index_.size(); }
    uint32_t capacity() const { return static_cast<uint32_t>(entries_.size()); }
    bool used(uint32_t id) const { return id < entries_.size() && entries_[id].used; }
    const FlowKey& key(uint32_t id) const { return entries_[id].key; }
    uint32_t client_count(const in6_addr& a) const;
    uint32_t lru_oldest() const { return lru_tail_; }  // npos when empty
    uint32_t max_flows() const { return max_flows_; }
    void set_limits(uint32_t max_flows, uint32_t max_per_client);

  private:
    struct Client {
        uint32_t count = 0;
        uint32_t head = npos;
        uint32_t tail = npos;
    };
    struct Entry {
        FlowKey key;
        Client* client = nullptr;  // unordered_map nodes are stable
        uint64_t last_ms = 0;
        uint32_t idle_ms = 0;
        uint32_t prev = npos;  // worker-wide LRU: head = most recent
        uint32_t next = npos;
        uint32_t cprev = npos;  // the client's own LRU
        uint32_t cnext = npos;
        bool used = false;
    };

    void link_front(uint32_t id);
    void unlink(uint32_t id);
    bool evictable(uint32_t id, uint64_t now_ms) const;

    uint32_t max_flows_;
    uint32_t max_per_client_;
    uint32_t min_evict_idle_ms_;
    std::vector<Entry> entries_;
    std::vector<uint32_t> free_;
    std::unordered_map<FlowKey, uint32_t, FlowKeyHash> index_;
    std::unordered_map<in6_addr, Client, ClientHash, ClientEq> clients_;
    uint32_t lru_head_ = npos;
    uint32_t lru_tail_ = npos;
    TimerWheel wheel_;
};

}  // namespace tp::engine

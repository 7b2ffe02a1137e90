// FlowTable: ids, key index, per-client counts, LRU lists and lazy idle deadlines.
#include "engine/flow_table.h"

namespace tp::engine {

bool FlowKey::from_sockaddr(const sockaddr* sa, FlowKey& out) {
    out = FlowKey{};
    if (sa->sa_family == AF_INET) {
        const auto* s4 = reinterpret_cast<const sockaddr_in*>(sa);
        out.addr.s6_addr[10] = 0xff;
        out.addr.s6_addr[11] = 0xff;
        std::memcpy(&out.addr.s6_addr[12], &s4->sin_addr, 4);
        out.port = s4->sin_port;
        return true;
    }
    if (sa->sa_family == AF_INET6) {
        const auto* s6 = reinterpret_cast<const sockaddr_in6*>(sa);
        out.addr = s6->sin6_addr;
        out.port = s6->sin6_port;
        return true;
    }
    return false;
}

namespace {
uint64_t mix(uint64_t h) {  // splitmix64 finaliser: cheap, spreads nearby addresses
    h ^= h >> 30;
    h *= 0xbf58476d1ce4e5b9ull;
    h ^= h >> 27;
    h *= 0x94d049bb133111ebull;
    return h ^ (h >> 31);
}
uint64_t addr_hash(const in6_addr& a) {
    uint64_t lo, hi;
    std::memcpy(&lo, &a.s6_addr[0], 8);
    std::memcpy(&hi, &a.s6_addr[8], 8);
    return mix(lo ^ mix(hi));
}
}  // namespace

size_t FlowKeyHash::operator()(const FlowKey& k) const {
    return mix(addr_hash(k.addr) ^ k.port);
}

size_t ClientHash::operator()(const in6_addr& a) const {
    return addr_hash(a);
}

FlowTable::FlowTable(uint32_t max_flows, uint32_t max_per_client, uint32_t min_evict_idle_ms,
                     uint32_t tick_ms)
    : max_flows_(max_flows ? max_flows : 1),
      max_per_client_(max_per_client ? max_per_client : 1),
      min_evict_idle_ms_(min_evict_idle_ms),
      wheel_(tick_ms) {}

void FlowTable::set_limits(uint32_t max_flows, uint32_t max_per_client) {
    max_flows_ = max_flows ? max_flows : 1;
    max_per_client_ = max_per_client ? max_per_client : 1;
}

uint32_t FlowTable::client_count(const in6_addr& a) const {
    auto it = clients_.find(a);
    return it == clients_.end() ? 0 : it->second.count;
}

bool FlowTable::evictable(uint32_t id, uint64_t now_ms) const {
    return id != npos && now_ms >= entries_[id].last_ms + min_evict_idle_ms_;
}

FlowTable::Admission FlowTable::admit(const FlowKey& k, uint64_t now_ms) const {
    auto c = clients_.find(k.addr);
    if (c != clients_.end() && c->second.count >= max_per_client_) {
        uint32_t v = c->second.tail;
        return evictable(v, now_ms) ? Admission{Verdict::evict, v} : Admission{Verdict::shed};
    }
    if (index_.size() >= max_flows_) {
        uint32_t v = lru_tail_;
        return evictable(v, now_ms) ? Admission{Verdict::evict, v} : Admission{Verdict::shed};
    }
    return {};
}

uint32_t FlowTable::insert(const FlowKey& k, uint64_t now_ms, uint32_t idle_ms) {
    uint32_t id;
    if (!free_.empty()) {
        id = free_.back();
        free_.pop_back();
    } else {
        id = static_cast<uint32_t>(entries_.size());
        entries_.emplace_back();
        wheel_.reserve_ids(id + 1);
    }
    Entry& e = entries_[id];
    e = Entry{};
    e.key = k;
    e.last_ms = now_ms;
    e.idle_ms = idle_ms;
    e.used = true;
    index_.emplace(k, id);
    e.client = &clients_[k.addr];
    ++e.client->count;
    link_front(id);
    if (idle_ms > 0) {
        wheel_.arm(id, now_ms + idle_ms);
    }
    return id;
}

void FlowTable::touch(uint32_t id, uint64_t now_ms) {
    entries_[id].last_ms = now_ms;
    // Both lists are ordered by the same touches: the worker-wide head is its client's head.
    if (lru_head_ != id) {
        unlink(id);
        link_front(id);
    }
}

void FlowTable::remove(uint32_t id) {
    Entry& e = entries_[id];
    if (!e.used) {
        return;
    }
    unlink(id);
    wheel_.disarm(id);
    if (--e.client->count == 0) {
        clients_.erase(e.key.addr);
    }
    e.client = nullptr;
    index_.erase(e.key);
    e.used = false;
    free_.push_back(id);
}

void FlowTable::link_front(uint32_t id) {
    Entry& e = entries_[id];
    e.prev = npos;
    e.next = lru_head_;
    if (lru_head_ != npos) {
        entries_[lru_head_].prev = id;
    }
    lru_head_ = id;
    if (lru_tail_ == npos) {
        lru_tail_ = id;
    }
    Client& c = *e.client;
    e.cprev = npos;
    e.cnext = c.head;
    if (c.head != npos) {
        entries_[c.head].cprev = id;
    }
    c.head = id;
    if (c.tail == npos) {
        c.tail = id;
    }
}

void FlowTable::unlink(uint32_t id) {
    Entry& e = entries_[id];
    (e.prev != npos ? entries_[e.prev].next : lru_head_) = e.next;
    (e.next != npos ? entries_[e.next].prev : lru_tail_) = e.prev;
    Client& c = *e.client;
    (e.cprev != npos ? entries_[e.cprev].cnext : c.head) = e.cnext;
    (e.cnext != npos ? entries_[e.cnext].cprev : c.tail) = e.cprev;
    e.prev = e.next = e.cprev = e.cnext = npos;
}

}  // namespace tp::engine

// Hashed timer wheel with intrusive doubly linked buckets indexed by id.
#include "engine/timer_wheel.h"

namespace tp::engine {

TimerWheel::TimerWheel(uint32_t tick_ms, uint32_t buckets) : tick_ms_(tick_ms ? tick_ms : 1) {
    uint32_t n = 1;
    while (n < buckets) {
        n <<= 1;
    }
    mask_ = n - 1;
    heads_.assign(n, none);
}

void TimerWheel::reserve_ids(uint32_t n) {
    if (nodes_.size() < n) {
        nodes_.resize(n);
    }
}

void TimerWheel::unlink(uint32_t id) {
    Node& n = nodes_[id];
    if (n.prev != none) {
        nodes_[n.prev].next = n.next;
    } else {
        heads_[n.tick & mask_] = n.next;
    }
    if (n.next != none) {
        nodes_[n.next].prev = n.prev;
    }
    n.prev = n.next = none;
    n.armed = false;
    --count_;
}

void TimerWheel::arm(uint32_t id, uint64_t deadline_ms) {
    reserve_ids(id + 1);
    if (nodes_[id].armed) {
        unlink(id);
    }
    uint64_t t = (deadline_ms + tick_ms_ - 1) / tick_ms_;
    if (t <= cur_) {
        t = cur_ + 1;
    }
    Node& n = nodes_[id];
    n.tick = t;
    n.armed = true;
    n.prev = none;
    uint32_t& head = heads_[t & mask_];
    n.next = head;
    if (head != none) {
        nodes_[head].prev = id;
    }
    head = id;
    ++count_;
}

void TimerWheel::disarm(uint32_t id) {
    if (armed(id)) {
        unlink(id);
    }
}

void TimerWheel::collect(uint64_t now_ms) {
    expired_.clear();
    uint64_t target = now_ms / tick_ms_;
    if (target <= cur_) {
        return;
    }
    uint64_t steps = target - cur_;
    if (steps > mask_ + 1) {
        steps = mask_ + 1;  // a long stall: every bucket is visited once
    }
    for (uint64_t i = 1; i <= steps; ++i) {
        uint32_t b = static_cast<uint32_t>((cur_ + i) & mask_);
        uint32_t id = heads_[b];
        while (id != none) {
            uint32_t next = nodes_[id].next;
            if (nodes_[id].tick <= target) {
                unlink(id);
                expired_.push_back(id);
            }
            id = next;
        }
    }
    cur_ = target;
}

}  // namespace tp::engine

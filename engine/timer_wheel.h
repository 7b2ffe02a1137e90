#pragma once
// TimerWheel: a coarse hashed wheel of per-connection deadlines, one timer per id (slot).
// The worker advances it from one io_uring timeout per tick, so no timer exists per packet;
// deadlines are rounded up to the next tick.

#include <cstddef>
#include <cstdint>
#include <vector>

namespace tp::engine {

class TimerWheel {
  public:
    explicit TimerWheel(uint32_t tick_ms = 100, uint32_t buckets = 1024);

    void reserve_ids(uint32_t n);                 // ids [0, n) may be armed
    void arm(uint32_t id, uint64_t deadline_ms);  // replaces the id's previous deadline
    void disarm(uint32_t id);
    bool armed(uint32_t id) const { return id < nodes_.size() && nodes_[id].armed; }
    uint32_t tick_ms() const { return tick_ms_; }
    size_t size() const { return count_; }

    // Fires (disarming first) every id whose deadline is <= now_ms. `fire` may re-arm.
    template <typename F>
    void advance(uint64_t now_ms, F&& fire) {
        collect(now_ms);
        for (uint32_t id : expired_) {
            fire(id);
        }
    }

  private:
    struct Node {
        uint32_t prev = none;
        uint32_t next = none;
        uint64_t tick = 0;
        bool armed = false;
    };
    static constexpr uint32_t none = 0xFFFFFFFF;

    void collect(uint64_t now_ms);
    void unlink(uint32_t id);

    uint32_t tick_ms_;
    uint32_t mask_;
    uint64_t cur_ = 0;  // last tick processed
    size_t count_ = 0;
    std::vector<uint32_t> heads_;
    std::vector<Node> nodes_;
    std::vector<uint32_t> expired_;
};

}  // namespace tp::engine

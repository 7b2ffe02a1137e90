#pragma once
// ConnPool<T>: a worker's connection slots. Slots live in chunks that never move, are reused
// through a free list, and carry a generation bumped on every release so that a completion
// naming an old occupant of the slot is recognised as stale. Memory grows a chunk at a time,
// never per connection.

#include <cstdint>
#include <memory>
#include <vector>

namespace tp::engine {

template <typename T, uint32_t ChunkSize = 1024>
class ConnPool {
  public:
    struct Slot {
        T value{};
        uint32_t gen = 1;  // 24 bits significant (user_data)
        bool used = false;
    };

    explicit ConnPool(uint32_t max_slots = 1u << 24) : max_slots_(max_slots) {}

    // Returns the slot index, or -1 when max_slots are in use.
    int64_t acquire() {
        if (free_.empty() && !grow()) {
            return -1;
        }
        uint32_t i = free_.back();
        free_.pop_back();
        Slot& s = slot(i);
        s.used = true;
        ++used_;
        return i;
    }

    void release(uint32_t i) {
        Slot& s = slot(i);
        s.used = false;
        s.gen = (s.gen + 1) & 0xFFFFFF;
        if (s.gen == 0) {
            s.gen = 1;
        }
        --used_;
        free_.push_back(i);
    }

    Slot& slot(uint32_t i) { return chunks_[i / ChunkSize][i % ChunkSize]; }
    // The slot if `i` is in use with generation `gen`, else null (a stale completion).
    Slot* find(uint32_t i, uint32_t gen) {
        if (i >= capacity()) {
            return nullptr;
        }
        Slot& s = slot(i);
        return (s.used && s.gen == gen) ? &s : nullptr;
    }
    uint32_t capacity() const { return static_cast<uint32_t>(chunks_.size()) * ChunkSize; }
    uint32_t used() const { return used_; }

  private:
    bool grow() {
        if (capacity() + ChunkSize > max_slots_) {
            return false;
        }
        uint32_t base = capacity();
        chunks_.push_back(std::make_unique<Slot[]>(ChunkSize));
        free_.reserve(capacity());
        for (uint32_t i = ChunkSize; i > 0; --i) {
            free_.push_back(base + i - 1);
        }
        return true;
    }

    std::vector<std::unique_ptr<Slot[]>> chunks_;
    std::vector<uint32_t> free_;
    uint32_t used_ = 0;
    uint32_t max_slots_;
};

}  // namespace tp::engine

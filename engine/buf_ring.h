#pragma once
// BufRing: one provided-buffer ring (a buffer group) registered by hand, since Debian's
// liburing 2.3 lacks io_uring_setup_buf_ring. Receives pick a buffer from it; the relay gives
// each back (release) once its bytes are sent; flush() publishes the returns in one store.

#include <liburing.h>

#include <cstddef>
#include <cstdint>

#include "engine/result.h"

namespace tp::engine {

class BufRing {
  public:
    BufRing() = default;
    BufRing(const BufRing&) = delete;
    BufRing& operator=(const BufRing&) = delete;
    ~BufRing();

    // `count` is rounded up to a power of two (at most 32768).
    Result<void> init(io_uring* ring, uint16_t group, uint32_t count, uint32_t size);

    uint8_t* addr(uint16_t bid) const { return base_ + static_cast<size_t>(bid) * size_; }
    uint32_t buffer_size() const { return size_; }
    uint32_t count() const { return count_; }
    uint16_t group() const { return group_; }

    void release(uint16_t bid) {
        io_uring_buf_ring_add(br_, addr(bid), size_, bid, mask_, pending_);
        ++pending_;
    }
    // Publishes the buffers released since the last flush; returns how many.
    int flush() {
        int n = pending_;
        if (n > 0) {
            io_uring_buf_ring_advance(br_, n);
            pending_ = 0;
        }
        return n;
    }

  private:
    io_uring* ring_ = nullptr;
    io_uring_buf_ring* br_ = nullptr;
    uint8_t* base_ = nullptr;
    size_t ring_bytes_ = 0;
    size_t data_bytes_ = 0;
    uint32_t count_ = 0;
    uint32_t size_ = 0;
    int mask_ = 0;
    int pending_ = 0;
    uint16_t group_ = 0;
    bool registered_ = false;
};

}  // namespace tp::engine

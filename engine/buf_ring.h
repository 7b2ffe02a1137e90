#pragma once
// BufRing: one provided-buffer ring (a buffer group) registered by hand, since Debian's
// liburing 2.3 lacks io_uring_setup_buf_ring. Receives pick a buffer from it; the relay gives
// each back (release) once its bytes are sent; flush() publishes the returns in one store.
// Buffers are added a chunk at a time (grow() on ENOBUFS) up to the ring's size, so memory
// follows the bytes actually in flight rather than the configured maximum.

#include <liburing.h>

#include <cstddef>
#include <cstdint>
#include <vector>

#include "engine/result.h"

namespace tp::engine {

class BufRing {
  public:
    BufRing() = default;
    BufRing(const BufRing&) = delete;
    BufRing& operator=(const BufRing&) = delete;
    ~BufRing();

    // `max_count` is rounded up to a power of two (at most 32768); `initial` buffers (rounded
    // up to whole chunks) are provided at once, the rest by grow().
    Result<void> init(io_uring* ring, uint16_t group, uint32_t max_count, uint32_t size,
                      uint32_t initial = 256);

    uint8_t* addr(uint16_t bid) const {
        return chunks_[bid >> chunk_shift_] + static_cast<size_t>(bid & chunk_mask_) * size_;
    }
    uint32_t buffer_size() const { return size_; }
    uint32_t count() const { return provided_; }  // buffers provided so far
    uint32_t max_count() const { return count_; }
    uint16_t group() const { return group_; }

    void release(uint16_t bid) {
        out_[bid] = 0;
        io_uring_buf_ring_add(br_, addr(bid), size_, bid, mask_, pending_);
        ++pending_;
    }
    // A receive completed into `bid`: it is out of the ring until released.
    void taken(uint16_t bid) { out_[bid] = 1; }
    // Gives the pages of every buffer in the ring back to the kernel (MADV_DONTNEED; the next
    // receive into one faults in a zeroed page). The kernel takes buffers from the ring in
    // order, so any traffic touches them all in turn: without this a burst leaves the whole
    // ring resident. Only the worker thread writes into its buffers (receives complete in its
    // own io_uring_enter), so none is being filled meanwhile. Returns how many buffers are
    // still out (their pages stay until they come back and the next trim).
    uint32_t trim();
    // Publishes the buffers released since the last flush; returns how many.
    int flush() {
        int n = pending_;
        if (n > 0) {
            io_uring_buf_ring_advance(br_, n);
            pending_ = 0;
        }
        return n;
    }
    // Adds one more chunk of buffers (not yet flushed). False when at the maximum or out of
    // memory.
    bool grow();

  private:
    io_uring* ring_ = nullptr;
    io_uring_buf_ring* br_ = nullptr;
    std::vector<uint8_t*> chunks_;
    std::vector<uint8_t> out_;  // per buffer: 1 while a receive's bytes are held in it
    size_t ring_bytes_ = 0;
    uint32_t count_ = 0;
    uint32_t provided_ = 0;
    uint32_t size_ = 0;
    uint32_t chunk_ = 0;  // buffers per chunk (power of two)
    uint32_t chunk_shift_ = 0;
    uint32_t chunk_mask_ = 0;
    int mask_ = 0;
    int pending_ = 0;
    uint16_t group_ = 0;
    bool registered_ = false;
};

}  // namespace tp::engine

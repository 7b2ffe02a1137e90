#pragma once
// tpbench's own io_uring plumbing (independent of engine/): an RAII ring with an SQE getter that
// flushes when the queue is full, a provided-buffer ring registered by hand (liburing 2.3 has no
// io_uring_setup_buf_ring), and the user_data packing shared by the server and the clients.

#include <liburing.h>

#include <cstdint>

namespace tp::bench {

// user_data: low 8 bits the operation, the rest the connection slot.
enum class Op : uint8_t { Accept, Connect, Send, Recv, Timer, LinkTimeout, Close };
inline uint64_t pack(Op op, uint32_t slot) noexcept {
    return (static_cast<uint64_t>(slot) << 8) | static_cast<uint8_t>(op);
}
inline Op op_of(uint64_t ud) noexcept {
    return static_cast<Op>(ud & 0xff);
}
inline uint32_t slot_of(uint64_t ud) noexcept {
    return static_cast<uint32_t>(ud >> 8);
}

class Ring {
  public:
    Ring() = default;
    ~Ring();
    Ring(const Ring&) = delete;
    Ring& operator=(const Ring&) = delete;

    // Single issuer + deferred task running when the kernel has them, else plain. 0 or -errno.
    int init(unsigned entries);
    io_uring* get() noexcept { return &ring_; }

    // Never null: submits what is queued when the SQ is full.
    io_uring_sqe* sqe() noexcept {
        io_uring_sqe* s = io_uring_get_sqe(&ring_);
        while (s == nullptr) {
            io_uring_submit(&ring_);
            s = io_uring_get_sqe(&ring_);
        }
        return s;
    }

    // Submits and waits for at least one completion or `timeout_ns`.
    void submit_and_wait(uint64_t timeout_ns) noexcept;

  private:
    io_uring ring_{};
    bool live_ = false;
};

// A provided-buffer ring: `count` buffers of `size` bytes, group id `bgid`.
class BufRing {
  public:
    BufRing() = default;
    ~BufRing();
    BufRing(const BufRing&) = delete;
    BufRing& operator=(const BufRing&) = delete;

    int init(io_uring* ring, uint16_t bgid, unsigned count, unsigned size);
    char* buf(unsigned bid) noexcept { return base_ + static_cast<size_t>(bid) * size_; }
    unsigned size() const noexcept { return size_; }
    uint16_t bgid() const noexcept { return bgid_; }
    // Hands one buffer back to the kernel (made visible at the next commit()).
    void recycle(unsigned bid) noexcept {
        io_uring_buf_ring_add(br_, buf(bid), size_, static_cast<unsigned short>(bid), mask_,
                              pending_++);
    }
    void commit() noexcept {
        if (pending_ != 0) {
            io_uring_buf_ring_advance(br_, pending_);
            pending_ = 0;
        }
    }

  private:
    io_uring* ring_ = nullptr;
    io_uring_buf_ring* br_ = nullptr;
    char* base_ = nullptr;
    size_t map_len_ = 0;
    unsigned count_ = 0;
    unsigned size_ = 0;
    int mask_ = 0;
    int pending_ = 0;
    uint16_t bgid_ = 0;
};

}  // namespace tp::bench

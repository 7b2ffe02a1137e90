// Ring and BufRing set-up and tear-down (see uring.h).

#include "tools/tpbench/uring.h"

#include <sys/mman.h>

#include <cerrno>

namespace tp::bench {

Ring::~Ring() {
    if (live_) {
        io_uring_queue_exit(&ring_);
    }
}

int Ring::init(unsigned entries) {
    io_uring_params p{};
    p.flags = IORING_SETUP_CQSIZE | IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
    p.cq_entries = entries * 4;
    int rc = io_uring_queue_init_params(entries, &ring_, &p);
    if (rc == -EINVAL) {
        p = io_uring_params{};
        p.flags = IORING_SETUP_CQSIZE;
        p.cq_entries = entries * 4;
        rc = io_uring_queue_init_params(entries, &ring_, &p);
    }
    live_ = rc == 0;
    return rc;
}

void Ring::submit_and_wait(uint64_t timeout_ns) noexcept {
    __kernel_timespec ts{};
    ts.tv_sec = static_cast<long long>(timeout_ns / 1000000000ull);
    ts.tv_nsec = static_cast<long long>(timeout_ns % 1000000000ull);
    io_uring_cqe* cqe = nullptr;
    io_uring_submit_and_wait_timeout(&ring_, &cqe, 1, &ts, nullptr);
}

BufRing::~BufRing() {
    if (br_ != nullptr) {
        io_uring_unregister_buf_ring(ring_, bgid_);
        munmap(br_, map_len_);
    }
}

int BufRing::init(io_uring* ring, uint16_t bgid, unsigned count, unsigned size) {
    // count must be a power of two; the ring header and the buffers share one mapping.
    const size_t ring_bytes = count * sizeof(io_uring_buf);
    map_len_ = ring_bytes + static_cast<size_t>(count) * size;
    void* mem = mmap(nullptr, map_len_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) {
        return -errno;
    }
    io_uring_buf_reg reg{};
    reg.ring_addr = reinterpret_cast<unsigned long>(mem);
    reg.ring_entries = count;
    reg.bgid = bgid;
    const int rc = io_uring_register_buf_ring(ring, &reg, 0);
    if (rc < 0) {
        munmap(mem, map_len_);
        return rc;
    }
    ring_ = ring;
    br_ = static_cast<io_uring_buf_ring*>(mem);
    base_ = static_cast<char*>(mem) + ring_bytes;
    count_ = count;
    size_ = size;
    mask_ = io_uring_buf_ring_mask(count);
    bgid_ = bgid;
    io_uring_buf_ring_init(br_);
    for (unsigned i = 0; i < count; ++i) {
        recycle(i);
    }
    commit();
    return 0;
}

}  // namespace tp::bench

// Provided buffer ring: mmap the ring and the buffers, register the ring, hand out all buffers.
#include "engine/buf_ring.h"

#include <sys/mman.h>

#include <cerrno>

namespace tp::engine {

BufRing::~BufRing() {
    if (registered_) {
        io_uring_unregister_buf_ring(ring_, group_);
    }
    if (br_ != nullptr) {
        munmap(br_, ring_bytes_);
    }
    if (base_ != nullptr) {
        munmap(base_, data_bytes_);
    }
}

Result<void> BufRing::init(io_uring* ring, uint16_t group, uint32_t count, uint32_t size) {
    uint32_t n = 1;
    while (n < count && n < 32768) {
        n <<= 1;
    }
    ring_ = ring;
    group_ = group;
    count_ = n;
    size_ = size;
    mask_ = io_uring_buf_ring_mask(n);
    ring_bytes_ = sizeof(io_uring_buf) * n;
    void* r =
        mmap(nullptr, ring_bytes_, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
    if (r == MAP_FAILED) {
        return errno_error("mmap buffer ring");
    }
    br_ = static_cast<io_uring_buf_ring*>(r);
    data_bytes_ = static_cast<size_t>(n) * size;
    void* d =
        mmap(nullptr, data_bytes_, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
    if (d == MAP_FAILED) {
        return errno_error("mmap buffers");
    }
    base_ = static_cast<uint8_t*>(d);
    io_uring_buf_ring_init(br_);
    io_uring_buf_reg reg{};
    reg.ring_addr = reinterpret_cast<uint64_t>(br_);
    reg.ring_entries = n;
    reg.bgid = group;
    int err = io_uring_register_buf_ring(ring_, &reg, 0);
    if (err != 0) {
        return Error{-err, "register buffer ring"};
    }
    registered_ = true;
    for (uint32_t i = 0; i < n; ++i) {
        release(static_cast<uint16_t>(i));
    }
    flush();
    return {};
}

}  // namespace tp::engine

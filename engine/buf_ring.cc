// Provided buffer ring: mmap and register the ring, then hand out buffers chunk by chunk.
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
    for (uint8_t* c : chunks_) {
        munmap(c, static_cast<size_t>(chunk_) * size_);
    }
}

Result<void> BufRing::init(io_uring* ring, uint16_t group, uint32_t max_count, uint32_t size,
                           uint32_t initial) {
    uint32_t n = 1;
    while (n < max_count && n < 32768) {
        n <<= 1;
    }
    ring_ = ring;
    group_ = group;
    count_ = n;
    size_ = size;
    out_.assign(n, 0);
    chunk_ = n < 256 ? n : 256;
    chunk_mask_ = chunk_ - 1;
    while ((1u << chunk_shift_) < chunk_) {
        ++chunk_shift_;
    }
    mask_ = io_uring_buf_ring_mask(n);
    ring_bytes_ = sizeof(io_uring_buf) * n;
    void* r =
        mmap(nullptr, ring_bytes_, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
    if (r == MAP_FAILED) {
        return errno_error("mmap buffer ring");
    }
    br_ = static_cast<io_uring_buf_ring*>(r);
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
    do {
        if (!grow()) {
            return Error{ENOMEM, "mmap buffers"};
        }
    } while (provided_ < initial && provided_ < count_);
    flush();
    return {};
}

bool BufRing::grow() {
    if (provided_ >= count_) {
        return false;
    }
    size_t bytes = static_cast<size_t>(chunk_) * size_;
    void* d = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
    if (d == MAP_FAILED) {
        return false;
    }
    chunks_.push_back(static_cast<uint8_t*>(d));
    uint32_t first = provided_;
    provided_ += chunk_;
    for (uint32_t i = 0; i < chunk_; ++i) {
        release(static_cast<uint16_t>(first + i));
    }
    return true;
}

uint32_t BufRing::trim() {
    uint32_t out = 0;
    uint32_t b = 0;
    while (b < provided_) {
        if (out_[b]) {
            ++out;
            ++b;
            continue;
        }
        uint32_t e = b + 1;  // a run of free buffers within one chunk: one madvise
        while (e < provided_ && !out_[e] && (e & chunk_mask_) != 0) {
            ++e;
        }
        size_t len = static_cast<size_t>(e - b) * size_;
        madvise(addr(static_cast<uint16_t>(b)), len, MADV_DONTNEED);
        b = e;
    }
    return out;
}

}  // namespace tp::engine

// Histogram merge and percentile walk (the record path is inline in histogram.h).

#include "tools/tpbench/histogram.h"

#include <cmath>

namespace tp::bench {

void Histogram::merge(const Histogram& other) noexcept {
    for (int i = 0; i < kSlots; ++i) {
        counts_[i] += other.counts_[i];
    }
    total_ += other.total_;
    sum_ += other.sum_;
    if (other.max_ > max_) {
        max_ = other.max_;
    }
    if (other.min_ < min_) {
        min_ = other.min_;
    }
}

uint64_t Histogram::slot_upper(int slot) noexcept {
    if (slot < 128) {
        return static_cast<uint64_t>(slot);
    }
    const int shift = (slot - 128) / 64 + 1;
    const uint64_t top = static_cast<uint64_t>((slot - 128) % 64 + 64);
    // The last bucket would overflow: its upper edge is the largest uint64_t.
    if (shift + 7 > 63 && top == 127) {
        return UINT64_MAX;
    }
    return ((top + 1) << shift) - 1;
}

uint64_t Histogram::percentile(double q) const noexcept {
    if (total_ == 0) {
        return 0;
    }
    if (q >= 1.0) {
        return max_;
    }
    if (q < 0.0) {
        q = 0.0;
    }
    uint64_t want = static_cast<uint64_t>(std::ceil(q * static_cast<double>(total_)));
    if (want == 0) {
        want = 1;
    }
    uint64_t seen = 0;
    for (int i = 0; i < kSlots; ++i) {
        seen += counts_[i];
        if (seen >= want) {
            const uint64_t upper = slot_upper(i);
            return upper < max_ ? upper : max_;
        }
    }
    return max_;
}

}  // namespace tp::bench

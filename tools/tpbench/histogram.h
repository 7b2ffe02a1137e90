#pragma once
// Latency histogram in the HDR style: log-linear buckets (64 linear steps per power of two, so
// every recorded value is kept within 1/64 of its true value), fixed size, no allocation per
// record.

#include <array>
#include <cstdint>

namespace tp::bench {

class Histogram {
  public:
    // 128 exact slots for values < 128, then 64 per power of two up to 2^63.
    static constexpr int kSubBits = 6;
    static constexpr int kSlots = 128 + (63 - kSubBits) * 64;

    void record(uint64_t value) noexcept {
        ++counts_[slot_of(value)];
        ++total_;
        sum_ += value;
        if (value > max_) {
            max_ = value;
        }
        if (value < min_) {
            min_ = value;
        }
    }
    void merge(const Histogram& other) noexcept;
    void reset() noexcept { *this = Histogram{}; }

    uint64_t count() const noexcept { return total_; }
    uint64_t max() const noexcept { return max_; }
    uint64_t min() const noexcept { return total_ ? min_ : 0; }
    double mean() const noexcept { return total_ ? static_cast<double>(sum_) / total_ : 0.0; }

    // The smallest recorded-equivalent value v such that at least q (0..1] of the records are
    // <= v; reported as the upper edge of its bucket, clamped to the largest value seen. 0 when
    // empty.
    uint64_t percentile(double q) const noexcept;

    // Bucket arithmetic, public for tests.
    static int slot_of(uint64_t value) noexcept {
        if (value < 128) {
            return static_cast<int>(value);
        }
        const int msb = 63 - __builtin_clzll(value);
        const int shift = msb - kSubBits;  // >= 1: value >> shift lies in [64, 128)
        return 128 + (shift - 1) * 64 + static_cast<int>((value >> shift) - 64);
    }
    static uint64_t slot_upper(int slot) noexcept;

  private:
    std::array<uint64_t, kSlots> counts_{};
    uint64_t total_ = 0;
    uint64_t sum_ = 0;
    uint64_t max_ = 0;
    uint64_t min_ = UINT64_MAX;
};

}  // namespace tp::bench

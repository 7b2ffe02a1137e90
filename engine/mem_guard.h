#pragma once
// MemGuard: the memory budget a worker sheds load against. It owns finding the limit (an
// explicit one from the plan, else the memory cgroup's: v2 memory.max, v1
// memory.limit_in_bytes) and reading the usage the kernel would OOM-kill on (the cgroup's
// memory.current / memory.usage_in_bytes, which include socket buffers; without a cgroup,
// the process's RSS). Read-only after init, so workers share one.

#include <cstdint>

#include "engine/unique_fd.h"

namespace tp::engine {

class MemGuard {
  public:
    // `explicit_limit` in bytes; 0 = the cgroup's limit, if it has one. Disabled when neither.
    void init(uint64_t explicit_limit);
    bool enabled() const { return limit_ != 0; }
    uint64_t limit() const { return limit_; }
    // Accepting pauses at or above `high()` and resumes below `low()`.
    uint64_t high() const { return limit_ / 100 * 85; }
    uint64_t low() const { return limit_ / 100 * 75; }
    uint64_t usage() const;  // bytes; 0 if it cannot be read
    const char* source() const { return source_; }

  private:
    uint64_t limit_ = 0;
    UniqueFd usage_fd_;  // the cgroup's usage file, read with pread
    bool rss_ = false;   // no cgroup usage file: /proc/self/statm
    const char* source_ = "none";
};

}  // namespace tp::engine

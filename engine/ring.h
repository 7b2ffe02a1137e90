#pragma once
// Ring: RAII owner of one io_uring. Set-up probes the cheapest task-running mode the kernel
// offers (SINGLE_ISSUER|DEFER_TASKRUN, then COOP_TASKRUN, then plain); get_sqe() submits when
// the submission queue is full instead of failing.

#include <liburing.h>

#include <cstdint>

#include "engine/result.h"

namespace tp::engine {

class Ring {
  public:
    Ring() = default;
    Ring(const Ring&) = delete;
    Ring& operator=(const Ring&) = delete;
    ~Ring();

    // Must be called on the thread that will submit (SINGLE_ISSUER).
    Result<void> init(unsigned sq_entries, unsigned cq_entries);

    io_uring* get() { return &ring_; }
    io_uring_sqe* get_sqe();
    unsigned setup_flags() const { return flags_; }
    const char* mode_name() const;
    bool ready() const { return ready_; }

  private:
    io_uring ring_{};
    unsigned flags_ = 0;
    bool ready_ = false;
    bool registered_fd_ = false;
};

}  // namespace tp::engine

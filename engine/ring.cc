// Ring set-up with feature fallback, and the SQE getter that never returns null.
#include "engine/ring.h"

#include <cerrno>

namespace tp::engine {

Ring::~Ring() {
    if (ready_) {
        io_uring_queue_exit(&ring_);
    }
}

Result<void> Ring::init(unsigned sq_entries, unsigned cq_entries) {
    const unsigned base = IORING_SETUP_CQSIZE | IORING_SETUP_SUBMIT_ALL;
    const unsigned modes[] = {
        IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN,
        IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG,
        0,
    };
    int err = 0;
    for (unsigned mode : modes) {
        io_uring_params p{};
        p.flags = base | mode;
        p.cq_entries = cq_entries;
        err = io_uring_queue_init_params(sq_entries, &ring_, &p);
        if (err == 0) {
            flags_ = p.flags;
            ready_ = true;
            // Registered ring fd: io_uring_enter skips the fd table lookup (optional).
            registered_fd_ = io_uring_register_ring_fd(&ring_) == 1;
            return {};
        }
        if (err != -EINVAL) {
            break;  // ENOMEM, EPERM...: a weaker mode will not help
        }
    }
    return Error{-err, "io_uring_queue_init"};
}

io_uring_sqe* Ring::get_sqe() {
    io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
    while (sqe == nullptr) {
        io_uring_submit(&ring_);
        sqe = io_uring_get_sqe(&ring_);
    }
    return sqe;
}

const char* Ring::mode_name() const {
    if (flags_ & IORING_SETUP_DEFER_TASKRUN) {
        return registered_fd_ ? "single-issuer+defer-taskrun, registered ring fd"
                              : "single-issuer+defer-taskrun";
    }
    if (flags_ & IORING_SETUP_COOP_TASKRUN) {
        return registered_fd_ ? "coop-taskrun, registered ring fd" : "coop-taskrun";
    }
    return registered_fd_ ? "plain, registered ring fd" : "plain";
}

}  // namespace tp::engine

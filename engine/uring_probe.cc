// The io_uring feature probe: one small ring, one try of each feature the engine uses.
// Kernel versions are those where the feature appeared in mainline.
#include "engine/uring_probe.h"

#include <liburing.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "engine/unique_fd.h"

namespace tp::engine {
namespace {

constexpr unsigned short kProbeGroup = 7;
constexpr unsigned kProbeBuffers = 8;
constexpr unsigned kProbeBufSize = 64;

class ProbeRing {
  public:
    int init(unsigned flags) {
        io_uring_params p{};
        p.flags = flags;
        p.cq_entries = 16;
        int err = io_uring_queue_init_params(8, &ring_, &p);
        ready_ = err == 0;
        return err;
    }
    ~ProbeRing() {
        if (ready_) {
            io_uring_queue_exit(&ring_);
        }
    }
    io_uring* get() { return &ring_; }

    // The next completion with `user_data`, or a negative errno (-ETIME after ~1 s).
    int wait_for(__u64 user_data, unsigned* flags) {
        for (int i = 0; i < 16; ++i) {
            io_uring_cqe* cqe = nullptr;
            __kernel_timespec ts{1, 0};
            int err = io_uring_wait_cqe_timeout(&ring_, &cqe, &ts);
            if (err < 0) {
                return err;
            }
            __u64 ud = cqe->user_data;
            int res = cqe->res;
            *flags = cqe->flags;
            io_uring_cqe_seen(&ring_, cqe);
            if (ud == user_data) {
                return res;
            }
        }
        return -ETIME;
    }

    // Waits for the completions of both `a` and `b`, in whichever order they come: a
    // cancellation's own completion may come before the cancelled one's, and waiting for
    // them one by one would throw the first away and then wait the full second for it.
    void wait_both(__u64 a, __u64 b) {
        bool seen_a = false, seen_b = false;
        for (int i = 0; i < 16 && !(seen_a && seen_b); ++i) {
            io_uring_cqe* cqe = nullptr;
            __kernel_timespec ts{1, 0};
            if (io_uring_wait_cqe_timeout(&ring_, &cqe, &ts) < 0) {
                return;
            }
            seen_a = seen_a || cqe->user_data == a;
            seen_b = seen_b || cqe->user_data == b;
            io_uring_cqe_seen(&ring_, cqe);
        }
    }

  private:
    io_uring ring_{};
    bool ready_ = false;
};

struct Op {
    int opcode;
    const char* name;
    const char* kernel;
};

// Every opcode the engine submits, with the kernel that introduced it.
constexpr Op kOps[] = {
    {IORING_OP_NOP, "NOP", "5.1"},
    {IORING_OP_POLL_ADD, "POLL_ADD", "5.1"},
    {IORING_OP_TIMEOUT, "TIMEOUT", "5.4"},
    {IORING_OP_ACCEPT, "ACCEPT", "5.5"},
    {IORING_OP_ASYNC_CANCEL, "ASYNC_CANCEL", "5.5"},
    {IORING_OP_CONNECT, "CONNECT", "5.5"},
    {IORING_OP_READ, "READ", "5.6"},
    {IORING_OP_SEND, "SEND", "5.6"},
    {IORING_OP_RECV, "RECV", "5.6"},
    {IORING_OP_SPLICE, "SPLICE", "5.7"},
};

std::string feature_missing(const std::string& what, const char* kernel, int err) {
    return "io_uring " + what + " is not available (" + std::strerror(err) + "): it needs Linux " +
           kernel + " or later";
}

// A unix stream listener with an autobound abstract name, and a client connected to it.
bool unix_pair_via_listener(UniqueFd& listener, sockaddr_un& addr, socklen_t& len) {
    listener.reset(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (!listener.valid()) {
        return false;
    }
    sockaddr_un any{};
    any.sun_family = AF_UNIX;
    if (bind(listener.get(), reinterpret_cast<sockaddr*>(&any), sizeof(sa_family_t)) != 0 ||
        listen(listener.get(), 4) != 0) {
        return false;
    }
    len = sizeof addr;
    return getsockname(listener.get(), reinterpret_cast<sockaddr*>(&addr), &len) == 0;
}

void probe_multishot_accept(ProbeRing& ring, UringProbe& out) {
    UniqueFd listener;
    sockaddr_un addr{};
    socklen_t len = 0;
    if (!unix_pair_via_listener(listener, addr, len)) {
        out.notes.push_back("multishot accept not probed: no unix socket (" +
                            std::string(std::strerror(errno)) + ")");
        return;
    }
    io_uring_sqe* sqe = io_uring_get_sqe(ring.get());
    io_uring_prep_multishot_accept(sqe, listener.get(), nullptr, nullptr, SOCK_CLOEXEC);
    sqe->user_data = 1;
    io_uring_submit(ring.get());
    UniqueFd client(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (client.valid()) {
        (void)connect(client.get(), reinterpret_cast<sockaddr*>(&addr), len);
    }
    unsigned flags = 0;
    int res = ring.wait_for(1, &flags);
    if (res >= 0) {
        UniqueFd accepted(res);
        if (!(flags & IORING_CQE_F_MORE)) {
            out.problems.push_back(
                "io_uring multishot accept ended after one connection: it needs Linux 5.19 or "
                "later");
        }
        sqe = io_uring_get_sqe(ring.get());
        io_uring_prep_cancel64(sqe, 1, 0);
        sqe->user_data = 2;
        io_uring_submit(ring.get());
        ring.wait_both(1, 2);  // the accept's -ECANCELED and the cancel's result
        return;
    }
    out.problems.push_back(feature_missing("multishot accept", "5.19", -res));
}

void probe_buffers_and_recv(ProbeRing& ring, UringProbe& out) {
    size_t ring_bytes = kProbeBuffers * sizeof(io_uring_buf);
    void* mem =
        mmap(nullptr, ring_bytes, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
    if (mem == MAP_FAILED) {
        out.problems.push_back("cannot map memory for the buffer-ring probe");
        return;
    }
    char data[kProbeBuffers][kProbeBufSize];
    auto* br = static_cast<io_uring_buf_ring*>(mem);
    io_uring_buf_ring_init(br);
    io_uring_buf_reg reg{};
    reg.ring_addr = reinterpret_cast<unsigned long>(br);
    reg.ring_entries = kProbeBuffers;
    reg.bgid = kProbeGroup;
    int err = io_uring_register_buf_ring(ring.get(), &reg, 0);
    if (err != 0) {
        munmap(mem, ring_bytes);
        out.problems.push_back(feature_missing("provided buffer rings", "5.19", -err));
        out.problems.push_back(
            "io_uring multishot receive not probed: it needs provided buffer rings (Linux 6.0 or "
            "later)");
        return;
    }
    for (unsigned i = 0; i < kProbeBuffers; ++i) {
        io_uring_buf_ring_add(br, data[i], kProbeBufSize, static_cast<unsigned short>(i),
                              io_uring_buf_ring_mask(kProbeBuffers), static_cast<int>(i));
    }
    io_uring_buf_ring_advance(br, kProbeBuffers);

    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
        out.notes.push_back("multishot receive not probed: no unix socket pair");
    } else {
        UniqueFd a(sv[0]), b(sv[1]);
        (void)write(b.get(), "x", 1);
        io_uring_sqe* sqe = io_uring_get_sqe(ring.get());
        io_uring_prep_recv_multishot(sqe, a.get(), nullptr, 0, 0);
        sqe->flags |= IOSQE_BUFFER_SELECT;
        sqe->buf_group = kProbeGroup;
        sqe->user_data = 3;
        io_uring_submit(ring.get());
        unsigned flags = 0;
        int res = ring.wait_for(3, &flags);
        if (res < 0) {
            out.problems.push_back(feature_missing("multishot receive", "6.0", -res));
        } else if (!(flags & IORING_CQE_F_MORE)) {
            out.problems.push_back(
                "io_uring multishot receive ended after one completion: it needs Linux 6.0 or "
                "later");
        } else {
            sqe = io_uring_get_sqe(ring.get());
            io_uring_prep_cancel64(sqe, 3, 0);
            sqe->user_data = 4;
            io_uring_submit(ring.get());
            ring.wait_both(3, 4);
        }
    }
    (void)io_uring_unregister_buf_ring(ring.get(), kProbeGroup);
    munmap(mem, ring_bytes);
}

}  // namespace

int read_io_uring_disabled() {
    FILE* f = std::fopen("/proc/sys/kernel/io_uring_disabled", "re");
    if (f == nullptr) {
        return -1;
    }
    int v = -1;
    if (std::fscanf(f, "%d", &v) != 1) {
        v = -1;
    }
    std::fclose(f);
    return v;
}

std::string uring_setup_failure(int err, int io_uring_disabled) {
    std::string s =
        "io_uring is not available (io_uring_setup: " + std::string(std::strerror(err)) + "): ";
    if (err == ENOSYS) {
        return s +
               "this kernel was built without it (CONFIG_IO_URING, Linux 5.1 or later; tpengine "
               "needs 6.0) or a seccomp filter (a container's profile) hides it; allow "
               "io_uring_setup, io_uring_enter and io_uring_register";
    }
    if (err == EPERM || err == EACCES) {
        if (io_uring_disabled == 2) {
            return s +
                   "the sysctl kernel.io_uring_disabled is 2 (io_uring switched off); set it "
                   "to 0 (`sysctl -w kernel.io_uring_disabled=0`)";
        }
        if (io_uring_disabled == 1) {
            return s +
                   "the sysctl kernel.io_uring_disabled is 1 (only members of the group "
                   "kernel.io_uring_group and CAP_SYS_ADMIN may use it); set it to 0 or run "
                   "tpengine in that group";
        }
        return s +
               "a seccomp filter (a container's or a service manager's profile) forbids it; "
               "allow io_uring_setup, io_uring_enter and io_uring_register";
    }
    if (err == ENOMEM) {
        return s + "not enough locked memory (RLIMIT_MEMLOCK, before Linux 5.12) or memory";
    }
    if (err == EMFILE || err == ENFILE) {
        return s + "no file descriptor left";
    }
    return s + "tpengine needs Linux 6.0 or later";
}

UringProbe probe_uring() {
    UringProbe out;
    {
        ProbeRing plain;
        if (int err = plain.init(0); err < 0) {
            out.problems.push_back(uring_setup_failure(-err, read_io_uring_disabled()));
            return out;
        }
    }
    ProbeRing ring;
    if (int err = ring.init(IORING_SETUP_CQSIZE | IORING_SETUP_SUBMIT_ALL); err < 0) {
        out.problems.push_back(feature_missing("set-up flag SUBMIT_ALL", "5.18", -err));
        return out;
    }
    io_uring_probe* p = io_uring_get_probe_ring(ring.get());
    if (p == nullptr) {
        out.problems.push_back(
            "io_uring cannot list its operations (IORING_REGISTER_PROBE): it "
            "needs Linux 5.6 or later");
        return out;
    }
    for (const Op& op : kOps) {
        if (!io_uring_opcode_supported(p, op.opcode)) {
            out.problems.push_back(std::string("io_uring operation ") + op.name +
                                   " is not supported: it needs Linux " + op.kernel + " or later");
        }
    }
    io_uring_free_probe(p);
    if (!out.ok()) {
        return out;
    }
    probe_multishot_accept(ring, out);
    probe_buffers_and_recv(ring, out);
    {
        ProbeRing defer;
        if (defer.init(IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN) < 0) {
            out.notes.push_back(
                "io_uring DEFER_TASKRUN is not available (Linux 6.1): the workers use "
                "COOP_TASKRUN or plain task running instead");
        }
    }
    return out;
}

}  // namespace tp::engine

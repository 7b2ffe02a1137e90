// UdpFlows: listener datagrams -> flow lookup/creation -> send upstream; upstream datagrams ->
// reply socket (or the listener) -> send to the client. Receives are multishot recvmsg into this
// worker's UDP buffer ring; each datagram is sent from the buffer it arrived in with one
// IORING_OP_SENDMSG (submitted with the pass's other SQEs, no syscall per datagram), and the
// buffer returns to the ring when the send completes. Sockets a pending SQE may name are closed
// only after that SQE is submitted (closing_).
#include "engine/udp_flows.h"

#include <netinet/in.h>
#include <netinet/udp.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "engine/cmsg.h"
#include "engine/udp_sock.h"
#include "engine/worker.h"

namespace tp::engine {

namespace {
// Room for the largest datagram plus the recvmsg header, name and control messages, rounded up
// to a cache line so every buffer (and the io_uring_recvmsg_out at its start) stays aligned.
constexpr uint32_t kBufSize = (65'507 + 512 + 63) & ~63u;
constexpr uint32_t kBufCount = 256;
constexpr uint32_t kBufInitial = 64;
constexpr uint32_t kReplyRetryMs = 1000;  // a failed reply bind is retried at most once a second

uint16_t port_of(const sockaddr* sa) {
    return ntohs(sa->sa_family == AF_INET ? reinterpret_cast<const sockaddr_in*>(sa)->sin_port
                                          : reinterpret_cast<const sockaddr_in6*>(sa)->sin6_port);
}

plan::SockAddr to_plan(const sockaddr* sa, socklen_t len) {
    plan::SockAddr a;
    std::memcpy(&a.storage, sa, std::min<size_t>(len, sizeof a.storage));
    a.len = len;
    return unmap_v4(a);
}

// `a` in `family` (v4 <-> v4-mapped v6); false if it cannot be expressed there.
bool in_family(const sockaddr* sa, socklen_t len, int family, sockaddr_in6& out,
               socklen_t& out_len) {
    if (sa->sa_family == family) {
        std::memcpy(&out, sa, len);
        out_len = len;
        return true;
    }
    if (family == AF_INET6 && sa->sa_family == AF_INET) {
        const auto* s4 = reinterpret_cast<const sockaddr_in*>(sa);
        out = sockaddr_in6{};
        out.sin6_family = AF_INET6;
        out.sin6_port = s4->sin_port;
        out.sin6_addr.s6_addr[10] = 0xff;
        out.sin6_addr.s6_addr[11] = 0xff;
        std::memcpy(&out.sin6_addr.s6_addr[12], &s4->sin_addr, 4);
        out_len = sizeof out;
        return true;
    }
    plan::SockAddr u = to_plan(sa, len);
    if (u.family() != family) {
        return false;
    }
    std::memcpy(&out, &u.storage, u.len);
    out_len = u.len;
    return true;
}

// Op::udp_send completions: the gen field tells a lone datagram (slot = its buffer id) from a
// GSO batch (slot = batch id).
constexpr uint32_t kSendOne = 0;
constexpr uint32_t kSendBatch = 1;
// A batch's payload stays below the 65,507 bytes one UDP send may carry (v4 and v6).
constexpr uint32_t kGsoMaxBytes = 65'000;

uint64_t ud(Op op, uint32_t gen, uint32_t slot) {
    return UserData{op, gen, slot}.pack();
}
}  // namespace

UdpFlows::UdpFlows(Ring& ring, WorkerStats& stats, const UdpConfig& cfg)
    : ring_(ring),
      stats_(stats),
      cfg_(cfg),
      table_(65'536, 4'096),
      socks_(ring, stats, cfg.bypass_mark) {
    listen_mh_.msg_namelen = kNameLen;
    listen_mh_.msg_controllen = kListenerControlLen;
    plain_mh_.msg_namelen = kNameLen;
    plain_mh_.msg_controllen = kGroControlLen;
}

UdpFlows::~UdpFlows() {
    close_all();
}

void UdpFlows::log_limited(const char* msg, int err) {
    if (log_ever_ && now_ - last_log_ms_ < 1000) {
        return;
    }
    log_ever_ = true;
    last_log_ms_ = now_;
    std::fprintf(stderr, "tpengine: worker %u: udp: %s: %s\n", cfg_.worker, msg,
                 std::strerror(err));
}

void UdpFlows::cancel(uint64_t target) {
    io_uring_sqe* sqe = ring_.get_sqe();
    io_uring_prep_cancel64(sqe, target, 0);
    io_uring_sqe_set_data64(sqe, ud(Op::ignore, 0, 0));
}

void UdpFlows::retire(uint32_t li) {
    Listener& l = *listeners_[li];
    if (l.retired) {
        return;
    }
    l.retired = true;
    if (l.armed) {
        cancel(ud(Op::udp_listen, l.gen, li));
        l.armed = false;
    }
    // Replies of a non-transparent listener leave through its socket: its flows end with it.
    if (!l.shared->cfg.transparent) {
        for (uint32_t id = 0; id < flows_.size(); ++id) {
            if (table_.used(id) && flows_[id].li == li) {
                end_flow(id, UdpEnd::shutdown);
            }
        }
    }
    close_later(std::move(l.fd));
}

void UdpFlows::set_listeners(const std::vector<std::shared_ptr<ListenerShared>>& ls,
                             const std::vector<std::shared_ptr<ListenerShared>>& replaces,
                             std::vector<UniqueFd>& fds, const SelfSet* self) {
    self_ = self;
    for (uint32_t li = 0; li < listeners_.size(); ++li) {
        Listener& l = *listeners_[li];
        if (l.retired) {
            continue;
        }
        auto r = std::find(replaces.begin(), replaces.end(), l.shared);
        if (r != replaces.end() && *r) {
            // In place: same socket, live flows continue under the new settings.
            l.shared = ls[static_cast<size_t>(r - replaces.begin())];
        } else if (std::find(ls.begin(), ls.end(), l.shared) == ls.end()) {
            retire(li);
        }
    }
    for (size_t i = 0; i < ls.size(); ++i) {
        if (!fds[i].valid()) {
            continue;
        }
        bool known = false;
        for (auto& l : listeners_) {
            known = known || (!l->retired && l->shared == ls[i]);
        }
        if (known) {
            continue;
        }
        if (!bufs_ready_) {
            if (auto r = bufs_.init(ring_.get(), kBufGroup, kBufCount, kBufSize, kBufInitial); !r) {
                log_limited("cannot set up the UDP buffer ring", r.error().code);
                return;
            }
            bufs_ready_ = true;
            slots_.resize(bufs_.max_count());
        }
        auto l = std::make_unique<Listener>();
        l->shared = ls[i];
        l->fd = std::move(fds[i]);
        enable_gro(l->fd.get());
        listeners_.push_back(std::move(l));
        if (accepting_) {
            arm_listener(static_cast<uint32_t>(listeners_.size() - 1));
        }
    }
}

void UdpFlows::stop_accepting() {
    accepting_ = false;
    for (uint32_t li = 0; li < listeners_.size(); ++li) {
        Listener& l = *listeners_[li];
        // A transparent listener is only the way in; non-transparent ones also carry replies
        // and stay open (unread) until close_all.
        if (l.armed) {
            cancel(ud(Op::udp_listen, l.gen, li));
            l.armed = false;
        }
        if (l.shared->cfg.transparent) {
            close_later(std::move(l.fd));
        }
    }
}

void UdpFlows::close_all() {
    for (uint32_t id = 0; id < flows_.size(); ++id) {
        if (table_.used(id)) {
            end_flow(id, UdpEnd::shutdown);
        }
    }
    for (uint32_t li = 0; li < listeners_.size(); ++li) {
        retire(li);
    }
    for (auto& r : replies_) {
        close_later(std::move(r.second.fd));
    }
    replies_.clear();
    reply_lru_.clear();
    WorkerStats::sub(stats_.udp_reply_sockets,
                     stats_.udp_reply_sockets.load(std::memory_order_relaxed));
}

void UdpFlows::arm_listener(uint32_t li) {
    Listener& l = *listeners_[li];
    if (l.armed || l.retired || !l.fd.valid() || !accepting_) {
        return;
    }
    l.gen = (l.gen + 1) & UserData::gen_mask;
    io_uring_sqe* sqe = ring_.get_sqe();
    io_uring_prep_recvmsg_multishot(
        sqe, l.fd.get(), l.shared->cfg.transparent ? &listen_mh_ : &plain_mh_, MSG_TRUNC);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = kBufGroup;
    io_uring_sqe_set_data64(sqe, ud(Op::udp_listen, l.gen, li));
    l.armed = true;
}

void UdpFlows::arm_flow(uint32_t id) {
    Flow& f = flows_[id];
    io_uring_sqe* sqe = ring_.get_sqe();
    io_uring_prep_recvmsg_multishot(sqe, f.fd.get(), &plain_mh_, MSG_TRUNC);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = kBufGroup;
    io_uring_sqe_set_data64(sqe, ud(Op::udp_upstream, f.gen, id));
    f.armed = true;
}

void UdpFlows::handle(const UserData& u, const io_uring_cqe* cqe, uint64_t now_ms) {
    now_ = now_ms;
    if (u.op == Op::udp_send) {
        if (u.gen == kSendBatch) {
            if (u.slot < batches_.size()) {
                gso_done(u.slot, cqe->res);
            }
            return;
        }
        const SendSlot& s = slots_[u.slot];
        sent(s.up, s.flow, s.gen, cqe->res, static_cast<uint32_t>(s.iov.iov_len));
        bufs_.release(static_cast<uint16_t>(u.slot));
        return;
    }
    if (u.op == Op::udp_socks) {
        UdpEnd why = UdpEnd::socks_failed;
        uint32_t id = socks_.handle(u, cqe, why);
        if (id != UdpSocks::npos) {
            end_flow(id, why);
        }
        return;
    }
    bool has_buf = (cqe->flags & IORING_CQE_F_BUFFER) != 0;
    uint16_t bid = static_cast<uint16_t>(cqe->flags >> IORING_CQE_BUFFER_SHIFT);
    cur_bid_ = bid;
    keep_buf_ = false;
    if (u.op == Op::udp_listen) {
        on_listener(u, cqe, has_buf ? bufs_.addr(bid) : nullptr);
    } else {
        on_upstream(u, cqe, has_buf ? bufs_.addr(bid) : nullptr);
    }
    if (has_buf && !keep_buf_) {
        bufs_.release(bid);  // nothing is being sent from it: free again
    }
}

void UdpFlows::on_listener(const UserData& u, const io_uring_cqe* cqe, void* buf) {
    if (u.slot >= listeners_.size()) {
        return;
    }
    Listener& l = *listeners_[u.slot];
    bool current = u.gen == l.gen && l.armed;
    if (current && !(cqe->flags & IORING_CQE_F_MORE)) {
        l.armed = false;
        if (cqe->res == -ENOBUFS) {
            starved_.push_back(Starved{true, u.slot, l.gen});
        } else if (cqe->res != -ECANCELED) {
            arm_listener(u.slot);  // multishot ended (e.g. CQ overflow): keep receiving
        }
    }
    if (cqe->res < 0 || buf == nullptr || l.retired) {
        return;
    }
    RecvView v;
    if (!parse_recvmsg(buf, cqe->res, l.shared->cfg.transparent ? listen_mh_ : plain_mh_, v) ||
        v.name == nullptr) {
        drop(UdpDrop::no_flow);
        return;
    }
    relay_up(u.slot, v);
}

void UdpFlows::relay_up(uint32_t li, const RecvView& v) {
    const plan::Listener& cfg = listeners_[li]->shared->cfg;
    if (v.truncated || v.dgram_max() > cfg.udp.max_datagram) {
        drop(UdpDrop::oversize);
        return;
    }
    plan::SockAddr dst;
    if (cfg.target == plan::UpstreamTarget::fixed) {
        dst = unmap_v4(cfg.upstream_address);
    } else if (v.has_origdst) {
        dst = v.origdst;
    } else {
        drop(UdpDrop::no_origdst);
        return;
    }
    auto is_self = [&] {
        return cfg.target == plan::UpstreamTarget::fixed ? listeners_[li]->shared->fixed_is_self
                                                         : (self_ && self_->contains(dst));
    };
    FlowKey k;
    FlowKey::from_sockaddr(v.name, k);
    uint32_t id = table_.find(k);
    if (id == FlowTable::npos) {
        if (!accepting_) {
            drop(UdpDrop::shed);
            return;
        }
        if (is_self()) {  // before any socket is made for it
            drop(UdpDrop::self);
            return;
        }
        // Routes choose once per flow; domains are never known for UDP (docs/config.md).
        const plan::Upstream* up = nullptr;
        if (int r = listeners_[li]->shared->routes.match(dst, true, {}); r >= 0) {
            up = &cfg.upstreams[cfg.routes[static_cast<size_t>(r)].upstream];
            if (up->kind == plan::UpstreamKind::reject) {
                drop(UdpDrop::rejected);
                return;
            }
            if (up->kind != plan::UpstreamKind::socks5) {
                up = nullptr;  // direct: the listener's own path
            }
        }
        id = new_flow(li, k, v, dst, up);
        if (id == FlowTable::npos) {
            return;
        }
        std::memcpy(&flows_[id].dst, &dst.storage, dst.len);
        flows_[id].dst_len = dst.len;
    } else {
        table_.touch(id, now_);
    }
    Flow& f = flows_[id];
    if (dst.len != f.dst_len || std::memcmp(&dst.storage, &f.dst, dst.len) != 0) {
        // A new destination for this mapping: the self test runs once per change, not per
        // datagram.
        if (is_self()) {
            drop(UdpDrop::self);
            return;
        }
        std::memcpy(&f.dst, &dst.storage, dst.len);
        f.dst_len = dst.len;
    }
    if (f.dns) {
        f.dns_pending += v.dgrams();  // before the send: its answer may come in the same pass
    }
    if (f.socks) {
        // One SOCKS header per datagram: a GRO buffer is cut at its segments first.
        v.for_each_dgram([&](const uint8_t* d, uint32_t n) { socks_.send_up(id, dst, d, n); });
        return;
    }
    send_dgram(true, id, f.fd.get(), v, &f.dst, f.dst_len);
}

void UdpFlows::send_dgram(bool up, uint32_t id, int fd, const RecvView& v, const void* to,
                          socklen_t to_len, const sockaddr* from, socklen_t from_len) {
    uint32_t gen = flows_[id].gen;
    if (v.gro_size != 0) {
        WorkerStats::add(stats_.udp_gro_recvs, 1);
    }
    bool batch = cfg_.gso && !cfg_.direct_send && v.len > 0 && !flows_[id].no_gso;
    if (cfg_.direct_send || (v.gro_size != 0 && !batch)) {
        if (!cfg_.direct_send) {
            submit_queued();
        }
        send_now(up, id, gen, fd, v.payload, v.len, v.gro_size, to, to_len);
        return;
    }
    keep_buf_ = true;
    if (batch) {
        if (v.gro_size == 0 && gso_append(up, id, fd, v, to, to_len)) {
            return;
        }
        gso_flush();
        uint32_t bi;
        if (free_batches_.empty()) {
            bi = static_cast<uint32_t>(batches_.size());
            batches_.push_back(std::make_unique<GsoBatch>());
        } else {
            bi = free_batches_.back();
            free_batches_.pop_back();
        }
        GsoBatch& b = *batches_[bi];
        b.n = 1;
        b.dgrams = v.dgrams();
        b.bytes = v.len;
        b.seg = v.gro_size != 0 ? v.gro_size : v.len;
        b.flow = id;
        b.gen = gen;
        b.fd = fd;
        b.up = up;
        b.full = v.gro_size != 0;  // a GRO buffer goes as it came
        b.iov[0].iov_base = const_cast<uint8_t*>(v.payload);
        b.iov[0].iov_len = v.len;
        b.bids[0] = cur_bid_;
        std::memcpy(&b.to, to, std::min<size_t>(to_len, sizeof b.to));
        b.to_len = to_len;
        b.from_len = from != nullptr ? from_len : 0;
        if (from != nullptr) {
            std::memcpy(&b.from, from, std::min<size_t>(from_len, sizeof b.from));
        }
        open_batch_ = bi;
        return;
    }
    gso_flush();  // whatever is open goes first
    send_one(up, id, gen, fd, cur_bid_, v.payload, v.len, to, to_len);
}

void UdpFlows::submit_queued() {
    // Before a datagram leaves with a direct syscall (rare paths): the sends queued in this
    // pass, this flow's among them, go first, so its datagrams keep their order.
    gso_flush();
    io_uring_submit(ring_.get());
}

ListenerCounters* UdpFlows::counters(uint32_t li) {
    const auto& set = listeners_[li]->shared->counters;
    return set ? &set->of(cfg_.worker) : nullptr;
}

void UdpFlows::enable_gro(int fd) {
    // Where the kernel coalesces a flow's datagrams (NIC GRO on the way down, a local sender's
    // GSO), one receive then carries up to 64 of them; they leave as one UDP_SEGMENT send.
    // Off with batching off: nothing else here would send such a buffer in one go.
    if (cfg_.gro && cfg_.gso && !cfg_.direct_send) {
        int one = 1;
        setsockopt(fd, SOL_UDP, UDP_GRO, &one, sizeof one);  // kernel < 5.0: no GRO, no harm
    }
}

void UdpFlows::send_now(bool up, uint32_t id, uint32_t gen, int fd, const uint8_t* data,
                        uint32_t len, uint32_t seg, const void* to, socklen_t to_len) {
    for_each_segment(data, len, seg, [&](const uint8_t* d, uint32_t n) {
        ssize_t r = ::sendto(fd, d, n, MSG_DONTWAIT, static_cast<const sockaddr*>(to), to_len);
        sent(up, id, gen, r < 0 ? -errno : static_cast<int>(r), n);
    });
}

void UdpFlows::send_one(bool up, uint32_t id, uint32_t gen, int fd, uint16_t bid,
                        const uint8_t* data, uint32_t len, const void* to, socklen_t to_len) {
    SendSlot& s = slots_[bid];
    s.flow = id;
    s.gen = gen;
    s.up = up;
    std::memcpy(&s.to, to, std::min<size_t>(to_len, sizeof s.to));
    s.iov.iov_base = const_cast<uint8_t*>(data);
    s.iov.iov_len = len;
    s.mh = msghdr{};
    s.mh.msg_name = &s.to;
    s.mh.msg_namelen = to_len;
    s.mh.msg_iov = &s.iov;
    s.mh.msg_iovlen = 1;
    io_uring_sqe* sqe = ring_.get_sqe();
    io_uring_prep_sendmsg(sqe, fd, &s.mh, MSG_DONTWAIT);
    io_uring_sqe_set_data64(sqe, ud(Op::udp_send, kSendOne, bid));
}

bool UdpFlows::gso_append(bool up, uint32_t id, int fd, const RecvView& v, const void* to,
                          socklen_t to_len) {
    if (open_batch_ == UINT32_MAX) {
        return false;
    }
    GsoBatch& b = *batches_[open_batch_];
    if (b.full || b.up != up || b.flow != id || b.gen != flows_[id].gen || b.fd != fd ||
        b.dgrams == kGsoSegs || v.len > b.seg || b.bytes + v.len > kGsoMaxBytes ||
        b.to_len != to_len || std::memcmp(&b.to, to, to_len) != 0) {
        return false;
    }
    b.iov[b.n].iov_base = const_cast<uint8_t*>(v.payload);
    b.iov[b.n].iov_len = v.len;
    b.bids[b.n] = cur_bid_;
    ++b.n;
    ++b.dgrams;
    b.bytes += v.len;
    b.full = v.len < b.seg;  // only the last may be shorter
    return true;
}

void UdpFlows::gso_flush() {
    if (open_batch_ == UINT32_MAX) {
        return;
    }
    uint32_t bi = open_batch_;
    open_batch_ = UINT32_MAX;
    GsoBatch& b = *batches_[bi];
    if (b.dgrams == 1) {
        send_one(b.up, b.flow, b.gen, b.fd, b.bids[0],
                 static_cast<const uint8_t*>(b.iov[0].iov_base),
                 static_cast<uint32_t>(b.iov[0].iov_len), &b.to, b.to_len);
        free_batches_.push_back(bi);
        return;
    }
    b.mh = msghdr{};
    b.mh.msg_name = &b.to;
    b.mh.msg_namelen = b.to_len;
    b.mh.msg_iov = b.iov;
    b.mh.msg_iovlen = b.n;
    b.mh.msg_control = b.ctrl;
    b.mh.msg_controllen = sizeof b.ctrl;
    cmsghdr* c = CMSG_FIRSTHDR(&b.mh);
    c->cmsg_level = SOL_UDP;
    c->cmsg_type = UDP_SEGMENT;
    c->cmsg_len = CMSG_LEN(sizeof(uint16_t));
    uint16_t seg = static_cast<uint16_t>(b.seg);
    std::memcpy(CMSG_DATA(c), &seg, sizeof seg);
    io_uring_sqe* sqe = ring_.get_sqe();
    io_uring_prep_sendmsg(sqe, b.fd, &b.mh, MSG_DONTWAIT);
    io_uring_sqe_set_data64(sqe, ud(Op::udp_send, kSendBatch, bi));
}

void UdpFlows::gso_done(uint32_t bi, int res) {
    GsoBatch& b = *batches_[bi];
    free_batches_.push_back(bi);
    if (res >= 0) {
        WorkerStats::add(b.up ? stats_.udp_dgrams_up : stats_.udp_dgrams_down, b.dgrams);
        WorkerStats::add(b.up ? stats_.udp_bytes_up : stats_.udp_bytes_down, b.bytes);
        WorkerStats::add(stats_.udp_gso_sends, 1);
        WorkerStats::add(stats_.udp_gso_dgrams, b.dgrams);
    } else {
        bool live = table_.used(b.flow) && flows_[b.flow].gen == b.gen;
        int fd = -1;
        if (live && (res == -EINVAL || res == -EIO || res == -EMSGSIZE || res == -EOPNOTSUPP ||
                     res == -ENOPROTOOPT)) {
            // The path cannot take this batch (segment above the route's MTU, no checksum
            // offload, ...): this flow sends one by one from now on, these datagrams at once
            // (rare). The socket is looked up again: the batch's may have been closed meanwhile.
            Flow& f = flows_[b.flow];
            f.no_gso = true;
            Listener& l = *listeners_[f.li];
            if (b.up) {
                fd = f.fd.get();
            } else if (l.shared->cfg.transparent) {
                bool raw = false;
                fd = b.from_len > 0
                         ? reply_fd(reinterpret_cast<const sockaddr*>(&b.from), b.from_len, raw)
                         : -1;
            } else {
                fd = l.fd.get();
            }
        }
        if (fd >= 0) {
            submit_queued();
        }
        for (uint32_t i = 0; i < b.n; ++i) {
            const auto* p = static_cast<const uint8_t*>(b.iov[i].iov_base);
            auto len = static_cast<uint32_t>(b.iov[i].iov_len);
            if (fd >= 0) {
                send_now(b.up, b.flow, b.gen, fd, p, len, b.seg, &b.to, b.to_len);
                continue;
            }
            for_each_segment(p, len, b.seg, [&](const uint8_t*, uint32_t n) {
                sent(b.up, b.flow, b.gen, res, n);
            });
        }
    }
    for (uint32_t i = 0; i < b.n; ++i) {
        bufs_.release(b.bids[i]);
    }
}

void UdpFlows::sent(bool up, uint32_t id, uint32_t gen, int res, uint32_t len) {
    bool live = table_.used(id) && flows_[id].gen == gen;
    if (res >= 0) {
        WorkerStats::add(up ? stats_.udp_dgrams_up : stats_.udp_dgrams_down, 1);
        WorkerStats::add(up ? stats_.udp_bytes_up : stats_.udp_bytes_down, len);
        return;
    }
    if (up && live && flows_[id].dns && flows_[id].dns_pending > 0) {
        --flows_[id].dns_pending;
    }
    switch (-res) {
        case EMSGSIZE:
            drop(UdpDrop::emsgsize);
            return;
        case ECONNREFUSED:
        case EHOSTUNREACH:
        case ENETUNREACH:
        case EHOSTDOWN:
            drop(UdpDrop::send_failed);
            if (up && live) {
                end_flow(id, UdpEnd::icmp);  // a pending ICMP error of the upstream socket
            }
            return;
        default:
            drop(UdpDrop::send_failed);
            return;
    }
}

uint32_t UdpFlows::new_flow(uint32_t li, const FlowKey& k, const RecvView& v,
                            const plan::SockAddr& dst, const plan::Upstream* up) {
    const plan::Listener& cfg = listeners_[li]->shared->cfg;
    table_.set_limits(cfg.udp.max_flows_per_worker, cfg.udp.max_flows_per_client);
    FlowTable::Admission a = table_.admit(k, now_);
    if (a.verdict == FlowTable::Verdict::shed) {
        WorkerStats::add(stats_.udp_shed, 1);
        drop(UdpDrop::shed);
        return FlowTable::npos;
    }
    if (a.verdict == FlowTable::Verdict::evict) {
        end_flow(a.victim, UdpEnd::evicted);
    }
    plan::SockAddr client = to_plan(v.name, v.namelen);
    if (!up && cfg.source != plan::SourceMode::proxy && client.family() != dst.family()) {
        drop(UdpDrop::shed);  // a transparent source must be of the destination's family
        return FlowTable::npos;
    }
    // Through SOCKS5 the socket talks to the relay, of the SOCKS server's family.
    auto fd = up ? make_udp_upstream(unmap_v4(up->address).family(), plan::SourceMode::proxy,
                                     client, cfg_.bypass_mark)
                 : make_udp_upstream(dst.family(), cfg.source, client, cfg_.bypass_mark);
    if (!fd) {
        WorkerStats::add(stats_.udp_shed, 1);
        drop(UdpDrop::shed);
        log_limited(fd.error().what, fd.error().code);
        return FlowTable::npos;
    }
    uint16_t port = port_of(dst.get());
    uint32_t idle = cfg.udp.idle_ms;
    bool dns = port == 53;
    if (dns) {
        idle = cfg.udp.dns_idle_ms;
    } else if (port == 443) {
        idle = cfg.udp.quic_idle_ms;
    }
    uint32_t id = table_.insert(k, now_, idle);
    if (id >= flows_.size()) {
        flows_.resize(id + 1);
    }
    Flow& f = flows_[id];
    uint32_t gen = (f.gen + 1) & UserData::gen_mask;
    f = Flow{};
    f.gen = gen;
    f.fd = std::move(fd.value());
    if (up == nullptr) {
        // Not on a SOCKS relay's socket: each of its datagrams has a header of its own, which a
        // GRO buffer would hide behind the first.
        enable_gro(f.fd.get());
    }
    f.li = li;
    f.dns = dns && cfg.udp.dns_close_after_answer;
    std::memcpy(&f.client, v.name, std::min<size_t>(v.namelen, sizeof f.client));
    f.client_len = v.namelen;
    std::memcpy(&f.first_dst, &dst.storage, dst.len);
    f.first_dst_len = dst.len;
    ++listeners_[li]->flows;
    if (ListenerCounters* lc = counters(li)) {
        ListenerCounters::add(lc->udp_flows, 1);
        ListenerCounters::add(lc->udp_active, 1);
    }
    WorkerStats::add(stats_.udp_created, 1);
    WorkerStats::add(stats_.udp_active, 1);
    arm_flow(id);
    if (up) {
        f.socks = true;
        if (!socks_.start(id, f.gen, f.fd.get(), *up, cfg.timeouts.handshake_ms, now_)) {
            end_flow(id, UdpEnd::socks_failed);
            return FlowTable::npos;
        }
    }
    if (cfg_.log) {
        std::fprintf(stderr, "tpengine: udp flow %s -> %s\n", format_addr(client).c_str(),
                     format_addr(dst).c_str());
    }
    return id;
}

void UdpFlows::end_flow(uint32_t id, UdpEnd why) {
    if (!table_.used(id)) {
        return;
    }
    Flow& f = flows_[id];
    if (f.armed) {
        cancel(ud(Op::udp_upstream, f.gen, id));
        f.armed = false;
    }
    close_later(std::move(f.fd));
    if (f.socks) {
        close_later(socks_.end(id));  // the association ends with its control connection
        f.socks = false;
    }
    f.gen = (f.gen + 1) & UserData::gen_mask;  // late completions of this flow are stale
    --listeners_[f.li]->flows;
    if (ListenerCounters* lc = counters(f.li)) {
        ListenerCounters::sub(lc->udp_active, 1);
    }
    table_.remove(id);
    WorkerStats::sub(stats_.udp_active, 1);
    WorkerStats::add(stats_.udp_ended[static_cast<size_t>(why)], 1);
}

void UdpFlows::on_upstream(const UserData& u, const io_uring_cqe* cqe, void* buf) {
    uint32_t id = u.slot;
    bool live = table_.used(id) && flows_[id].gen == u.gen;
    if (!live) {
        if (cqe->res >= 0 && buf != nullptr) {
            drop(UdpDrop::no_flow);
        }
        return;
    }
    Flow& f = flows_[id];
    if (cqe->res < 0) {
        f.armed = (cqe->flags & IORING_CQE_F_MORE) != 0;
        if (cqe->res == -ENOBUFS) {
            if (!f.armed) {
                starved_.push_back(Starved{false, id, f.gen});
            }
        } else if (cqe->res != -ECANCELED) {
            end_flow(id, UdpEnd::icmp);  // ECONNREFUSED & co: the upstream said no
        }
        return;
    }
    bool more = (cqe->flags & IORING_CQE_F_MORE) != 0;
    if (buf != nullptr) {
        RecvView v;
        if (parse_recvmsg(buf, cqe->res, plain_mh_, v) && v.name != nullptr) {
            relay_down(id, v);
        } else {
            drop(UdpDrop::no_flow);
        }
    }
    if (table_.used(id) && flows_[id].gen == u.gen && !more) {
        flows_[id].armed = false;
        arm_flow(id);
    }
}

void UdpFlows::relay_down(uint32_t id, const RecvView& in) {
    Flow& f = flows_[id];
    // Through SOCKS5: the payload past the header, from the remote the header names.
    const RecvView* unwrapped = f.socks ? socks_.unwrap(id, in) : &in;
    if (unwrapped == nullptr) {
        return;
    }
    const RecvView& v = *unwrapped;
    Listener& l = *listeners_[f.li];
    const plan::Listener& cfg = l.shared->cfg;
    if (v.truncated || v.dgram_max() > cfg.udp.max_datagram) {
        drop(UdpDrop::oversize);
        return;
    }
    table_.touch(id, now_);
    int fd;
    sockaddr_in6 to;
    socklen_t to_len;
    const sockaddr* from = nullptr;  // the reply socket's address (transparent listeners)
    socklen_t from_len = 0;
    if (cfg.transparent) {
        // The reply must come from the address and port the client sent to.
        from = v.name;
        from_len = v.namelen;
        if (cfg.target == plan::UpstreamTarget::fixed) {
            from = reinterpret_cast<const sockaddr*>(&f.first_dst);
            from_len = f.first_dst_len;
        }
        bool raw = false;
        fd = reply_fd(from, from_len, raw);
        plan::SockAddr local = to_plan(from, from_len);
        if ((fd < 0 && !raw) || !in_family(reinterpret_cast<const sockaddr*>(&f.client),
                                           f.client_len, local.family(), to, to_len)) {
            drop(UdpDrop::reply_socket);
            return;
        }
        if (fd < 0) {
            // The port is held by a local service without SO_REUSEADDR: build the datagram
            // ourselves (rare; a direct syscall, the buffer is free again right after).
            submit_queued();
            int rfd = raw_fd(local.family());
            v.for_each_dgram([&](const uint8_t* d, uint32_t len) {  // a GRO buffer: each one
                int n = rfd < 0 ? -EPERM
                                : send_udp_raw(rfd, local.get(), reinterpret_cast<sockaddr*>(&to),
                                               d, len);
                if (n < 0) {
                    drop(UdpDrop::reply_socket);
                } else {
                    WorkerStats::add(stats_.udp_dgrams_down, 1);
                    WorkerStats::add(stats_.udp_bytes_down, len);
                }
            });
            if (f.dns && f.dns_pending > 0 && --f.dns_pending == 0) {
                end_flow(id, UdpEnd::dns_answered);
            }
            return;
        }
    } else {
        fd = l.fd.get();
        to = f.client;
        to_len = f.client_len;
    }
    send_dgram(false, id, fd, v, &to, to_len, from, from_len);
    if (f.dns && f.dns_pending > 0 && --f.dns_pending == 0) {
        end_flow(id, UdpEnd::dns_answered);
    }
}

int UdpFlows::raw_fd(int family) {
    UniqueFd& fd = family == AF_INET ? raw4_ : raw6_;
    if (!fd.valid()) {
        auto r = make_udp_raw(family, cfg_.bypass_mark);
        if (!r) {
            log_limited("cannot create the raw reply socket", r.error().code);
            return -1;
        }
        fd = std::move(r.value());
    }
    return fd.get();
}

int UdpFlows::reply_fd(const sockaddr* from, socklen_t len, bool& raw) {
    FlowKey k;
    if (!FlowKey::from_sockaddr(from, k)) {
        return -1;
    }
    auto it = replies_.find(k);
    if (it != replies_.end()) {
        Reply& r = it->second;
        reply_lru_.splice(reply_lru_.begin(), reply_lru_, r.lru);
        if (r.fd.valid() || now_ < r.retry_at) {
            raw = r.in_use;
            return r.fd.get();
        }
    } else {
        if (replies_.size() >= cfg_.reply_sockets && !reply_lru_.empty()) {
            auto old = replies_.find(reply_lru_.back());
            if (old->second.fd.valid()) {
                WorkerStats::sub(stats_.udp_reply_sockets, 1);
                close_later(std::move(old->second.fd));
            }
            replies_.erase(old);
            reply_lru_.pop_back();
        }
        reply_lru_.push_front(k);
        it = replies_.emplace(k, Reply{}).first;
        it->second.lru = reply_lru_.begin();
    }
    Reply& r = it->second;
    plan::SockAddr local = to_plan(from, len);
    auto fd = make_udp_reply(local, cfg_.reply_mark);
    if (!fd) {
        r.retry_at = now_ + kReplyRetryMs;
        int err = fd.error().code;
        r.in_use = raw = err == EADDRINUSE;
        uint16_t port = port_of(local.get());
        if (err == EADDRINUSE &&
            std::find(inuse_logged_.begin(), inuse_logged_.end(), port) == inuse_logged_.end()) {
            inuse_logged_.push_back(port);
            std::fprintf(stderr,
                         "tpengine: worker %u: udp: cannot send replies from %s: address in use; "
                         "a local service bound to this port without SO_REUSEADDR (dnsmasq or "
                         "ntpd on 0.0.0.0:%u?) blocks them; they go out through a raw socket "
                         "instead (slower; udp_dropped reply_socket counts failures)\n",
                         cfg_.worker, format_addr(local).c_str(), port);
        } else {
            log_limited("cannot create a reply socket", err);
        }
        return -1;
    }
    r.fd = std::move(fd.value());
    r.in_use = false;
    WorkerStats::add(stats_.udp_reply_sockets, 1);
    return r.fd.get();
}

void UdpFlows::after_pass(uint64_t now_ms) {
    now_ = now_ms;
    gso_flush();  // before the submit below: the batch may name a socket about to close
    if (!closing_.empty()) {
        io_uring_submit(ring_.get());  // the sends naming these sockets go first
        closing_.clear();
    }
    if (!bufs_ready_) {
        return;
    }
    if (!starved_.empty()) {
        bufs_.grow();
    }
    bufs_.flush();
    if (starved_.empty()) {
        return;
    }
    std::vector<Starved> s;
    s.swap(starved_);
    for (const Starved& st : s) {
        if (st.listener) {
            if (st.slot < listeners_.size() && listeners_[st.slot]->gen == st.gen) {
                arm_listener(st.slot);
            }
        } else if (table_.used(st.slot) && flows_[st.slot].gen == st.gen &&
                   !flows_[st.slot].armed) {
            arm_flow(st.slot);
        }
    }
}

void UdpFlows::on_tick(uint64_t now_ms) {
    now_ = now_ms;
    table_.expire(now_ms, [this](uint32_t id) { end_flow(id, UdpEnd::expired); });
    socks_.on_tick(now_ms, [this](uint32_t id) { end_flow(id, UdpEnd::socks_failed); });
}

}  // namespace tp::engine

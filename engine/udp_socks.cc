// UdpSocks (see udp_socks.h). The control connection is driven by one-shot polls in the
// worker's ring and short non-blocking send/recv calls: the handshake messages are a few bytes
// each, so they never fill a fresh socket's buffer, and a partial send is treated as a broken
// connection. Datagrams go out with one sendmsg each (header and payload as two iovecs, no
// copy), outside the flow's batched send path.
#include "engine/udp_socks.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "engine/handshake/socks5_udp.h"
#include "engine/sock.h"

namespace tp::engine {

namespace {
bool same_endpoint(const plan::SockAddr& a, const plan::SockAddr& b) {
    if (a.family() != b.family() || a.port() != b.port()) {
        return false;
    }
    if (a.family() == AF_INET) {
        return reinterpret_cast<const sockaddr_in*>(a.get())->sin_addr.s_addr ==
               reinterpret_cast<const sockaddr_in*>(b.get())->sin_addr.s_addr;
    }
    return std::memcmp(&reinterpret_cast<const sockaddr_in6*>(a.get())->sin6_addr,
                       &reinterpret_cast<const sockaddr_in6*>(b.get())->sin6_addr, 16) == 0;
}
}  // namespace

UdpSocks::Assoc* UdpSocks::get(uint32_t id, uint32_t gen) {
    if (id >= assocs_.size() || !assocs_[id] || assocs_[id]->gen != gen) {
        return nullptr;
    }
    return assocs_[id].get();
}

void UdpSocks::poll(uint32_t id, Assoc& a, unsigned mask) {
    io_uring_sqe* sqe = ring_.get_sqe();
    io_uring_prep_poll_add(sqe, a.ctl.get(), mask);
    io_uring_sqe_set_data64(sqe, UserData{Op::udp_socks, a.gen, id}.pack());
    a.polling = true;
}

bool UdpSocks::send_all(Assoc& a, const uint8_t* p, size_t n) {
    ssize_t r = ::send(a.ctl.get(), p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
    return r == static_cast<ssize_t>(n);
}

bool UdpSocks::start(uint32_t id, uint32_t gen, int udp_fd, const plan::Upstream& up,
                     uint32_t handshake_ms, uint64_t now_ms) {
    if (id >= assocs_.size()) {
        assocs_.resize(id + 1);
    }
    auto a = std::make_unique<Assoc>();
    a->gen = gen;
    a->udp_fd = udp_fd;
    a->server = unmap_v4(up.address);
    a->username = up.username;
    a->password = up.password;
    a->pipeline = up.pipeline;
    a->deadline = handshake_ms == 0 ? 0 : now_ms + handshake_ms;
    a->any.storage.ss_family = static_cast<sa_family_t>(a->server.family());
    a->any.len = a->server.family() == AF_INET ? sizeof(sockaddr_in) : sizeof(sockaddr_in6);
    WorkerStats::add(stats_.udp_socks_flows, 1);
    auto fd = make_upstream(a->server, plan::SourceMode::proxy, {}, mark_, false);
    if (!fd) {
        WorkerStats::add(stats_.udp_socks_connect_failed, 1);
        return false;
    }
    a->ctl = std::move(fd.value());
    int fl = fcntl(a->ctl.get(), F_GETFL);
    if (fl < 0 || fcntl(a->ctl.get(), F_SETFL, fl | O_NONBLOCK) != 0) {
        WorkerStats::add(stats_.udp_socks_connect_failed, 1);
        return false;
    }
    if (::connect(a->ctl.get(), a->server.get(), a->server.len) != 0 && errno != EINPROGRESS) {
        WorkerStats::add(stats_.udp_socks_connect_failed, 1);
        return false;
    }
    assocs_[id] = std::move(a);
    ++pending_;
    poll(id, *assocs_[id], POLLOUT);  // connected (or failed): writable, or an error
    return true;
}

UniqueFd UdpSocks::end(uint32_t id) {
    if (id >= assocs_.size() || !assocs_[id]) {
        return UniqueFd{};
    }
    Assoc& a = *assocs_[id];
    if (a.polling) {
        io_uring_sqe* sqe = ring_.get_sqe();
        io_uring_prep_poll_remove(sqe, UserData{Op::udp_socks, a.gen, id}.pack());
        io_uring_sqe_set_data64(sqe, UserData{Op::ignore, 0, 0}.pack());
    }
    UniqueFd fd = std::move(a.ctl);
    if (a.state != State::ready) {
        --pending_;
    }
    assocs_[id].reset();
    return fd;
}

uint32_t UdpSocks::handle(const UserData& u, const io_uring_cqe* cqe, UdpEnd& why) {
    Assoc* a = get(u.slot, u.gen);
    if (a == nullptr) {
        return npos;  // the flow ended meanwhile
    }
    a->polling = false;
    if (cqe->res == -ECANCELED) {
        return npos;
    }
    if (cqe->res < 0) {
        why = a->state == State::ready ? UdpEnd::socks_closed : UdpEnd::socks_failed;
        if (a->state != State::ready) {
            failed(hs::Cause::closed);
        }
        return u.slot;
    }
    return a->state == State::connecting ? on_connected(u.slot, *a, why)
                                         : on_readable(u.slot, *a, why);
}

uint32_t UdpSocks::on_connected(uint32_t id, Assoc& a, UdpEnd& why) {
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(a.ctl.get(), SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0) {
        WorkerStats::add(stats_.udp_socks_connect_failed, 1);
        why = UdpEnd::socks_failed;
        return id;
    }
    hs::Socks5Options opt{a.username, a.password, a.pipeline};
    hs::Socks5Target t{&a.any, {}, 0, true};
    auto first = a.hs.start(opt, t);
    if (first.empty() || !send_all(a, first.data(), first.size())) {
        failed(first.empty() ? hs::Cause::malformed : hs::Cause::closed);
        why = UdpEnd::socks_failed;
        return id;
    }
    a.state = State::handshake;
    poll(id, a, POLLIN);
    return npos;
}

uint32_t UdpSocks::on_readable(uint32_t id, Assoc& a, UdpEnd& why) {
    uint8_t buf[1024];
    ssize_t n = ::recv(a.ctl.get(), buf, sizeof buf, MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
        poll(id, a, POLLIN);
        return npos;
    }
    if (a.state == State::ready) {
        if (n <= 0) {  // EOF or reset: the association is gone (RFC 1928: it ends with the TCP)
            why = UdpEnd::socks_closed;
            return id;
        }
        poll(id, a, POLLIN);  // nothing is expected here; ignore it and keep watching
        return npos;
    }
    hs::Step s = n <= 0 ? hs::Socks5Client::on_eof() : a.hs.feed({buf, static_cast<size_t>(n)});
    if (s.status == hs::Status::need_more) {
        auto next = a.hs.take_out();
        if (!next.empty() && !send_all(a, next.data(), next.size())) {
            failed(hs::Cause::closed);
            why = UdpEnd::socks_failed;
            return id;
        }
        poll(id, a, POLLIN);
        return npos;
    }
    if (s.status == hs::Status::failed || !relay_ready(a)) {
        failed(s.status == hs::Status::failed ? s.cause : hs::Cause::malformed);
        why = UdpEnd::socks_failed;
        return id;
    }
    a.state = State::ready;
    a.deadline = 0;
    --pending_;
    for (auto& d : a.queue) {
        send_one(a, d.data(), static_cast<uint32_t>(d.size()), nullptr, 0);
    }
    a.queue.clear();
    a.queue.shrink_to_fit();
    a.queued_bytes = 0;
    poll(id, a, POLLIN);
    return npos;
}

bool UdpSocks::relay_ready(Assoc& a) {
    plan::SockAddr r;
    if (!a.hs.bound(r)) {
        return false;  // a relay named by domain: we would have to resolve it; refuse
    }
    a.relay = hs::socks5_relay_address(unmap_v4(r), a.server);
    return a.relay.len != 0;
}

void UdpSocks::send_one(Assoc& a, const uint8_t* hdr, uint32_t hlen, const uint8_t* p,
                        uint32_t len) {
    iovec iov[2] = {{const_cast<uint8_t*>(hdr), hlen}, {const_cast<uint8_t*>(p), len}};
    msghdr mh{};
    mh.msg_name = const_cast<sockaddr*>(a.relay.get());
    mh.msg_namelen = a.relay.len;
    mh.msg_iov = iov;
    mh.msg_iovlen = len == 0 ? 1 : 2;
    ssize_t n = ::sendmsg(a.udp_fd, &mh, MSG_DONTWAIT);
    if (n < 0) {
        drop(errno == EMSGSIZE ? UdpDrop::emsgsize : UdpDrop::send_failed);
        return;
    }
    // Payload only, as for direct flows: the header is ours.
    WorkerStats::add(stats_.udp_dgrams_up, 1);
    // A held datagram is one buffer, header included: its ATYP says the header's length.
    uint32_t header = len != 0 ? hlen : (hdr[3] == 0x01 ? 10 : 22);
    WorkerStats::add(stats_.udp_bytes_up, static_cast<uint64_t>(n) - header);
}

void UdpSocks::send_up(uint32_t id, const plan::SockAddr& dst, const uint8_t* payload,
                       uint32_t len) {
    if (id >= assocs_.size() || !assocs_[id]) {
        drop(UdpDrop::no_flow);
        return;
    }
    Assoc& a = *assocs_[id];
    uint8_t hdr[hs::kSocks5UdpMaxHeader];
    uint32_t hlen = hs::socks5_udp_header(dst, hdr);
    if (hlen == 0) {
        drop(UdpDrop::no_origdst);
        return;
    }
    if (a.state == State::ready) {
        send_one(a, hdr, hlen, payload, len);
        return;
    }
    if (a.queue.size() >= kQueueDgrams || a.queued_bytes + hlen + len > kQueueBytes) {
        drop(UdpDrop::socks_queue);
        return;
    }
    std::vector<uint8_t> d(hdr, hdr + hlen);
    d.insert(d.end(), payload, payload + len);
    a.queued_bytes += static_cast<uint32_t>(d.size());
    a.queue.push_back(std::move(d));
}

const RecvView* UdpSocks::unwrap(uint32_t id, const RecvView& in) {
    if (id >= assocs_.size() || !assocs_[id] || assocs_[id]->state != State::ready) {
        drop(UdpDrop::socks_malformed);  // nothing can be expected before the relay is known
        return nullptr;
    }
    Assoc& a = *assocs_[id];
    plan::SockAddr sender;
    std::memcpy(&sender.storage, in.name, std::min<size_t>(in.namelen, sizeof sender.storage));
    sender.len = in.namelen;
    if (!same_endpoint(unmap_v4(sender), a.relay)) {
        drop(UdpDrop::socks_malformed);  // RFC 1928: only the relay may send to this socket
        return nullptr;
    }
    hs::Socks5UdpReply r = hs::parse_socks5_udp({in.payload, in.len});
    if (r.status == hs::UdpHeader::fragment) {
        drop(UdpDrop::socks_fragment);
        return nullptr;
    }
    if (r.status != hs::UdpHeader::ok || r.from.len == 0) {
        drop(UdpDrop::socks_malformed);  // a domain source cannot be a reply's source address
        return nullptr;
    }
    from_ = unmap_v4(r.from);
    view_ = in;
    view_.name = from_.get();
    view_.namelen = from_.len;
    view_.payload += r.header_len;
    view_.len -= r.header_len;
    view_.full_len -= r.header_len;
    return &view_;
}

}  // namespace tp::engine

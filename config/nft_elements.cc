// Set elements (interval or plain) over nfnetlink: the batch is built in large buffers of whole
// messages and handed to the kernel in one sendmsg (a transaction is one datagram).

#include "config/nft_elements.h"

#include <arpa/inet.h>
#include <libmnl/libmnl.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <array>
#include <cerrno>
#include <climits>
#include <cstring>
#include <ctime>
#include <vector>

#include "config/cidr.h"

namespace tp::config {

namespace {

constexpr size_t kChunkBytes = 4u << 20;
// Room for one message; a nested attribute's length is 16 bits.
constexpr size_t kMaxMessage = 64u << 10;
constexpr size_t kMaxElementsNest = 60'000;

// Whole netlink messages in a few big buffers; sent as one iovec list.
class NlBatch {
  public:
    nlmsghdr* begin(uint16_t type, uint16_t flags, uint32_t seq, uint8_t family, uint16_t res_id) {
        if (chunks_.empty() || kChunkBytes - used_.back() < kMaxMessage) {
            chunks_.emplace_back(kChunkBytes);
            used_.push_back(0);
        }
        nlmsghdr* nlh = mnl_nlmsg_put_header(chunks_.back().data() + used_.back());
        nlh->nlmsg_type = type;
        nlh->nlmsg_flags = NLM_F_REQUEST | flags;
        nlh->nlmsg_seq = seq;
        auto* nfg = static_cast<nfgenmsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(nfgenmsg)));
        nfg->nfgen_family = family;
        nfg->version = NFNETLINK_V0;
        nfg->res_id = htons(res_id);
        return nlh;
    }
    void end(const nlmsghdr* nlh) {
        used_.back() += MNL_ALIGN(nlh->nlmsg_len);
        total_ += MNL_ALIGN(nlh->nlmsg_len);
    }
    size_t total() const { return total_; }
    std::vector<iovec> iov() {
        std::vector<iovec> v;
        for (size_t i = 0; i < chunks_.size(); ++i) {
            v.push_back({chunks_[i].data(), used_[i]});
        }
        return v;
    }

  private:
    std::vector<std::vector<char>> chunks_;
    std::vector<size_t> used_;
    size_t total_ = 0;
};

// Big-endian addition of 2^(bits - prefix) to `a`; false when it overflows (the interval
// runs to the end of the address space).
bool interval_end(std::array<uint8_t, 16>& a, int bytes, int prefix) {
    if (prefix == 0) {
        return false;
    }
    int i = (prefix - 1) / 8;
    unsigned carry = 1u << (7 - (prefix - 1) % 8);
    for (; i >= 0 && carry != 0; --i) {
        unsigned v = a[i] + carry;
        a[i] = static_cast<uint8_t>(v);
        carry = v >> 8;
    }
    (void)bytes;
    return carry == 0;
}

class SetWriter {
  public:
    SetWriter(NlBatch& b, const std::string& table, const BigSet& set, uint32_t& seq)
        : b_(b), table_(table), set_(set), seq_(seq), bytes_(set.family == AF_INET ? 4 : 16) {}

    // One CIDR of the set, in descending order: the kernel's rbtree inserts a key below all
    // others in O(log n), one above all others only after a walk (quadratic in total).
    std::string add(std::string_view text) {
        std::string why;
        auto c = parse_cidr(text, why);
        if (!c || c->addr.family != set_.family) {
            return "set " + set_.name + ": bad element \"" + std::string(text) + "\"";
        }
        if (!set_.interval) {
            element(c->addr.bytes, false);
            return {};
        }
        std::array<uint8_t, 16> start = c->addr.bytes, end = start;
        bool bounded = interval_end(end, bytes_, c->prefix);
        if (pending_ && bounded && std::memcmp(end.data(), pending_start_.data(), bytes_) == 0) {
            pending_start_ = start;  // adjacent: one interval, as auto-merge makes it
            return {};
        }
        flush();
        pending_ = true;
        pending_start_ = start;
        pending_end_ = end;
        pending_bounded_ = bounded;
        return {};
    }
    // Writes what is pending, and closes the gap below the lowest interval at 0 as nft does.
    void finish() {
        flush();
        std::array<uint8_t, 16> zero{};
        if (set_.interval && any_ && std::memcmp(lowest_.data(), zero.data(), bytes_) != 0) {
            element(zero, true);
        }
        close_message();
    }
    uint32_t last_seq() const { return last_seq_; }

  private:
    void flush() {
        if (!pending_) {
            return;
        }
        if (pending_bounded_) {
            element(pending_end_, true);
        }
        element(pending_start_, false);
        lowest_ = pending_start_;
        any_ = true;
        pending_ = false;
    }
    void element(const std::array<uint8_t, 16>& key, bool end) {
        if (nlh_ != nullptr &&
            nlh_->nlmsg_len - static_cast<size_t>(reinterpret_cast<char*>(elems_) -
                                                  reinterpret_cast<char*>(nlh_)) >
                kMaxElementsNest) {
            close_message();
        }
        if (nlh_ == nullptr) {
            open_message();
        }
        nlattr* e = mnl_attr_nest_start(nlh_, NFTA_LIST_ELEM);
        if (end) {
            mnl_attr_put_u32(nlh_, NFTA_SET_ELEM_FLAGS, htonl(NFT_SET_ELEM_INTERVAL_END));
        }
        nlattr* k = mnl_attr_nest_start(nlh_, NFTA_SET_ELEM_KEY);
        mnl_attr_put(nlh_, NFTA_DATA_VALUE, bytes_, key.data());
        mnl_attr_nest_end(nlh_, k);
        mnl_attr_nest_end(nlh_, e);
    }
    void open_message() {
        last_seq_ = ++seq_;
        nlh_ = b_.begin((NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWSETELEM, NLM_F_CREATE, seq_,
                        NFPROTO_INET, 0);
        mnl_attr_put_strz(nlh_, NFTA_SET_ELEM_LIST_TABLE, table_.c_str());
        mnl_attr_put_strz(nlh_, NFTA_SET_ELEM_LIST_SET, set_.name.c_str());
        elems_ = mnl_attr_nest_start(nlh_, NFTA_SET_ELEM_LIST_ELEMENTS);
    }
    void close_message() {
        if (nlh_ == nullptr) {
            return;
        }
        mnl_attr_nest_end(nlh_, elems_);
        b_.end(nlh_);
        nlh_ = nullptr;
    }

    NlBatch& b_;
    const std::string& table_;
    const BigSet& set_;
    uint32_t& seq_;
    int bytes_;
    nlmsghdr* nlh_ = nullptr;
    nlattr* elems_ = nullptr;
    uint32_t last_seq_ = 0;
    bool any_ = false;
    std::array<uint8_t, 16> lowest_{};
    bool pending_ = false;
    bool pending_bounded_ = false;
    std::array<uint8_t, 16> pending_start_{}, pending_end_{};
};

struct Socket {
    mnl_socket* s = nullptr;
    ~Socket() {
        if (s != nullptr) {
            mnl_socket_close(s);
        }
    }
};

}  // namespace

std::string load_set_elements(const std::string& batch, const SplitBatch& split) {
    NlBatch b;
    uint32_t seq = static_cast<uint32_t>(time(nullptr));
    nlmsghdr* begin = b.begin(NFNL_MSG_BATCH_BEGIN, 0, seq, AF_UNSPEC, NFNL_SUBSYS_NFTABLES);
    b.end(begin);
    std::vector<std::pair<uint32_t, std::string>> owners;  // first seq of each set's messages
    uint32_t last = 0;
    for (const BigSet& set : split.sets) {
        owners.emplace_back(seq + 1, set.name);
        SetWriter w(b, split.table, set, seq);
        std::string err;
        for_each_element_descending(batch, set, [&](std::string_view e) {
            if (err.empty()) {
                err = w.add(e);
            }
        });
        if (!err.empty()) {
            return err;
        }
        w.finish();
        last = w.last_seq() != 0 ? w.last_seq() : last;
    }
    if (last == 0) {
        return {};
    }
    // Only the last message asks for an ack: errors are reported whatever the flags.
    nlmsghdr* end = b.begin(NFNL_MSG_BATCH_END, 0, ++seq, AF_UNSPEC, NFNL_SUBSYS_NFTABLES);
    b.end(end);
    // The ack flag is set after the fact on the last element message.
    std::vector<iovec> iov = b.iov();
    for (const iovec& v : iov) {
        for (size_t off = 0; off < v.iov_len;) {
            auto* m = reinterpret_cast<nlmsghdr*>(static_cast<char*>(v.iov_base) + off);
            if (m->nlmsg_seq == last) {
                m->nlmsg_flags |= NLM_F_ACK;
            }
            off += MNL_ALIGN(m->nlmsg_len);
        }
    }

    Socket sock;
    sock.s = mnl_socket_open(NETLINK_NETFILTER);
    if (sock.s == nullptr || mnl_socket_bind(sock.s, 0, MNL_SOCKET_AUTOPID) != 0) {
        return std::string("nfnetlink socket: ") + std::strerror(errno);
    }
    int fd = mnl_socket_get_fd(sock.s);
    size_t want = b.total() + (64u << 10);
    int sndbuf = want > INT_MAX / 2 ? INT_MAX / 2 : static_cast<int>(want);
    if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &sndbuf, sizeof sndbuf) != 0) {
        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
    }
    int rcvbuf = 4 << 20;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof rcvbuf);
    int one = 1;
    setsockopt(fd, SOL_NETLINK, NETLINK_CAP_ACK, &one, sizeof one);

    sockaddr_nl kernel{};
    kernel.nl_family = AF_NETLINK;
    msghdr msg{};
    msg.msg_name = &kernel;
    msg.msg_namelen = sizeof kernel;
    msg.msg_iov = iov.data();
    msg.msg_iovlen = iov.size();
    if (sendmsg(fd, &msg, 0) < 0) {
        return std::string("sending ") + std::to_string(b.total()) +
               " bytes of set elements: " + std::strerror(errno);
    }
    iov.clear();
    b = NlBatch();  // the kernel has its copy

    std::string first_error;
    bool done = false;
    std::vector<char> buf(MNL_SOCKET_BUFFER_SIZE);
    while (!done) {
        pollfd p{fd, POLLIN, 0};
        if (poll(&p, 1, 10'000) <= 0) {
            break;
        }
        ssize_t n = recv(fd, buf.data(), buf.size(), 0);
        if (n < 0) {
            if (first_error.empty()) {
                first_error = std::string("reading the kernel's answer: ") + std::strerror(errno);
            }
            break;
        }
        int len = static_cast<int>(n);
        for (auto* m = reinterpret_cast<const nlmsghdr*>(buf.data()); mnl_nlmsg_ok(m, len);
             m = mnl_nlmsg_next(m, &len)) {
            if (m->nlmsg_type != NLMSG_ERROR) {
                continue;
            }
            auto* e = static_cast<const nlmsgerr*>(mnl_nlmsg_get_payload(m));
            if (e->error != 0 && first_error.empty()) {
                std::string set = "?";
                for (const auto& [s, name] : owners) {
                    if (m->nlmsg_seq >= s) {
                        set = name;
                    }
                }
                first_error = "adding the elements of set " + set + ": " + std::strerror(-e->error);
            }
            if (m->nlmsg_seq == last) {
                done = true;
            }
        }
    }
    if (!first_error.empty()) {
        return first_error;
    }
    return done ? std::string() : "the kernel did not answer the set elements batch";
}

}  // namespace tp::config

// UDP conntrack flush after the rules go in (see conntrack_flush.h): one ctnetlink dump of the
// UDP entries, then one delete per entry the rules intercept, by its original tuple.

#include "config/conntrack_flush.h"

#include <libmnl/libmnl.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_conntrack.h>
#include <netinet/in.h>
#include <time.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <vector>

namespace tp::config {

namespace {

bool in_cidr(const Cidr& c, const IpAddr& a) {
    if (c.addr.family != a.family) {
        return false;
    }
    int full = c.prefix / 8, rest = c.prefix % 8;
    if (std::memcmp(c.addr.bytes.data(), a.bytes.data(), full) != 0) {
        return false;
    }
    if (rest == 0) {
        return true;
    }
    auto mask = static_cast<uint8_t>(0xff << (8 - rest));
    return (c.addr.bytes[full] & mask) == (a.bytes[full] & mask);
}

// Empty = any; otherwise a list of one family counts only for that family.
bool in_list(const std::vector<Cidr>& list, const IpAddr& a) {
    if (list.empty()) {
        return true;
    }
    for (const Cidr& c : list) {
        if (in_cidr(c, a)) {
            return true;
        }
    }
    return false;
}

struct Entry {
    int family = 0;
    IpAddr src, dst;
    uint16_t dport = 0;
    std::vector<char> orig;  // the CTA_TUPLE_ORIG attribute as the kernel sent it
    bool has_zone = false;
    uint16_t zone = 0;
};

struct MnlClose {
    void operator()(mnl_socket* s) const { mnl_socket_close(s); }
};

// mnl_attr_for_each_nested without its C-only casts.
template <typename Fn>
void for_each_nested(const nlattr* nest, Fn fn) {
    auto* attr = static_cast<const nlattr*>(mnl_attr_get_payload(nest));
    const char* end = reinterpret_cast<const char*>(nest) + mnl_attr_get_len(nest);
    while (mnl_attr_ok(attr, static_cast<int>(end - reinterpret_cast<const char*>(attr)))) {
        fn(attr);
        attr = mnl_attr_next(attr);
    }
}

void parse_ip(const nlattr* ip, Entry& e) {
    for_each_nested(ip, [&](const nlattr* a) {
        uint16_t type = mnl_attr_get_type(a);
        IpAddr* to = type == CTA_IP_V4_SRC || type == CTA_IP_V6_SRC   ? &e.src
                     : type == CTA_IP_V4_DST || type == CTA_IP_V6_DST ? &e.dst
                                                                      : nullptr;
        size_t len = type == CTA_IP_V4_SRC || type == CTA_IP_V4_DST ? 4 : 16;
        if (to != nullptr && mnl_attr_get_payload_len(a) >= len) {
            to->family = len == 4 ? AF_INET : AF_INET6;
            std::memcpy(to->bytes.data(), mnl_attr_get_payload(a), len);
        }
    });
}

// Fills `e` from one dumped message; false when it is not a UDP entry.
bool parse_entry(const nlmsghdr* nlh, Entry& e) {
    auto* nfg = static_cast<const nfgenmsg*>(mnl_nlmsg_get_payload(nlh));
    e.family = nfg->nfgen_family;
    bool udp = false;
    auto* attr = static_cast<const nlattr*>(mnl_nlmsg_get_payload_offset(nlh, sizeof(nfgenmsg)));
    const char* tail = static_cast<const char*>(mnl_nlmsg_get_payload_tail(nlh));
    while (mnl_attr_ok(attr, static_cast<int>(tail - reinterpret_cast<const char*>(attr)))) {
        uint16_t type = mnl_attr_get_type(attr);
        if (type == CTA_TUPLE_ORIG) {
            const char* raw = reinterpret_cast<const char*>(attr);
            e.orig.assign(raw, raw + attr->nla_len);
            for_each_nested(attr, [&](const nlattr* t) {
                if (mnl_attr_get_type(t) == CTA_TUPLE_IP) {
                    parse_ip(t, e);
                } else if (mnl_attr_get_type(t) == CTA_TUPLE_PROTO) {
                    for_each_nested(t, [&](const nlattr* p) {
                        if (mnl_attr_get_type(p) == CTA_PROTO_NUM) {
                            udp = mnl_attr_get_u8(p) == IPPROTO_UDP;
                        } else if (mnl_attr_get_type(p) == CTA_PROTO_DST_PORT) {
                            e.dport = ntohs(mnl_attr_get_u16(p));
                        }
                    });
                }
            });
        } else if (type == CTA_ZONE) {
            e.has_zone = true;
            e.zone = ntohs(mnl_attr_get_u16(attr));
        }
        attr = mnl_attr_next(attr);
    }
    return udp && !e.orig.empty();
}

nlmsghdr* ct_message(char* buf, uint8_t msg, uint16_t flags, uint8_t family, uint32_t seq) {
    nlmsghdr* nlh = mnl_nlmsg_put_header(buf);
    nlh->nlmsg_type = (NFNL_SUBSYS_CTNETLINK << 8) | msg;
    nlh->nlmsg_flags = NLM_F_REQUEST | flags;
    nlh->nlmsg_seq = seq;
    auto* nfg = static_cast<nfgenmsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(nfgenmsg)));
    nfg->nfgen_family = family;
    nfg->version = NFNETLINK_V0;
    nfg->res_id = 0;
    return nlh;
}

// Sends `nlh` and reads until the ack or NLMSG_DONE; data messages go to `on_data`.
template <typename Fn>
int talk(mnl_socket* sock, nlmsghdr* nlh, Fn on_data) {
    if (mnl_socket_sendto(sock, nlh, nlh->nlmsg_len) < 0) {
        return -errno;
    }
    uint32_t seq = nlh->nlmsg_seq, portid = mnl_socket_get_portid(sock);
    std::vector<char> buf(MNL_SOCKET_BUFFER_SIZE * 4);
    for (;;) {
        ssize_t n = mnl_socket_recvfrom(sock, buf.data(), buf.size());
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -errno;
        }
        int len = static_cast<int>(n);
        for (auto* msg = reinterpret_cast<const nlmsghdr*>(buf.data()); mnl_nlmsg_ok(msg, len);
             msg = mnl_nlmsg_next(msg, &len)) {
            if (msg->nlmsg_seq != seq || msg->nlmsg_pid != portid) {
                continue;
            }
            if (msg->nlmsg_type == NLMSG_ERROR) {
                return static_cast<const nlmsgerr*>(mnl_nlmsg_get_payload(msg))->error;
            }
            if (msg->nlmsg_type == NLMSG_DONE) {
                return 0;
            }
            on_data(msg);
        }
    }
}

}  // namespace

bool udp_entry_intercepted(const KernelSetup& setup, const IpAddr& src, const IpAddr& dst,
                           uint16_t dport) {
    for (const UdpCatch& c : setup.udp_catches) {
        bool port = c.ports.empty();
        for (const auto& [low, high] : c.ports) {
            port = port || (dport >= low && dport <= high);
        }
        if (port && in_list(c.sources, src) && in_list(c.destinations, dst)) {
            return !c.bypass;
        }
    }
    return false;
}

ConntrackFlushResult flush_udp_conntrack(const KernelSetup& setup) {
    ConntrackFlushResult r;
    bool intercepts = false;
    for (const UdpCatch& c : setup.udp_catches) {
        intercepts = intercepts || !c.bypass;
    }
    if (!intercepts) {
        return r;
    }
    std::unique_ptr<mnl_socket, MnlClose> sock(mnl_socket_open(NETLINK_NETFILTER));
    if (!sock || mnl_socket_bind(sock.get(), 0, MNL_SOCKET_AUTOPID) < 0) {
        r.error = std::string("conntrack netlink socket: ") + std::strerror(errno);
        return r;
    }
    auto seq = static_cast<uint32_t>(time(nullptr));
    std::vector<char> buf(MNL_SOCKET_BUFFER_SIZE);
    std::vector<Entry> doomed;
    nlmsghdr* dump = ct_message(buf.data(), IPCTNL_MSG_CT_GET, NLM_F_DUMP, AF_UNSPEC, ++seq);
    int rc = talk(sock.get(), dump, [&](const nlmsghdr* msg) {
        Entry e;
        if (!parse_entry(msg, e)) {
            return;
        }
        ++r.seen;
        if (udp_entry_intercepted(setup, e.src, e.dst, e.dport)) {
            doomed.push_back(std::move(e));
        }
    });
    if (rc < 0) {
        // No conntrack module loaded means no entries to flush.
        if (rc != -ENOENT && rc != -EPROTONOSUPPORT) {
            r.error = std::string("conntrack dump: ") + std::strerror(-rc);
        }
        return r;
    }
    for (const Entry& e : doomed) {
        nlmsghdr* del = ct_message(buf.data(), IPCTNL_MSG_CT_DELETE, NLM_F_ACK,
                                   static_cast<uint8_t>(e.family), ++seq);
        std::memcpy(mnl_nlmsg_get_payload_tail(del), e.orig.data(), e.orig.size());
        del->nlmsg_len += MNL_ALIGN(static_cast<uint32_t>(e.orig.size()));
        if (e.has_zone) {
            mnl_attr_put_u16(del, CTA_ZONE, htons(e.zone));
        }
        rc = talk(sock.get(), del, [](const nlmsghdr*) {});
        if (rc == 0) {
            ++r.deleted;
        } else if (rc != -ENOENT && r.error.empty()) {  // ENOENT: it expired meanwhile
            r.error = std::string("conntrack delete: ") + std::strerror(-rc);
        }
    }
    return r;
}

}  // namespace tp::config

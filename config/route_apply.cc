// rtnetlink for tpengine's policy routing: ip rule (RTM_*RULE) and the local default route
// (RTM_*ROUTE), acks checked, kernel extended-ack messages passed on to the user.
#include "config/route_apply.h"

#include <arpa/inet.h>
#include <libmnl/libmnl.h>
#include <linux/fib_rules.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <functional>

namespace tp::config {
namespace {

using MessageFn = std::function<void(const nlmsghdr*)>;

const char* family_flag(int family) {
    return family == AF_INET6 ? "-6" : "-4";
}

std::string hex(uint32_t v) {
    char buf[16];
    std::snprintf(buf, sizeof buf, "0x%x", v);
    return buf;
}

// The kernel's extended ack text (NLMSGERR_ATTR_MSG), if any.
std::string ext_ack_message(const nlmsghdr* nlh) {
    if (!(nlh->nlmsg_flags & NLM_F_ACK_TLVS)) {
        return {};
    }
    auto* err = static_cast<const nlmsgerr*>(mnl_nlmsg_get_payload(nlh));
    size_t offset = sizeof(nlmsgerr);
    if (!(nlh->nlmsg_flags & NLM_F_CAPPED)) {
        offset += err->msg.nlmsg_len - sizeof(nlmsghdr);
    }
    std::string text;
    mnl_attr_parse(
        nlh, static_cast<unsigned>(offset),
        [](const nlattr* attr, void* data) -> int {
            if (mnl_attr_get_type(attr) == NLMSGERR_ATTR_MSG &&
                mnl_attr_validate(attr, MNL_TYPE_NUL_STRING) >= 0) {
                *static_cast<std::string*>(data) = mnl_attr_get_str(attr);
            }
            return MNL_CB_OK;
        },
        &text);
    return text;
}

NlError make_error(int code, const char* what, const std::string& ext) {
    NlError e;
    e.code = code;
    e.message = std::string(what) + ": " + std::strerror(-code);
    if (!ext.empty()) {
        e.message += " (kernel: " + ext + ")";
    }
    return e;
}

// Sends one request and reads until its ack (or, for dumps, NLMSG_DONE); every data message
// with our sequence number goes to `on_message`.
NlError talk(mnl_socket* sock, uint32_t portid, nlmsghdr* nlh, const char* what,
             const MessageFn& on_message) {
    if (mnl_socket_sendto(sock, nlh, nlh->nlmsg_len) < 0) {
        return make_error(-errno, what, {});
    }
    const uint32_t seq = nlh->nlmsg_seq;
    std::vector<char> buf(MNL_SOCKET_BUFFER_SIZE * 4);
    for (;;) {
        ssize_t n = mnl_socket_recvfrom(sock, buf.data(), buf.size());
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return make_error(-errno, what, {});
        }
        int len = static_cast<int>(n);
        for (auto* msg = reinterpret_cast<const nlmsghdr*>(buf.data()); mnl_nlmsg_ok(msg, len);
             msg = mnl_nlmsg_next(msg, &len)) {
            if (msg->nlmsg_seq != seq || msg->nlmsg_pid != portid) {
                continue;  // a stale answer to an earlier request
            }
            if (msg->nlmsg_type == NLMSG_ERROR) {
                auto* err = static_cast<const nlmsgerr*>(mnl_nlmsg_get_payload(msg));
                if (err->error == 0) {
                    return {};
                }
                return make_error(err->error, what, ext_ack_message(msg));
            }
            if (msg->nlmsg_type == NLMSG_DONE) {
                auto* code = static_cast<const int*>(mnl_nlmsg_get_payload(msg));
                if (msg->nlmsg_len >= mnl_nlmsg_size(sizeof(int)) && *code < 0) {
                    return make_error(*code, what, {});
                }
                return {};
            }
            if (on_message) {
                on_message(msg);
            }
        }
    }
}

// Tables above 255 only fit in RTA_TABLE/FRA_TABLE; the header byte then says RT_TABLE_UNSPEC.
uint8_t table_byte(uint32_t table) {
    return table < 256 ? static_cast<uint8_t>(table) : static_cast<uint8_t>(RT_TABLE_UNSPEC);
}

// mnl_attr_for_each without its C-only casts.
template <typename Fn>
void for_each_attr(const nlmsghdr* msg, size_t header, Fn fn) {
    auto* attr = static_cast<const nlattr*>(mnl_nlmsg_get_payload_offset(msg, header));
    const char* tail = static_cast<const char*>(mnl_nlmsg_get_payload_tail(msg));
    while (mnl_attr_ok(attr, static_cast<int>(tail - reinterpret_cast<const char*>(attr)))) {
        fn(attr);
        attr = mnl_attr_next(attr);
    }
}

nlmsghdr* start_message(char* buf, uint16_t type, uint16_t flags, uint32_t seq) {
    nlmsghdr* nlh = mnl_nlmsg_put_header(buf);
    nlh->nlmsg_type = type;
    nlh->nlmsg_flags = NLM_F_REQUEST | flags;
    nlh->nlmsg_seq = seq;
    return nlh;
}

void put_rule(nlmsghdr* nlh, const PolicyRule& rule) {
    auto* frh = static_cast<fib_rule_hdr*>(mnl_nlmsg_put_extra_header(nlh, sizeof(fib_rule_hdr)));
    frh->family = static_cast<uint8_t>(rule.family);
    frh->action = FR_ACT_TO_TBL;
    frh->table = table_byte(rule.table);
    mnl_attr_put_u32(nlh, FRA_PRIORITY, rule.priority);
    mnl_attr_put_u32(nlh, FRA_FWMARK, rule.mark);
    mnl_attr_put_u32(nlh, FRA_FWMASK, rule.mask);
    mnl_attr_put_u32(nlh, FRA_TABLE, rule.table);
}

void put_local_route(nlmsghdr* nlh, int family, uint32_t table, uint32_t lo_index) {
    auto* rtm = static_cast<rtmsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(rtmsg)));
    rtm->rtm_family = static_cast<uint8_t>(family);
    rtm->rtm_dst_len = 0;
    rtm->rtm_table = table_byte(table);
    rtm->rtm_protocol = RTPROT_BOOT;  // what `ip route add` uses
    rtm->rtm_scope = RT_SCOPE_HOST;
    rtm->rtm_type = RTN_LOCAL;
    mnl_attr_put_u32(nlh, RTA_TABLE, table);
    mnl_attr_put_u32(nlh, RTA_OIF, lo_index);
}

}  // namespace

std::string describe(const PolicyRule& rule) {
    return std::string("ip ") + family_flag(rule.family) + " rule fwmark " + hex(rule.mark) + "/" +
           hex(rule.mask) + " lookup " + std::to_string(rule.table) + " priority " +
           std::to_string(rule.priority);
}

std::string describe(const LocalRoute& route) {
    return std::string("ip ") + family_flag(route.family) + " route local default dev lo table " +
           std::to_string(route.table);
}

std::string RuleEntry::describe() const {
    std::string s =
        std::string("ip ") + family_flag(family) + " rule " + std::to_string(priority) + ": ";
    if (has_fwmark) {
        s += "fwmark " + hex(fwmark) + "/" + hex(fwmask) + " ";
    }
    if (action == FR_ACT_TO_TBL) {
        s += "lookup " + std::to_string(table);
    } else {
        s += "action " + std::to_string(action);
    }
    return s;
}

std::string RouteEntry::describe() const {
    static const char* const types[] = {"unspec",    "unicast",     "local",
                                        "broadcast", "anycast",     "multicast",
                                        "blackhole", "unreachable", "prohibit"};
    std::string s = std::string("ip ") + family_flag(family) + " route ";
    s += type < sizeof types / sizeof types[0] ? types[type] : std::to_string(type);
    s += " " + dst;
    if (oif != 0) {
        char name[IF_NAMESIZE] = {};
        s += std::string(" dev ") + (if_indextoname(oif, name) ? name : std::to_string(oif));
    }
    s += " table " + std::to_string(table);
    return s;
}

std::unique_ptr<Rtnl> Rtnl::open(std::string* err) {
    std::unique_ptr<Rtnl> r(new Rtnl());
    r->sock_ = mnl_socket_open(NETLINK_ROUTE);
    if (r->sock_ == nullptr || mnl_socket_bind(r->sock_, 0, MNL_SOCKET_AUTOPID) < 0) {
        *err = std::string("rtnetlink socket: ") + std::strerror(errno);
        return nullptr;
    }
    int one = 1;
    // Best effort: kernel error strings and capped acks.
    mnl_socket_setsockopt(r->sock_, NETLINK_EXT_ACK, &one, sizeof one);
    mnl_socket_setsockopt(r->sock_, NETLINK_CAP_ACK, &one, sizeof one);
    r->portid_ = mnl_socket_get_portid(r->sock_);
    r->seq_ = static_cast<uint32_t>(time(nullptr));
    r->lo_index_ = if_nametoindex("lo");
    if (r->lo_index_ == 0) {
        *err = "no loopback interface `lo` in this network namespace";
        return nullptr;
    }
    return r;
}

Rtnl::~Rtnl() {
    if (sock_ != nullptr) {
        mnl_socket_close(sock_);
    }
}

NlError Rtnl::request(void* nlh, const char* what) {
    return talk(sock_, portid_, static_cast<nlmsghdr*>(nlh), what, nullptr);
}

NlError Rtnl::add_rule(const PolicyRule& rule) {
    char buf[MNL_SOCKET_BUFFER_SIZE];
    nlmsghdr* nlh = start_message(buf, RTM_NEWRULE, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, ++seq_);
    put_rule(nlh, rule);
    return request(nlh, "add ip rule");
}

NlError Rtnl::del_rule(const PolicyRule& rule) {
    char buf[MNL_SOCKET_BUFFER_SIZE];
    nlmsghdr* nlh = start_message(buf, RTM_DELRULE, NLM_F_ACK, ++seq_);
    put_rule(nlh, rule);
    return request(nlh, "delete ip rule");
}

NlError Rtnl::add_route(const LocalRoute& route) {
    char buf[MNL_SOCKET_BUFFER_SIZE];
    nlmsghdr* nlh = start_message(buf, RTM_NEWROUTE, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, ++seq_);
    put_local_route(nlh, route.family, route.table, lo_index_);
    return request(nlh, "add route");
}

NlError Rtnl::del_route(const LocalRoute& route) {
    char buf[MNL_SOCKET_BUFFER_SIZE];
    nlmsghdr* nlh = start_message(buf, RTM_DELROUTE, NLM_F_ACK, ++seq_);
    put_local_route(nlh, route.family, route.table, lo_index_);
    return request(nlh, "delete route");
}

NlError Rtnl::del_route_entry(const RouteEntry& route) {
    char buf[MNL_SOCKET_BUFFER_SIZE];
    nlmsghdr* nlh = start_message(buf, RTM_DELROUTE, NLM_F_ACK, ++seq_);
    auto* rtm = static_cast<rtmsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(rtmsg)));
    rtm->rtm_family = static_cast<uint8_t>(route.family);
    rtm->rtm_dst_len = route.dst_len;
    rtm->rtm_table = table_byte(route.table);
    rtm->rtm_protocol = route.protocol;
    rtm->rtm_scope = route.scope;
    rtm->rtm_type = route.type;
    mnl_attr_put_u32(nlh, RTA_TABLE, route.table);
    if (route.oif != 0) {
        mnl_attr_put_u32(nlh, RTA_OIF, route.oif);
    }
    mnl_attr_put_u32(nlh, RTA_PRIORITY, route.metric);
    return request(nlh, "delete route");
}

NlError Rtnl::list_rules(int family, std::vector<RuleEntry>* out) {
    char buf[MNL_SOCKET_BUFFER_SIZE];
    nlmsghdr* nlh = start_message(buf, RTM_GETRULE, NLM_F_DUMP, ++seq_);
    auto* frh = static_cast<fib_rule_hdr*>(mnl_nlmsg_put_extra_header(nlh, sizeof(fib_rule_hdr)));
    frh->family = static_cast<uint8_t>(family);
    out->clear();
    return talk(sock_, portid_, nlh, "list ip rules", [&](const nlmsghdr* msg) {
        if (msg->nlmsg_type != RTM_NEWRULE) {
            return;
        }
        auto* hdr = static_cast<const fib_rule_hdr*>(mnl_nlmsg_get_payload(msg));
        RuleEntry e;
        e.family = hdr->family;
        e.table = hdr->table;
        e.action = hdr->action;
        for_each_attr(msg, sizeof(fib_rule_hdr), [&](const nlattr* attr) {
            if (mnl_attr_validate(attr, MNL_TYPE_U32) < 0) {
                return;
            }
            switch (mnl_attr_get_type(attr)) {
                case FRA_PRIORITY:
                    e.priority = mnl_attr_get_u32(attr);
                    break;
                case FRA_TABLE:
                    e.table = mnl_attr_get_u32(attr);
                    break;
                case FRA_FWMARK:
                    e.has_fwmark = true;
                    e.fwmark = mnl_attr_get_u32(attr);
                    break;
                case FRA_FWMASK:
                    e.fwmask = mnl_attr_get_u32(attr);
                    break;
                default:
                    break;
            }
        });
        if (e.family == family) {
            out->push_back(e);
        }
    });
}

NlError Rtnl::list_routes(int family, std::vector<RouteEntry>* out) {
    char buf[MNL_SOCKET_BUFFER_SIZE];
    nlmsghdr* nlh = start_message(buf, RTM_GETROUTE, NLM_F_DUMP, ++seq_);
    auto* rtm = static_cast<rtmsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(rtmsg)));
    rtm->rtm_family = static_cast<uint8_t>(family);
    out->clear();
    return talk(sock_, portid_, nlh, "list routes", [&](const nlmsghdr* msg) {
        if (msg->nlmsg_type != RTM_NEWROUTE) {
            return;
        }
        auto* hdr = static_cast<const rtmsg*>(mnl_nlmsg_get_payload(msg));
        RouteEntry e;
        e.family = hdr->rtm_family;
        e.table = hdr->rtm_table;
        e.type = hdr->rtm_type;
        e.dst_len = hdr->rtm_dst_len;
        e.protocol = hdr->rtm_protocol;
        e.scope = hdr->rtm_scope;
        e.dst = "default";
        for_each_attr(msg, sizeof(rtmsg), [&](const nlattr* attr) {
            switch (mnl_attr_get_type(attr)) {
                case RTA_TABLE:
                    if (mnl_attr_validate(attr, MNL_TYPE_U32) >= 0) {
                        e.table = mnl_attr_get_u32(attr);
                    }
                    break;
                case RTA_OIF:
                    if (mnl_attr_validate(attr, MNL_TYPE_U32) >= 0) {
                        e.oif = mnl_attr_get_u32(attr);
                    }
                    break;
                case RTA_PRIORITY:
                    if (mnl_attr_validate(attr, MNL_TYPE_U32) >= 0) {
                        e.metric = mnl_attr_get_u32(attr);
                    }
                    break;
                case RTA_GATEWAY:
                case RTA_MULTIPATH:
                case RTA_VIA:
                    e.has_gateway = true;
                    break;
                case RTA_DST: {
                    char text[INET6_ADDRSTRLEN] = {};
                    if (inet_ntop(e.family, mnl_attr_get_payload(attr), text, sizeof text)) {
                        e.dst = std::string(text) + "/" + std::to_string(e.dst_len);
                    }
                    break;
                }
                default:
                    break;
            }
        });
        if (e.family == family) {
            out->push_back(e);
        }
    });
}

bool is_our_rule(const RuleEntry& rule, const KernelSetup& setup) {
    for (const PolicyRule& r : setup.rules) {
        if (r.family == rule.family && r.priority == rule.priority && r.table == rule.table &&
            rule.has_fwmark && r.mark == rule.fwmark && rule.action == FR_ACT_TO_TBL) {
            return true;
        }
    }
    return false;
}

bool is_our_route(const RouteEntry& route, const KernelSetup& setup, uint32_t lo_index) {
    for (const LocalRoute& r : setup.routes) {
        if (r.family == route.family && r.table == route.table && route.type == RTN_LOCAL &&
            route.dst_len == 0 && route.oif == lo_index && !route.has_gateway) {
            return true;
        }
    }
    return false;
}

}  // namespace tp::config

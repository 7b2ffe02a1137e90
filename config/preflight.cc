// Kernel and privilege preflight: nft check mode, IP_TRANSPARENT and SO_MARK permission,
// forwarding sysctls, listener addresses, and route table / rule priority collisions.
#include "config/preflight.h"

#include <arpa/inet.h>
#include <linux/fib_rules.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>

#include "config/nft_apply.h"
#include "config/preflight_env.h"
#include "config/preflight_tproxy.h"
#include "config/route_apply.h"
#include "config/scoped_fd.h"

namespace tp::config {
namespace {

std::string read_sysctl(const char* path) {
    std::ifstream in(path);
    std::string v;
    in >> v;
    return v;
}

std::string address_text(const plan::SockAddr& a) {
    // snprintf rather than string concatenation: g++ 12 -O3 flags the latter (-Wrestrict).
    char host[INET6_ADDRSTRLEN] = "?";
    char text[INET6_ADDRSTRLEN + 16];
    if (a.family() == AF_INET) {
        auto* s = reinterpret_cast<const sockaddr_in*>(&a.storage);
        inet_ntop(AF_INET, &s->sin_addr, host, sizeof host);
        std::snprintf(text, sizeof text, "%s:%u", host, unsigned{ntohs(s->sin_port)});
    } else {
        auto* s = reinterpret_cast<const sockaddr_in6*>(&a.storage);
        inet_ntop(AF_INET6, &s->sin6_addr, host, sizeof host);
        std::snprintf(text, sizeof text, "[%s]:%u", host, unsigned{ntohs(s->sin6_port)});
    }
    return text;
}

bool needs_transparent(const plan::Plan& plan) {
    for (const plan::Listener& l : plan.listeners) {
        if (l.transparent || l.source != plan::SourceMode::proxy) {
            return true;
        }
    }
    return false;
}

void check_nft(const LoadedConfig& config, PreflightReport& r) {
    std::string err;
    auto nft = NftContext::create(&err);
    if (!nft) {
        r.failures.push_back("nftables: " + err + ": is libnftables installed?");
        return;
    }
    // Without CAP_NET_ADMIN say so once (libnftables would also print its own line).
    bool permitted = nft->table_state(config.kernel.nft_table) != -EPERM;
    err = permitted ? nft->run(config.kernel.nft_batch, /*check_only=*/true) : "EPERM";
    if (err.empty()) {
        return;
    }
    if (!permitted || err.find("Operation not permitted") != std::string::npos) {
        r.failures.push_back("nftables: no permission to load table inet " +
                             config.kernel.nft_table + ": run as root or with CAP_NET_ADMIN");
    } else if (config.uses_tproxy && err.find("No such file or directory") != std::string::npos) {
        r.failures.push_back(
            "nftables: the kernel refused the tproxy/socket expressions: load them with "
            "`modprobe nft_tproxy nft_socket` (kernel options NFT_TPROXY, NFT_SOCKET)\n" +
            err);
    } else {
        r.failures.push_back("nftables: the kernel rejected the generated batch in check mode: " +
                             err);
    }
}

void check_socket_options(const plan::Plan& plan, PreflightReport& r) {
    if (needs_transparent(plan)) {
        ScopedFd s(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
        int one = 1;
        if (s.get() >= 0 && setsockopt(s.get(), SOL_IP, IP_TRANSPARENT, &one, sizeof one) != 0) {
            r.failures.push_back(
                std::string("IP_TRANSPARENT: ") + std::strerror(errno) +
                ": transparent listeners and client-source upstreams need it; run as root or "
                "grant CAP_NET_RAW (e.g. `setcap cap_net_raw,cap_net_admin+ep tpengine`)");
        }
    }
    if (plan.bypass_mark != 0) {
        ScopedFd s(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
        unsigned mark = plan.bypass_mark;
        if (s.get() >= 0 && setsockopt(s.get(), SOL_SOCKET, SO_MARK, &mark, sizeof mark) != 0) {
            r.failures.push_back(std::string("SO_MARK (routing.bypass_mark): ") +
                                 std::strerror(errno) +
                                 ": marking upstream sockets needs CAP_NET_ADMIN; run as root "
                                 "or grant it");
        }
    }
}

// TPROXY and REDIRECT deliver what they catch locally, so forwarding only matters for the
// traffic the rules let through (a warning) and for dnat to other hosts (a failure).
void check_forwarding(const LoadedConfig& config, PreflightReport& r) {
    if (!config.intercepts_forwarded) {
        return;
    }
    struct Family {
        const char* sysctl;
        const char* path;
        const char* dnat;  // how the generator writes a dnat of this family
    };
    for (const Family& f :
         {Family{"net.ipv4.ip_forward", "/proc/sys/net/ipv4/ip_forward", "dnat ip to "},
          Family{"net.ipv6.conf.all.forwarding", "/proc/sys/net/ipv6/conf/all/forwarding",
                 "dnat ip6 to "}}) {
        std::string value = read_sysctl(f.path);
        if (value.empty() || value == "1") {
            continue;
        }
        std::string fix =
            std::string("`sysctl -w ") + f.sysctl + "=1` (persist it in /etc/sysctl.d/)";
        if (config.kernel.nft_batch.find(f.dnat) != std::string::npos) {
            r.failures.push_back(std::string(f.sysctl) + " is " + value +
                                 ": dnat rules send traffic on to other hosts and it would be "
                                 "dropped; " +
                                 fix);
        } else {
            r.warnings.push_back(std::string(f.sysctl) + " is " + value +
                                 ": what the rules intercept still reaches tpengine, but this "
                                 "host does not route the traffic they let through; on a "
                                 "gateway " +
                                 fix);
        }
    }
}

void check_listeners(const plan::Plan& plan, PreflightReport& r) {
    for (const plan::Listener& l : plan.listeners) {
        int family = l.address.family();
        if ((family != AF_INET && family != AF_INET6) || l.protocol == plan::Protocol::udp) {
            continue;  // UDP ports: check_udp_listeners (preflight_tproxy.cc)
        }
        // EADDRINUSE: check_environment says it (at start too).
        if (int e = probe_bind(l, true); e != 0 && e != EADDRINUSE) {
            std::string fix = e == EACCES          ? "ports below 1024 need root or "
                                                     "CAP_NET_BIND_SERVICE"
                              : e == EADDRNOTAVAIL ? "the address is not on this host; use a "
                                                     "local or wildcard address"
                                                   : "check the listener's address";
            r.failures.push_back("listener " + l.name + ": cannot bind " + address_text(l.address) +
                                 ": " + std::strerror(e) + ": " + fix);
        }
    }
}

void check_ipv6(const KernelSetup& setup, PreflightReport& r) {
    bool v6 = false;
    for (const PolicyRule& rule : setup.rules) {
        v6 = v6 || rule.family == AF_INET6;
    }
    if (v6 && access("/proc/sys/net/ipv6", F_OK) != 0) {
        r.failures.push_back(
            "IPv6 is disabled in this kernel (ipv6.disable=1) but the rules need IPv6 policy "
            "routing: give the tproxy rules IPv4 addresses only, or enable IPv6");
    }
}

void check_routing_collisions(const KernelSetup& setup, PreflightReport& r) {
    std::string err;
    auto rtnl = Rtnl::open(&err);
    if (!rtnl) {
        r.failures.push_back("policy routing: " + err);
        return;
    }
    for (int family : {AF_INET, AF_INET6}) {
        bool wanted = false;
        uint32_t priority = 0;
        uint32_t table = 0;
        for (const PolicyRule& rule : setup.rules) {
            if (rule.family == family) {
                wanted = true;
                priority = rule.priority;
                table = rule.table;
            }
        }
        if (!wanted) {
            continue;
        }
        std::vector<RuleEntry> rules;
        NlError e = rtnl->list_rules(family, &rules);
        if (!e.ok()) {
            r.failures.push_back("policy routing: " + e.message);
            continue;
        }
        bool priority_taken = false;
        bool table_taken = false;
        for (const RuleEntry& rule : rules) {
            if (is_our_rule(rule, setup)) {
                continue;  // a leftover of ours: the start-up sweep removes it
            }
            if (rule.priority == priority && !priority_taken) {
                priority_taken = true;
                r.failures.push_back("routing.priority " + std::to_string(priority) +
                                     " is already used by `" + rule.describe() +
                                     "`: choose another routing.priority");
            }
            // Another rule looking up our table would send its traffic to our local default.
            if (rule.table == table && rule.action == FR_ACT_TO_TBL && !table_taken) {
                table_taken = true;
                r.failures.push_back("routing.table " + std::to_string(table) +
                                     " is already looked up by `" + rule.describe() +
                                     "`: choose another routing.table");
            }
        }
        std::vector<RouteEntry> routes;
        e = rtnl->list_routes(family, &routes);
        if (!e.ok()) {
            r.failures.push_back("policy routing: " + e.message);
            continue;
        }
        for (const RouteEntry& route : routes) {
            if (route.table == table && !is_our_route(route, setup, rtnl->loopback_index())) {
                r.failures.push_back("routing.table " + std::to_string(table) + " already holds `" +
                                     route.describe() + "`: choose another routing.table");
                break;
            }
        }
    }
}

}  // namespace

PreflightReport preflight(const LoadedConfig& config, bool with_rules) {
    PreflightReport r;
    if (with_rules) {
        check_nft(config, r);
    }
    check_socket_options(config.plan, r);
    if (with_rules) {
        check_forwarding(config, r);
        check_tproxy_sysctls(config, r);
    }
    check_udp_listeners(config.plan, r);
    check_listeners(config.plan, r);
    if (with_rules) {
        check_ipv6(config.kernel, r);
        check_routing_collisions(config.kernel, r);
    }
    check_environment(config, with_rules, r);
    return r;
}

}  // namespace tp::config

// TPROXY sysctl preflight: src_valid_mark refused, strict rp_filter warned (see the header).

#include "config/preflight_tproxy.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <algorithm>
#include <fstream>
#include <vector>

namespace tp::config {

namespace {

// The value, or -1 when the file is missing or unreadable.
int read_int(const std::string& path) {
    std::ifstream in(path);
    int v = -1;
    if (!(in >> v)) {
        return -1;
    }
    return v;
}

std::vector<std::string> all_interfaces(const std::string& conf) {
    std::vector<std::string> out;
    if (DIR* d = opendir(conf.c_str())) {
        while (dirent* e = readdir(d)) {
            std::string n = e->d_name;
            if (n != "." && n != ".." && n != "all" && n != "default") {
                out.push_back(n);
            }
        }
        closedir(d);
    }
    std::sort(out.begin(), out.end());
    return out;
}

}  // namespace

void check_tproxy_sysctls(const LoadedConfig& config, PreflightReport& r,
                          const std::string& proc_sys) {
    if (!config.uses_tproxy) {
        return;
    }
    std::string conf = proc_sys + "/net/ipv4/conf";
    std::vector<std::string> ifaces = config.tproxy_interfaces;
    if (config.tproxy_any_interface || config.capture_local) {
        ifaces = all_interfaces(conf);
    }
    std::sort(ifaces.begin(), ifaces.end());
    ifaces.erase(std::unique(ifaces.begin(), ifaces.end()), ifaces.end());

    // The kernel uses all OR the interface's own value for src_valid_mark, the larger of
    // the two for rp_filter.
    int all_vmark = read_int(conf + "/all/src_valid_mark");
    if (all_vmark == 1) {
        r.failures.push_back(
            "net.ipv4.conf.all.src_valid_mark is 1: the reverse-path check then routes each "
            "intercepted client's address with the intercept mark, finds it local in "
            "tpengine's route table and drops the packet before TPROXY delivers it (wg-quick "
            "sets it); `sysctl -w net.ipv4.conf.all.src_valid_mark=0`, or use tpengine on a host "
            "that does not need it");
    }
    int all_rp = read_int(conf + "/all/rp_filter");
    for (const std::string& i : ifaces) {
        if (i == "lo" && !config.capture_local) {
            continue;
        }
        int vmark = read_int(conf + "/" + i + "/src_valid_mark");
        if (vmark == 1 && all_vmark != 1) {
            r.failures.push_back("net.ipv4.conf." + i +
                                 ".src_valid_mark is 1: intercepted packets arriving on " + i +
                                 " are dropped by the reverse-path check before TPROXY "
                                 "delivers them; `sysctl -w net.ipv4.conf." +
                                 i + ".src_valid_mark=0`");
        }
        int rp = std::max(all_rp, read_int(conf + "/" + i + "/rp_filter"));
        if (rp == 1) {
            r.warnings.push_back(
                "rp_filter is strict (1) for " + i + " (net.ipv4.conf.{all," + i +
                "}.rp_filter): intercepted packets whose source is not routed back out of " + i +
                " (asymmetric routes, several uplinks) are dropped before TPROXY sees them; "
                "use 2 (loose) if that applies here");
        }
    }
}

void check_udp_listeners(const plan::Plan& plan, PreflightReport& r) {
    for (const plan::Listener& l : plan.listeners) {
        int family = l.address.family();
        if ((family != AF_INET && family != AF_INET6) || l.protocol == plan::Protocol::tcp) {
            continue;
        }
        int fd = socket(family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            r.failures.push_back("listener " + l.name + ": UDP socket: " + std::strerror(errno));
            continue;
        }
        int one = 1, v6only = l.v6only ? 1 : 0;
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
        if (family == AF_INET6) {
            setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof v6only);
        }
        if (l.transparent) {
            setsockopt(fd, family == AF_INET ? SOL_IP : SOL_IPV6,
                       family == AF_INET ? IP_TRANSPARENT : IPV6_TRANSPARENT, &one, sizeof one);
        }
        if (bind(fd, l.address.get(), l.address.len) != 0) {
            int e = errno;
            char host[INET6_ADDRSTRLEN] = "?";
            uint16_t port = 0;
            if (family == AF_INET) {
                auto* s = reinterpret_cast<const sockaddr_in*>(l.address.get());
                inet_ntop(AF_INET, &s->sin_addr, host, sizeof host);
                port = ntohs(s->sin_port);
            } else {
                auto* s = reinterpret_cast<const sockaddr_in6*>(l.address.get());
                inet_ntop(AF_INET6, &s->sin6_addr, host, sizeof host);
                port = ntohs(s->sin6_port);
            }
            r.failures.push_back("listener " + l.name + ": cannot bind UDP " + host + " port " +
                                 std::to_string(port) + ": " + std::strerror(e) +
                                 (e == EADDRINUSE
                                      ? ": another program holds this UDP port; stop it or change "
                                        "the listener's port"
                                      : ""));
        }
        close(fd);
    }
}

}  // namespace tp::config

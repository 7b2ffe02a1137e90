// `tpengine relay`: the tcprdr-compatible front end. Parses the command line into a one-
// listener plan, starts the engine and serves until SIGTERM/SIGINT.
#include <arpa/inet.h>
#include <netdb.h>

#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "config/duration.h"
#include "engine/engine.h"
#include "engine/log.h"
#include "engine/uring_probe.h"
#include "tools/tpengine/commands.h"
#include "tools/tpengine/control.h"
#include "tools/tpengine/privileges.h"
#include "tools/tpengine/sd_notify.h"
#include "tools/tpengine/serve.h"

namespace tp::tools {

namespace {

const char* kUsage =
    "usage: tpengine relay [-4|-6] [-u] [-f] [-l] [-t [-T]] [-L ADDR] [options] LOCALPORT HOST "
    "[REMOTEPORT]\n"
    "  Relays every TCP connection accepted on LOCALPORT to HOST:REMOTEPORT (REMOTEPORT\n"
    "  defaults to LOCALPORT). HOST `original` means each connection's original destination.\n"
    "  -u            UDP instead of TCP: one flow per client address and port, datagrams\n"
    "                relayed one to one (HOST original needs -t; replies then come from the\n"
    "                original destination). TCP and UDP together: use a config file.\n"
    "  -4, -6        IPv4 only / IPv6 only (listener and HOST resolution)\n"
    "  -L ADDR       listen address (default :: dual-stack; 0.0.0.0 with -4)\n"
    "  -t            transparent listener (IP_TRANSPARENT, for TPROXY)\n"
    "  -T            upstream bound to the client's address and port (IP_TRANSPARENT)\n"
    "  -f            TCP Fast Open on the listener and upstream connections\n"
    "  -l            accepted for tcprdr compatibility (connections are always concurrent)\n"
    "  -v            one line per connection on stderr\n"
    "  --workers N             worker threads (default: one per CPU)\n"
    "  --connect-timeout DUR   upstream connect timeout (default 5s; none = no timeout)\n"
    "  --idle-timeout DUR      close after no bytes either way (default 5m; none = no timeout)\n"
    "  --half-closed-timeout DUR  inactivity limit once one direction ended (default 30s;\n"
    "                          none = no timeout)\n"
    "  --max-connections N     concurrent connections (default 65536; 0 = unlimited)\n"
    "  --mark N                SO_MARK on upstream sockets (default 0 = none)\n"
    "  --drain-timeout DUR     graceful stop limit (default 10s)\n"
    "  --memory-limit SIZE     pause accepting near SIZE bytes (K, M, G suffixes: KiB...);\n"
    "                          default: the memory cgroup's limit, if any\n"
    "  --metrics ADDR:PORT     Prometheus endpoint, e.g. 127.0.0.1:9469 (default off)\n"
    "  --control PATH          control socket for `tpengine ctl` (default off)\n"
    "  --log-level LEVEL       error, warning, info or debug (default info)\n"
    "  --log-connections FMT   one close record per connection: logfmt or json (default off)\n"
    "  UDP (-u):\n"
    "  --udp-idle-timeout DUR  flow idle timeout (default 60s; none = no timeout)\n"
    "  --dns-idle-timeout DUR  for flows to port 53 (default 10s)\n"
    "  --quic-idle-timeout DUR for flows to port 443 (default 30s)\n"
    "  --dns-keep              keep port-53 flows after their answer (default: close)\n"
    "  --max-flows N           flows per worker (default 65536)\n"
    "  --max-flows-per-client N  flows per client address per worker (default 4096)\n"
    "  --max-datagram N        larger datagrams are dropped (default and maximum 65507)\n"
    "  --reply-sockets N       reply sockets cached per worker (default 4096)\n"
    "  DUR: a whole number with ms, s, m or h, e.g. 500ms, 5s, 2m; more than 0, at most\n"
    "  24h (the YAML's grammar); `none` (or 0) switches a timeout off\n";

int bad(const char* fmt, const char* arg) {
    std::fprintf(stderr, "tpengine relay: ");
    std::fprintf(stderr, fmt, arg);
    std::fprintf(stderr, "\n(see tpengine relay -h)\n");
    return 2;
}

bool parse_u64(const char* s, uint64_t max, uint64_t& out) {
    if (s == nullptr || *s == '\0') {
        return false;
    }
    char* end = nullptr;
    errno = 0;
    unsigned long long v = std::strtoull(s, &end, 0);
    if (errno != 0 || *end != '\0' || v > max || s[0] == '-') {
        return false;
    }
    out = v;
    return true;
}

// A byte count with an optional K, M or G suffix (binary: 1K = 1024).
bool parse_size(const char* s, uint64_t& out) {
    if (s == nullptr || !std::isdigit(static_cast<unsigned char>(s[0]))) {
        return false;
    }
    char* end = nullptr;
    errno = 0;
    unsigned long long v = std::strtoull(s, &end, 10);
    unsigned shift = 0;
    if (*end == 'K' || *end == 'k') {
        shift = 10;
    } else if (*end == 'M' || *end == 'm') {
        shift = 20;
    } else if (*end == 'G' || *end == 'g') {
        shift = 30;
    }
    if (shift != 0) {
        ++end;
    }
    if (errno != 0 || *end != '\0' || v > (~0ull >> 34)) {
        return false;
    }
    out = static_cast<uint64_t>(v) << shift;
    return true;
}

// The YAML's grammar (config/duration.h); `none_ok`: `none` or `0` = no timeout.
int duration_option(const std::string& name, const char* val, bool none_ok, uint32_t& out) {
    std::string why;
    auto ms = config::parse_duration(val, none_ok, &why);
    if (!ms) {
        return bad(("--" + name + ": %s").c_str(), why.c_str());
    }
    out = *ms;
    return -1;
}

bool parse_port(const char* s, uint16_t& port) {
    uint64_t v;
    if (!parse_u64(s, 65535, v) || v == 0) {
        return false;
    }
    port = static_cast<uint16_t>(v);
    return true;
}

// Numeric listen address (brackets allowed around IPv6).
bool parse_listen(std::string a, uint16_t port, plan::SockAddr& out) {
    if (a.size() >= 2 && a.front() == '[' && a.back() == ']') {
        a = a.substr(1, a.size() - 2);
    }
    out = plan::SockAddr{};
    auto* s4 = reinterpret_cast<sockaddr_in*>(&out.storage);
    if (inet_pton(AF_INET, a.c_str(), &s4->sin_addr) == 1) {
        s4->sin_family = AF_INET;
        s4->sin_port = htons(port);
        out.len = sizeof(sockaddr_in);
        return true;
    }
    out = plan::SockAddr{};
    auto* s6 = reinterpret_cast<sockaddr_in6*>(&out.storage);
    if (inet_pton(AF_INET6, a.c_str(), &s6->sin6_addr) == 1) {
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons(port);
        out.len = sizeof(sockaddr_in6);
        return true;
    }
    return false;
}

std::string addr_text(const plan::SockAddr& a) {
    char host[INET6_ADDRSTRLEN] = "?";
    char out[INET6_ADDRSTRLEN + 16];
    if (a.family() == AF_INET) {
        const auto* s = reinterpret_cast<const sockaddr_in*>(&a.storage);
        inet_ntop(AF_INET, &s->sin_addr, host, sizeof host);
        std::snprintf(out, sizeof out, "%s:%u", host, ntohs(s->sin_port));
    } else {
        const auto* s = reinterpret_cast<const sockaddr_in6*>(&a.storage);
        inet_ntop(AF_INET6, &s->sin6_addr, host, sizeof host);
        std::snprintf(out, sizeof out, "[%s]:%u", host, ntohs(s->sin6_port));
    }
    return out;
}

}  // namespace

int relay_main(int argc, char** argv) {
    int family = AF_UNSPEC;
    bool fast_open = false;
    bool transparent = false;
    bool client_port = false;
    bool verbose = false;
    bool udp = false;
    const char* listen_addr = nullptr;
    ControlOptions control;
    log::Level log_level = log::Level::info;
    plan::Plan p;
    plan::Listener l;
    l.name = "relay";
    std::vector<const char*> pos;

    for (int i = 1; i < argc; ++i) {
        const char* a = argv[i];
        if (std::strcmp(a, "--") == 0) {
            for (++i; i < argc; ++i) {
                pos.push_back(argv[i]);
            }
            break;
        }
        if (a[0] != '-' || a[1] == '\0') {
            pos.push_back(a);
            continue;
        }
        if (a[1] == '-') {
            std::string name(a + 2);
            const char* val = nullptr;
            size_t eq = name.find('=');
            if (eq != std::string::npos) {
                val = a + 2 + eq + 1;
                name = name.substr(0, eq);
            }
            if (name == "help") {
                std::fputs(kUsage, stdout);
                return 0;
            }
            if (name == "dns-keep") {
                l.udp.dns_close_after_answer = false;
                continue;
            }
            if (val == nullptr) {
                if (i + 1 >= argc) {
                    return bad("option --%s needs a value", name.c_str());
                }
                val = argv[++i];
            }
            uint64_t n;
            if (name == "workers") {
                if (!parse_u64(val, 1024, n) || n == 0) {
                    return bad("--workers: expected a number from 1 to 1024, got '%s'", val);
                }
                p.workers = static_cast<unsigned>(n);
            } else if (name == "connect-timeout" || name == "idle-timeout" ||
                       name == "half-closed-timeout" || name == "drain-timeout") {
                uint32_t& out = name == "connect-timeout"       ? l.timeouts.connect_ms
                                : name == "idle-timeout"        ? l.timeouts.idle_ms
                                : name == "half-closed-timeout" ? l.timeouts.half_closed_ms
                                                                : p.drain_timeout_ms;
                if (int rc = duration_option(name, val, name != "drain-timeout", out); rc >= 0) {
                    return rc;
                }
            } else if (name == "max-connections") {
                if (!parse_u64(val, 0xFFFFFFFFull, n)) {
                    return bad("--max-connections: expected a number, got '%s'", val);
                }
                l.max_connections = static_cast<uint32_t>(n);
            } else if (name == "memory-limit") {
                if (!parse_size(val, p.memory_limit) || p.memory_limit == 0) {
                    return bad("--memory-limit: expected a size (e.g. 64M, 1G), got '%s'", val);
                }
            } else if (name == "udp-idle-timeout" || name == "dns-idle-timeout" ||
                       name == "quic-idle-timeout") {
                uint32_t& out = name == "udp-idle-timeout"   ? l.udp.idle_ms
                                : name == "dns-idle-timeout" ? l.udp.dns_idle_ms
                                                             : l.udp.quic_idle_ms;
                if (int rc = duration_option(name, val, true, out); rc >= 0) {
                    return rc;
                }
            } else if (name == "max-flows") {
                if (!parse_u64(val, 0xFFFFFFFFull, n) || n == 0) {
                    return bad("--max-flows: expected a number above 0, got '%s'", val);
                }
                l.udp.max_flows_per_worker = static_cast<uint32_t>(n);
            } else if (name == "max-flows-per-client") {
                if (!parse_u64(val, 0xFFFFFFFFull, n) || n == 0) {
                    return bad("--max-flows-per-client: expected a number above 0, got '%s'", val);
                }
                l.udp.max_flows_per_client = static_cast<uint32_t>(n);
            } else if (name == "max-datagram") {
                if (!parse_u64(val, 65507, n) || n == 0) {
                    return bad("--max-datagram: expected a number from 1 to 65507, got '%s'", val);
                }
                l.udp.max_datagram = static_cast<uint32_t>(n);
            } else if (name == "reply-sockets") {
                if (!parse_u64(val, 0xFFFFFFFFull, n) || n == 0) {
                    return bad("--reply-sockets: expected a number above 0, got '%s'", val);
                }
                p.udp_reply_sockets_per_worker = static_cast<uint32_t>(n);
            } else if (name == "mark") {
                if (!parse_u64(val, 0xFFFFFFFFull, n)) {
                    return bad("--mark: expected a number (decimal or 0x hex), got '%s'", val);
                }
                p.bypass_mark = static_cast<uint32_t>(n);
            } else if (name == "metrics") {
                std::string v = val;
                size_t colon = v.rfind(':');
                uint64_t mp = 0;
                if (colon == std::string::npos || !parse_u64(v.c_str() + colon + 1, 65535, mp) ||
                    !parse_listen(v.substr(0, colon), static_cast<uint16_t>(mp), control.metrics)) {
                    return bad("--metrics: expected ADDR:PORT (e.g. 127.0.0.1:9469), got '%s'",
                               val);
                }
            } else if (name == "log-level") {
                log::Level lv;
                if (!log::parse_level(val, lv)) {
                    return bad("--log-level: expected error, warning, info or debug, got '%s'",
                               val);
                }
                log_level = lv;
            } else if (name == "log-connections") {
                if (std::strcmp(val, "logfmt") != 0 && std::strcmp(val, "json") != 0) {
                    return bad("--log-connections: expected logfmt or json, got '%s'", val);
                }
                p.close_records = true;
                p.close_records_json = std::strcmp(val, "json") == 0;
            } else if (name == "control") {
                if (val[0] != '/') {
                    return bad("--control: expected an absolute path, got '%s'", val);
                }
                control.socket_path = val;
            } else {
                return bad("unknown option --%s", name.c_str());
            }
            continue;
        }
        for (const char* f = a + 1; *f != '\0'; ++f) {
            switch (*f) {
                case '4':
                    family = AF_INET;
                    break;
                case '6':
                    family = AF_INET6;
                    break;
                case 'f':
                    fast_open = true;
                    break;
                case 'u':
                    udp = true;
                    break;
                case 'l':
                    break;
                case 't':
                    transparent = true;
                    break;
                case 'T':
                    client_port = true;
                    break;
                case 'v':
                    verbose = true;
                    break;
                case 'h':
                    std::fputs(kUsage, stdout);
                    return 0;
                case 'L':
                    if (f[1] != '\0') {
                        listen_addr = f + 1;
                    } else if (i + 1 < argc) {
                        listen_addr = argv[++i];
                    } else {
                        return bad("option -L needs an address%s", "");
                    }
                    f = " ";  // the rest of this argument was the address
                    while (f[1] != '\0') {
                        ++f;
                    }
                    break;
                default: {
                    char opt[2] = {*f, '\0'};
                    return bad("unknown option -%s", opt);
                }
            }
        }
    }
    if (pos.size() < 2 || pos.size() > 3) {
        return bad("expected LOCALPORT HOST [REMOTEPORT]%s", "");
    }
    uint16_t lport;
    if (!parse_port(pos[0], lport)) {
        return bad("LOCALPORT: expected a port from 1 to 65535, got '%s'", pos[0]);
    }
    uint16_t rport = lport;
    if (pos.size() == 3 && !parse_port(pos[2], rport)) {
        return bad("REMOTEPORT: expected a port from 1 to 65535, got '%s'", pos[2]);
    }

    std::string laddr = listen_addr ? listen_addr : (family == AF_INET ? "0.0.0.0" : "::");
    if (!parse_listen(laddr, lport, l.address)) {
        return bad("-L: '%s' is not a numeric IPv4 or IPv6 address", laddr.c_str());
    }
    if (family != AF_UNSPEC && l.address.family() != family) {
        return bad("-L %s does not match -4/-6", laddr.c_str());
    }
    l.v6only = family == AF_INET6;
    l.transparent = transparent;
    l.fast_open = fast_open;
    l.source = client_port ? plan::SourceMode::client_port : plan::SourceMode::proxy;
    l.orig_dst = transparent ? plan::OrigDst::local_address : plan::OrigDst::automatic;
    l.protocol = udp ? plan::Protocol::udp : plan::Protocol::tcp;

    std::string host = pos[1];
    if (host == "original") {
        if (udp && !transparent) {
            // Without TPROXY nothing tells a UDP socket where a datagram was going.
            return bad("-u with HOST original needs -t (TPROXY)%s", "");
        }
        l.target = plan::UpstreamTarget::original;
    } else {
        l.target = plan::UpstreamTarget::fixed;
        if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
            host = host.substr(1, host.size() - 2);
        }
        addrinfo hints{};
        hints.ai_family = family;
        hints.ai_socktype = udp ? SOCK_DGRAM : SOCK_STREAM;
        addrinfo* res = nullptr;
        std::string port = std::to_string(rport);
        int rc = getaddrinfo(host.c_str(), port.c_str(), &hints, &res);
        if (rc != 0 || res == nullptr) {
            std::fprintf(stderr, "tpengine relay: cannot resolve HOST '%s': %s\n", host.c_str(),
                         gai_strerror(rc));
            return 2;
        }
        std::memcpy(&l.upstream_address.storage, res->ai_addr, res->ai_addrlen);
        l.upstream_address.len = res->ai_addrlen;
        freeaddrinfo(res);
    }
    p.log_connections = verbose;
    p.listeners.push_back(l);
    log::init(log_level, log::Prefix::automatic);

    if (engine::UringProbe uring = engine::probe_uring(); !uring.ok()) {
        for (const std::string& why : uring.problems) {
            std::fprintf(stderr, "tpengine relay: %s\n", why.c_str());
        }
        return 1;
    }
    // Before the workers exist, so that every thread inherits the reduced set.
    if (std::string err = drop_privileges({needed_capabilities(p, false), {}, {}}); !err.empty()) {
        std::fprintf(stderr, "tpengine relay: %s\n", err.c_str());
        return 1;
    }
    auto started = engine::Engine::start(p);
    if (!started) {
        const Error& e = started.error();
        std::fprintf(stderr, "tpengine relay: cannot listen on %s: %s (%s)\n",
                     addr_text(l.address).c_str(), std::strerror(e.code), e.what);
        return 1;
    }
    engine::Engine& eng = *started.value();
    auto bound = eng.listening_addresses();
    log::write(log::Level::info, "tpengine: relay listening on %s (%u workers)%s",
               addr_text(bound.empty() ? l.address : bound[0]).c_str(), eng.worker_count(),
               udp ? " udp" : "");
    if (verbose) {
        log::write(log::Level::info, "tpengine: io_uring mode %s", eng.ring_mode());
    }
    RunState state;
    std::unique_ptr<ControlServer> ctl;
    if (control.metrics.len != 0 || !control.socket_path.empty()) {
        std::string why;
        ctl = ControlServer::start(eng, state, control, &why);
        if (!ctl) {
            std::fprintf(stderr, "tpengine relay: %s\n", why.c_str());
            return 1;
        }
        if (control.metrics.len != 0) {
            log::write(log::Level::info, "tpengine: metrics on http://%s/metrics",
                       addr_text(ctl->metrics_address()).c_str());
        }
    }
    std::fflush(stderr);
    notify_ready("relay listening on " + addr_text(bound.empty() ? l.address : bound[0]));
    int rc = serve_until_signal(eng, p.drain_timeout_ms, ServeHooks{}, &state);
    ctl.reset();  // before the engine it reads
    return rc;
}

}  // namespace tp::tools

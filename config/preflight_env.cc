// Preflight beyond tpengine's own table (see preflight_env.h): the ruleset scan is a small
// reader of `nft list ruleset` text; the socket, limit and interface checks ask the kernel
// directly and change nothing.
#include "config/preflight_env.h"

#include <arpa/inet.h>
#include <net/if.h>
#include <sched.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <set>
#include <string_view>

#include "config/nft_apply.h"
#include "config/scoped_fd.h"

namespace tp::config {
namespace {

struct Chain {
    std::string name;
    std::string type;    // filter, nat, route; "" for a regular chain
    std::string hook;    // input, postrouting...
    std::string policy;  // accept, drop; "" for a regular chain
    std::vector<std::string> rules;
};

struct Table {
    std::string family;
    std::string name;
    std::map<std::string, Chain> chains;
};

std::string trim(std::string_view s) {
    size_t b = s.find_first_not_of(" \t");
    if (b == std::string_view::npos) {
        return {};
    }
    size_t e = s.find_last_not_of(" \t");
    return std::string(s.substr(b, e - b + 1));
}

// The word after `key ` in `line` ("hook input priority 0;" -> "input"), without ';'.
std::string word_after(const std::string& line, const std::string& key) {
    size_t p = line.find(key + " ");
    if (p == std::string::npos || (p > 0 && line[p - 1] != ' ')) {
        return {};
    }
    p += key.size() + 1;
    size_t e = line.find_first_of(" ;", p);
    return line.substr(p, e == std::string::npos ? std::string::npos : e - p);
}

// Braces outside quoted strings.
int brace_delta(const std::string& line) {
    int d = 0;
    bool quoted = false;
    for (char c : line) {
        if (c == '"') {
            quoted = !quoted;
        } else if (!quoted && c == '{') {
            ++d;
        } else if (!quoted && c == '}') {
            --d;
        }
    }
    return d;
}

// Tables, chains and their rules as `nft list ruleset` prints them (one rule a line; sets,
// maps and flowtables skipped).
std::vector<Table> parse_ruleset(const std::string& text) {
    std::vector<Table> tables;
    int depth = 0;
    Chain* chain = nullptr;
    size_t start = 0;
    while (start < text.size()) {
        size_t nl = text.find('\n', start);
        std::string line =
            trim(std::string_view(text).substr(start, nl == std::string::npos ? nl : nl - start));
        start = nl == std::string::npos ? text.size() : nl + 1;
        int delta = brace_delta(line);
        if (depth == 0 && line.rfind("table ", 0) == 0) {
            Table t;
            size_t a = 6, b = line.find(' ', a);
            t.family = line.substr(a, b - a);
            size_t c = line.find(' ', b + 1);
            t.name = line.substr(b + 1, c == std::string::npos ? c : c - b - 1);
            tables.push_back(std::move(t));
        } else if (depth == 1 && !tables.empty() && line.rfind("chain ", 0) == 0) {
            size_t e = line.find(' ', 6);
            std::string name = line.substr(6, e == std::string::npos ? e : e - 6);
            chain = &tables.back().chains[name];
            chain->name = name;
        } else if (depth == 2 && chain != nullptr && !line.empty() && line != "}") {
            if (line.rfind("type ", 0) == 0 && line.find(" hook ") != std::string::npos) {
                chain->type = word_after(line, "type");
                chain->hook = word_after(line, "hook");
                chain->policy = word_after(line, "policy");
                if (chain->policy.empty()) {
                    chain->policy = "accept";
                }
            } else if (line.rfind("comment ", 0) != 0) {
                chain->rules.push_back(line);
            }
        }
        depth += delta;
        if (depth < 2) {
            chain = nullptr;
        }
        if (depth < 0) {
            depth = 0;
        }
    }
    return tables;
}

bool has_word(const std::string& line, std::string_view w) {
    for (size_t p = line.find(w); p != std::string::npos; p = line.find(w, p + 1)) {
        bool left = p == 0 || line[p - 1] == ' ';
        bool right = p + w.size() == line.size() || line[p + w.size()] == ' ';
        if (left && right) {
            return true;
        }
    }
    return false;
}

// A rule that may drop a new connection's packet. Rules about connection state (invalid,
// established) and rate limits (syn floods) do not apply to an ordinary intercepted SYN.
bool drops(const std::string& rule) {
    if (rule.find("ct state") != std::string::npos ||
        rule.find("limit rate") != std::string::npos) {
        return false;
    }
    return has_word(rule, "drop") || has_word(rule, "reject") || rule.rfind("reject ", 0) == 0;
}

uint32_t number(const std::string& s) {
    return static_cast<uint32_t>(std::strtoul(s.c_str(), nullptr, 0));
}

// `meta mark & MASK == MARK accept` (or `meta mark MARK accept` for a full mask) for ours.
bool accepts_mark(const std::string& rule, uint32_t mark, uint32_t mask) {
    if (!has_word(rule, "accept")) {
        return false;
    }
    size_t p = rule.find("meta mark & ");
    if (p != std::string::npos) {
        std::string m = word_after(rule.substr(p), "&");
        std::string v = word_after(rule.substr(p), "==");
        return !m.empty() && !v.empty() && number(m) == mask && number(v) == mark;
    }
    std::string v = word_after(rule, "mark");
    return mask == 0xffffffff && !v.empty() && std::isdigit(static_cast<unsigned char>(v[0])) &&
           number(v) == mark;
}

std::string jump_target(const std::string& rule) {
    std::string t = word_after(rule, "jump");
    return t.empty() ? word_after(rule, "goto") : t;
}

// The first rule reachable from `chain` (through jumps and gotos) that may drop, as
// "`rule`" or "`jump x` -> chain x: `rule`"; "" if none.
std::string find_drop(const Table& t, const Chain& chain, std::set<std::string>& seen, int depth) {
    if (depth > 16 || !seen.insert(chain.name).second) {
        return {};
    }
    for (const std::string& rule : chain.rules) {
        if (rule.find("limit rate") != std::string::npos) {
            return {};  // a rate limiter (fw4's syn_flood): drops only above the rate
        }
    }
    for (const std::string& rule : chain.rules) {
        if (drops(rule)) {
            return "`" + rule + "`";
        }
        std::string target = jump_target(rule);
        if (auto it = t.chains.find(target); !target.empty() && it != t.chains.end()) {
            std::string inner = find_drop(t, it->second, seen, depth + 1);
            if (!inner.empty()) {
                return "`" + rule + "` -> chain " + target + ": " + inner;
            }
        }
    }
    return {};
}

std::string hex(uint32_t v) {
    char buf[16];
    std::snprintf(buf, sizeof buf, "0x%x", v);
    return buf;
}

std::string address_text(const sockaddr* sa) {
    char host[INET6_ADDRSTRLEN] = "?";
    char text[INET6_ADDRSTRLEN + 16];
    if (sa->sa_family == AF_INET) {
        auto* s = reinterpret_cast<const sockaddr_in*>(sa);
        inet_ntop(AF_INET, &s->sin_addr, host, sizeof host);
        std::snprintf(text, sizeof text, "%s:%u", host, unsigned{ntohs(s->sin_port)});
    } else {
        auto* s = reinterpret_cast<const sockaddr_in6*>(sa);
        inet_ntop(AF_INET6, &s->sin6_addr, host, sizeof host);
        std::snprintf(text, sizeof text, "[%s]:%u", host, unsigned{ntohs(s->sin6_port)});
    }
    return text;
}

}  // namespace

int probe_bind(const plan::Listener& l, bool reuseport) {
    int family = l.address.family();
    ScopedFd s(socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (s.get() < 0) {
        return errno;
    }
    int one = 1;
    // SO_REUSEADDR: sockets in TIME_WAIT on the port are no one's listener.
    setsockopt(s.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (reuseport) {
        setsockopt(s.get(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    }
    if (family == AF_INET6) {
        int v6only = l.v6only ? 1 : 0;
        setsockopt(s.get(), IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof v6only);
    }
    if (l.transparent) {
        if (family == AF_INET) {
            setsockopt(s.get(), SOL_IP, IP_TRANSPARENT, &one, sizeof one);
        } else {
            setsockopt(s.get(), SOL_IPV6, IPV6_TRANSPARENT, &one, sizeof one);
        }
    }
    return bind(s.get(), l.address.get(), l.address.len) == 0 ? 0 : errno;
}

namespace {

// Another socket listening on the port with SO_REUSEPORT (and our uid) would take a share of
// the connections: the plain bind fails, the SO_REUSEPORT bind succeeds.
void check_port_sharing(const plan::Plan& plan, PreflightReport& r) {
    for (const plan::Listener& l : plan.listeners) {
        if ((l.address.family() != AF_INET && l.address.family() != AF_INET6) ||
            l.protocol == plan::Protocol::udp) {
            continue;  // TCP probes; a UDP port is checked by check_udp_listeners
        }
        // A process killed a moment ago may still hold its sockets: look again for up to 1 s.
        bool shared = false;
        for (int tries = 0; tries < 10; ++tries) {
            shared = probe_bind(l, false) == EADDRINUSE && probe_bind(l, true) == 0;
            if (!shared) {
                break;
            }
            usleep(100'000);
        }
        if (!shared && probe_bind(l, true) == EADDRINUSE) {
            // Said here rather than by the engine's bind, so the start names the listener too.
            r.failures.push_back("listener " + l.name + ": cannot bind " +
                                 address_text(l.address.get()) + ": " + std::strerror(EADDRINUSE) +
                                 ": another program holds it; stop it or change the listener's "
                                 "port");
            continue;
        }
        if (shared) {
            auto port = ntohs(reinterpret_cast<const sockaddr_in*>(l.address.get())->sin_port);
            r.failures.push_back(
                "listener " + l.name + ": another socket already listens on " +
                address_text(l.address.get()) +
                " with SO_REUSEPORT (another tpengine with another table, or another program "
                "of this user): the kernel would split the connections between it and tpengine; "
                "stop it or change the port (`ss -tlnp 'sport = :" +
                std::to_string(port) + "'` shows who)");
        }
    }
}

bool same_ip(const sockaddr* a, const sockaddr* b) {
    if (a->sa_family == AF_INET && b->sa_family == AF_INET) {
        return reinterpret_cast<const sockaddr_in*>(a)->sin_addr.s_addr ==
               reinterpret_cast<const sockaddr_in*>(b)->sin_addr.s_addr;
    }
    if (a->sa_family == AF_INET6 && b->sa_family == AF_INET6) {
        return std::memcmp(&reinterpret_cast<const sockaddr_in6*>(a)->sin6_addr,
                           &reinterpret_cast<const sockaddr_in6*>(b)->sin6_addr, 16) == 0;
    }
    return false;
}

// True if `sa`'s address is one of this host's own (it can be bound without IP_TRANSPARENT).
bool is_local(const sockaddr* sa, socklen_t len) {
    sockaddr_storage copy{};
    std::memcpy(&copy, sa, len);
    reinterpret_cast<sockaddr_in*>(&copy)->sin_port = 0;  // same offset in sockaddr_in6
    ScopedFd s(socket(sa->sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0));
    return s.get() >= 0 && bind(s.get(), reinterpret_cast<sockaddr*>(&copy), len) == 0;
}

// A fixed upstream that is the listener's own address and port: every connection would loop
// into the listener (the engine resets such connections), so the set-up cannot work.
void check_upstream_loops(const plan::Plan& plan, PreflightReport& r) {
    for (const plan::Listener& l : plan.listeners) {
        if (l.target != plan::UpstreamTarget::fixed || l.upstream_address.len == 0) {
            continue;
        }
        const sockaddr* up = l.upstream_address.get();
        const sockaddr* me = l.address.get();
        auto port_of = [](const sockaddr* sa) {
            return ntohs(reinterpret_cast<const sockaddr_in*>(sa)->sin_port);
        };
        if (port_of(up) != port_of(me)) {
            continue;
        }
        bool wildcard = false;
        bool family_ok = up->sa_family == me->sa_family;
        if (me->sa_family == AF_INET) {
            wildcard = reinterpret_cast<const sockaddr_in*>(me)->sin_addr.s_addr == INADDR_ANY;
        } else {
            wildcard =
                IN6_IS_ADDR_UNSPECIFIED(&reinterpret_cast<const sockaddr_in6*>(me)->sin6_addr);
            family_ok = family_ok || (wildcard && !l.v6only && up->sa_family == AF_INET);
        }
        bool loops =
            same_ip(up, me) || (wildcard && family_ok && is_local(up, l.upstream_address.len));
        if (loops) {
            r.failures.push_back("listener " + l.name + ": upstream.to " + address_text(up) +
                                 " is this listener itself (" + address_text(me) +
                                 "): every connection would come back to it; point "
                                 "upstream.to at the real server");
        }
    }
}

void check_limits(const plan::Plan& plan, PreflightReport& r) {
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof set, &set) == 0) {
        int cpus = CPU_COUNT(&set);
        if (plan.workers > static_cast<unsigned>(cpus)) {
            r.warnings.push_back("workers " + std::to_string(plan.workers) + " is more than the " +
                                 std::to_string(cpus) +
                                 " CPUs this process may run on (its affinity mask): workers "
                                 "would share CPUs; use `workers: auto` (one per CPU)");
        }
    }
    uint64_t total = 0;
    std::string names;
    for (const plan::Listener& l : plan.listeners) {
        if (l.max_connections == 0) {
            continue;  // unlimited: the user chose the kernel's limit
        }
        total += l.max_connections;
        names += (names.empty() ? "" : ", ") + l.name;
    }
    rlimit rl{};
    // The engine raises the soft limit to the hard one at start.
    if (total > 0 && getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_max != RLIM_INFINITY &&
        2 * total > rl.rlim_max) {
        r.warnings.push_back(
            "max_connections (" + std::to_string(total) + " in all, listeners " + names +
            ") needs about " + std::to_string(2 * total) +
            " file descriptors (two per connection), but RLIMIT_NOFILE allows " +
            std::to_string(rl.rlim_max) +
            ": past that, accepts fail with EMFILE; lower max_connections or raise the limit "
            "(LimitNOFILE= in the service unit, `ulimit -Hn`)");
    }
}

void check_interfaces(const LoadedConfig& config, PreflightReport& r) {
    for (const std::string& name : config.interfaces) {
        if (if_nametoindex(name.c_str()) == 0) {
            r.warnings.push_back("interface " + name +
                                 " named in the rules does not exist (yet): those rules match "
                                 "nothing until it appears; check the name (`ip link`)");
        }
    }
}

void check_firewall(const LoadedConfig& config, PreflightReport& r) {
    bool keeps_client = false;
    for (const plan::Listener& l : config.plan.listeners) {
        keeps_client = keeps_client || l.source != plan::SourceMode::proxy;
    }
    if (!config.uses_tproxy && !keeps_client) {
        return;
    }
    std::string err;
    auto nft = NftContext::create(&err);
    std::string ruleset;
    if (!nft || !nft->list_ruleset(&ruleset).empty()) {
        return;  // no permission or no nftables: the nft check reports it
    }
    const std::string& own = config.kernel.nft_table;
    if (config.uses_tproxy && !config.kernel.rules.empty()) {
        const PolicyRule& pr = config.kernel.rules.front();
        for (std::string& w : input_drop_warnings(ruleset, own, pr.mark, pr.mask)) {
            r.warnings.push_back(std::move(w));
        }
    }
    if (keeps_client) {
        for (const std::string& rule : source_nat_rules(ruleset, own)) {
            r.warnings.push_back(
                "a listener keeps the client's address (upstream.source: client or client-port), "
                "but " +
                rule +
                " rewrites source addresses after routing: where it applies to the upstream "
                "connections, the server sees this host's address instead of the client's; "
                "exclude them (e.g. `socket transparent 1` or the listener's traffic) from that "
                "rule");
        }
    }
}

}  // namespace

std::vector<std::string> input_drop_warnings(const std::string& ruleset,
                                             const std::string& own_table, uint32_t mark,
                                             uint32_t mask) {
    std::vector<std::string> out;
    std::string accept = mask == 0xffffffff
                             ? "meta mark " + hex(mark) + " accept"
                             : "meta mark & " + hex(mask) + " == " + hex(mark) + " accept";
    for (const Table& t : parse_ruleset(ruleset)) {
        if ((t.family == "inet" && t.name == own_table) ||
            (t.family != "inet" && t.family != "ip" && t.family != "ip6")) {
            continue;
        }
        for (const auto& [name, c] : t.chains) {
            if (c.hook != "input" || c.type != "filter") {
                continue;
            }
            bool ours_accepted = false;
            for (const std::string& rule : c.rules) {
                ours_accepted = ours_accepted || accepts_mark(rule, mark, mask);
            }
            if (ours_accepted) {
                continue;
            }
            std::set<std::string> seen;
            std::string drop = find_drop(t, c, seen, 0);
            std::string why = c.policy == "drop" ? "its policy is drop"
                              : !drop.empty()    ? "its rule " + drop + " may drop them"
                                                 : "";
            if (why.empty()) {
                continue;
            }
            out.push_back("table " + t.family + " " + t.name + " chain " + name +
                          " (hook input): " + why +
                          ". Intercepted packets cross the input hook with their original "
                          "destination; let them through with `" +
                          accept + "` before that (docs/config.md, \"Next to another firewall\")");
        }
    }
    return out;
}

std::vector<std::string> source_nat_rules(const std::string& ruleset,
                                          const std::string& own_table) {
    std::vector<std::string> out;
    for (const Table& t : parse_ruleset(ruleset)) {
        if (t.family == "inet" && t.name == own_table) {
            continue;
        }
        for (const auto& [name, c] : t.chains) {
            if (c.type != "nat" || c.hook != "postrouting") {
                continue;
            }
            for (const std::string& rule : c.rules) {
                if (has_word(rule, "masquerade") || rule.find("snat ") != std::string::npos) {
                    out.push_back("table " + t.family + " " + t.name + " chain " + name + " `" +
                                  rule + "`");
                }
            }
        }
    }
    return out;
}

void check_environment(const LoadedConfig& config, bool /*with_rules*/, PreflightReport& r) {
    // With --no-rules too: the firewall that includes --dry-run=nft applies the same rules,
    // and that is exactly the set-up where another table's input chain is likely.
    check_firewall(config, r);
    check_interfaces(config, r);
    check_port_sharing(config.plan, r);
    check_upstream_loops(config.plan, r);
    check_limits(config.plan, r);
}

}  // namespace tp::config

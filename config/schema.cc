// The schema: allowed keys, value types and value ranges for every part of the rule set.
// Each reader reports what is wrong and keeps going, so one run shows many errors.

#include "config/schema.h"

#include "config/file_text.h"
#include "config/upstreams.h"
#include "config/values.h"

#include <netdb.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <initializer_list>
#include <map>
#include <sstream>
#include <string_view>

namespace tp::config {

namespace {

using Kind = YamlNode::Kind;

class Reader : public ValueReader {
  public:
    Reader(std::string base_dir, Diags& diags)
        : ValueReader(diags),
          base_dir_(std::move(base_dir)),
          ups_(base_dir_, diags,
               [this](const YamlNode& n, const std::string& p) { return host_port(n, p, true); }) {}

    std::optional<Model> read(const YamlNode& root);

  private:
    void read_routing(const YamlNode& n, Model& m, ModelWhere& w);
    void read_nftables(const YamlNode& n, Model& m);
    void read_memory_limit(const YamlNode& n, Model& m);
    void read_account(const YamlNode& n, const char* key, std::string& out);
    void read_observe(const YamlNode& root, Model& m);  // metrics:, control:, log:
    void read_listener(const YamlNode& n, const std::string& path, Model& m, ModelWhere& w);
    void read_upstream(const YamlNode& n, const std::string& path, plan::Listener& l);
    void read_routes(const YamlNode& n, const std::string& path, plan::Listener& l);
    void read_rule(const YamlNode& n, const std::string& path, Model& m, ModelWhere& w);
    std::vector<Cidr> read_addresses(const YamlNode& n, const std::string& path);
    void read_address_file(const YamlNode& n, const std::string& path, const std::string& file,
                           std::vector<Cidr>& out);
    std::vector<PortRange> read_ports(const YamlNode& n, const std::string& path);
    std::optional<plan::SockAddr> host_port(const YamlNode& n, const std::string& path,
                                            bool resolve);

    std::string base_dir_;
    UpstreamReader ups_;  // `upstreams:` and what routes name (upstreams.cc)
    // Address lists already read, by full path: a list shared by several rules (or reached
    // through aliases) is read once.
    std::map<std::string, std::vector<Cidr>> file_cache_;
    uint64_t addresses_ = 0;  // across the whole rule set, with repeats
    bool too_many_addresses_ = false;
};

// Bounds the work of a rule set that repeats large lists through aliases.
constexpr uint64_t kMaxAddresses = 2'000'000;

// Fills a SockAddr from an address and port.
plan::SockAddr sockaddr_of(const IpAddr& a, uint16_t port) {
    plan::SockAddr s;
    if (a.family == AF_INET) {
        auto* sin = reinterpret_cast<sockaddr_in*>(&s.storage);
        sin->sin_family = AF_INET;
        sin->sin_port = htons(port);
        std::memcpy(&sin->sin_addr, a.bytes.data(), 4);
        s.len = sizeof(sockaddr_in);
    } else {
        auto* sin6 = reinterpret_cast<sockaddr_in6*>(&s.storage);
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons(port);
        std::memcpy(&sin6->sin6_addr, a.bytes.data(), 16);
        s.len = sizeof(sockaddr_in6);
    }
    return s;
}

std::optional<Model> Reader::read(const YamlNode& root) {
    Model m;
    ModelWhere w;
    w.root = root.pos;
    if (root.is_null()) {
        d_.error({}, "", "the file is empty");
        return std::nullopt;
    }
    if (!check_map(root, "",
                   {"workers", "routing", "nftables", "capture_local", "allow_all", "listeners",
                    "rules", "drain_timeout", "log_connections", "memory_limit", "user", "group",
                    "upstreams", "metrics", "control", "log"})) {
        return std::nullopt;
    }
    if (const YamlNode* n = root.find("workers")) {
        if (n->is_scalar() && !n->quoted && n->value == "auto") {
            m.workers = 0;
        } else if (auto v = integer(*n, "workers", 1, 1024, false, "a worker count or auto")) {
            m.workers = static_cast<unsigned>(*v);
        }
    }
    if (const YamlNode* n = root.find("routing")) {
        read_routing(*n, m, w);
    }
    if (const YamlNode* n = root.find("nftables")) {
        read_nftables(*n, m);
    }
    if (const YamlNode* n = root.find("capture_local")) {
        m.capture_local = boolean(*n, "capture_local").value_or(false);
    }
    if (const YamlNode* n = root.find("allow_all")) {
        m.allow_all = boolean(*n, "allow_all").value_or(false);
    }
    if (const YamlNode* n = root.find("log_connections")) {
        m.log_connections = boolean(*n, "log_connections").value_or(false);
    }
    for (const char* key : {"user", "group"}) {
        if (const YamlNode* n = root.find(key)) {
            read_account(*n, key, std::string(key) == "user" ? m.user : m.group);
        }
    }
    read_observe(root, m);
    if (const YamlNode* n = root.find("drain_timeout")) {
        m.drain_timeout_ms = duration(*n, "drain_timeout").value_or(m.drain_timeout_ms);
    }
    if (const YamlNode* n = root.find("memory_limit")) {
        read_memory_limit(*n, m);
    }
    if (const YamlNode* n = root.find("upstreams")) {
        ups_.read_upstreams(*n);  // before listeners: their routes name upstreams
    }
    if (const YamlNode* n = root.find("listeners")) {
        if (!n->is_sequence()) {
            err(*n, "listeners", std::string("expected a list of listeners, got ") + kind_name(*n));
        } else {
            for (size_t i = 0; i < n->items.size() && !d_.full(); ++i) {
                read_listener(*n->items[i], index("listeners", i), m, w);
            }
        }
    }
    if (const YamlNode* n = root.find("rules")) {
        if (!n->is_sequence()) {
            err(*n, "rules", std::string("expected a list of rules, got ") + kind_name(*n));
        } else {
            for (size_t i = 0; i < n->items.size() && !d_.full(); ++i) {
                read_rule(*n->items[i], index("rules", i), m, w);
            }
        }
    }
    if (!d_.empty()) {
        return std::nullopt;
    }
    validate_model(m, w, d_);
    if (!d_.empty()) {
        return std::nullopt;
    }
    return m;
}

void Reader::read_routing(const YamlNode& n, Model& m, ModelWhere& w) {
    if (!check_map(n, "routing",
                   {"mark", "mask", "table", "priority", "bypass_mark", "reply_mark"})) {
        return;
    }
    Routing& r = m.routing;
    if (const YamlNode* v = n.find("mark")) {
        w.mark = v->pos;
        w.mark_set = true;
        r.mark = static_cast<uint32_t>(
            integer(*v, "routing.mark", 1, 0xffffffff, true, "a mark").value_or(r.mark));
    }
    if (const YamlNode* v = n.find("mask")) {
        w.mask = v->pos;
        w.mask_set = true;
        r.mask = static_cast<uint32_t>(
            integer(*v, "routing.mask", 1, 0xffffffff, true, "a mask").value_or(r.mask));
    }
    if (const YamlNode* v = n.find("bypass_mark")) {
        w.bypass_mark = v->pos;
        w.bypass_set = true;
        r.bypass_mark =
            static_cast<uint32_t>(integer(*v, "routing.bypass_mark", 1, 0xffffffff, true, "a mark")
                                      .value_or(r.bypass_mark));
    }
    if (const YamlNode* v = n.find("reply_mark")) {
        w.reply_mark = v->pos;
        w.reply_set = true;
        r.reply_mark =
            static_cast<uint32_t>(integer(*v, "routing.reply_mark", 1, 0xffffffff, true, "a mark")
                                      .value_or(r.reply_mark));
    }
    if (const YamlNode* v = n.find("table")) {
        if (v->is_scalar() && !v->quoted &&
            (v->value == "253" || v->value == "254" || v->value == "255" || v->value == "0")) {
            static const char* names[] = {"unspecified", "default", "main", "local"};
            int t = std::stoi(v->value);
            err(*v, "routing.table",
                "route table " + v->value + " is the kernel's " + names[t == 0 ? 0 : t - 252] +
                    " table; pick one from 1-252");
        } else if (auto t = integer(*v, "routing.table", 1, 252, false, "a route table")) {
            r.table = static_cast<uint32_t>(*t);
        }
    }
    if (const YamlNode* v = n.find("priority")) {
        if (v->is_scalar() && !v->quoted &&
            (v->value == "0" || v->value == "32766" || v->value == "32767")) {
            const char* what = v->value == "0" ? "local" : v->value == "32766" ? "main" : "default";
            err(*v, "routing.priority",
                "priority " + v->value + " collides with the kernel's rule for the " + what +
                    " table; pick one from 1-32765");
        } else if (auto p =
                       integer(*v, "routing.priority", 1, 32765, false, "an ip rule priority")) {
            r.priority = static_cast<uint32_t>(*p);
        }
    }
}

// memory_limit: 64MiB, 1GiB, 512KiB (binary units); at least 4 MiB, at most 1 TiB.
void Reader::read_memory_limit(const YamlNode& n, Model& m) {
    const char* what = "a size such as 64MiB or 1GiB";
    if (!n.is_scalar() || n.quoted) {
        err(n, "memory_limit", std::string("expected ") + what);
        return;
    }
    const std::string& v = n.value;
    size_t digits = 0;
    while (digits < v.size() && v[digits] >= '0' && v[digits] <= '9') {
        ++digits;
    }
    std::string unit = v.substr(digits);
    unsigned shift = unit == "KiB" ? 10 : unit == "MiB" ? 20 : unit == "GiB" ? 30 : 0;
    if (digits == 0 || digits > 7 || shift == 0) {
        err(n, "memory_limit", "\"" + v + "\" is not " + what + " (units KiB, MiB, GiB)");
        return;
    }
    uint64_t bytes = std::stoull(v.substr(0, digits)) << shift;
    if (bytes < (4ull << 20) || bytes > (1ull << 40)) {
        err(n, "memory_limit", "\"" + v + "\" is out of range (4MiB-1024GiB)");
        return;
    }
    m.memory_limit = bytes;
}

void Reader::read_observe(const YamlNode& root, Model& m) {
    Observe& o = m.observe;
    if (const YamlNode* n = root.find("metrics"); n && check_map(*n, "metrics", {"listen"})) {
        if (const YamlNode* v = n->find("listen")) {
            if (auto a = host_port(*v, "metrics.listen", false)) {
                o.metrics = *a;
            }
        }
    }
    if (const YamlNode* n = root.find("control");
        n && check_map(*n, "control", {"socket", "group"})) {
        if (const YamlNode* v = n->find("socket")) {
            if (v->is_scalar() && !v->quoted && v->value == "off") {
                o.control_socket.clear();
            } else if (auto s = string(*v, "control.socket")) {
                if ((*s)[0] != '/' || s->size() > 100) {
                    err(*v, "control.socket",
                        "expected an absolute path of at most 100 bytes or off");
                } else {
                    o.control_socket = *s;
                }
            }
        }
        if (const YamlNode* v = n->find("group")) {
            o.control_group = name(*v, "control.group", 32).value_or("");
        }
    }
    if (const YamlNode* n = root.find("log");
        n && check_map(*n, "log", {"level", "connections", "format"})) {
        if (const YamlNode* v = n->find("level")) {
            o.log_level =
                choice(*v, "log.level", {"error", "warning", "info", "debug"}).value_or("info");
        }
        if (const YamlNode* v = n->find("connections")) {
            o.log_connections = boolean(*v, "log.connections").value_or(false);
        }
        if (const YamlNode* v = n->find("format")) {
            o.log_format = choice(*v, "log.format", {"logfmt", "json"}).value_or("logfmt");
        }
    }
}

// A user or group name (resolved when tpengine switches to it, not here) or a numeric id.
void Reader::read_account(const YamlNode& n, const char* key, std::string& out) {
    auto s = string(n, key);
    if (!s) {
        return;
    }
    bool ok =
        !s->empty() && s->size() <= 32 && (*s)[0] != '-' &&
        std::all_of(s->begin(), s->end(), [](char c) {
            return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.';
        });
    if (!ok) {
        err(n, key,
            "\"" + *s + "\" is not a user or group name (A-Z a-z 0-9 _ - ., at most 32) or id");
        return;
    }
    out = *s;
}

void Reader::read_nftables(const YamlNode& n, Model& m) {
    if (!check_map(n, "nftables", {"table", "fail"})) {
        return;
    }
    if (const YamlNode* v = n.find("table")) {
        if (auto s = string(*v, "nftables.table")) {
            bool ok =
                s->size() <= 32 && std::isalpha(static_cast<unsigned char>((*s)[0])) &&
                std::all_of(s->begin(), s->end(), [](char c) {
                    return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-';
                });
            if (!ok) {
                err(*v, "nftables.table",
                    "table name \"" + *s +
                        "\" must start with a letter and use only A-Z a-z 0-9 _ - (at most 32)");
            } else {
                m.nft_table = *s;
            }
        }
    }
    if (const YamlNode* v = n.find("fail")) {
        if (auto s = choice(*v, "nftables.fail", {"open", "closed"})) {
            m.fail = *s == "closed" ? FailMode::closed : FailMode::open;
        }
    }
}

void Reader::read_listener(const YamlNode& n, const std::string& path, Model& m, ModelWhere& w) {
    ListenerWhere lw;
    lw.path = path;
    lw.self = n.pos;
    if (!check_map(n, path,
                   {"name", "address", "port", "transparent", "v6only", "fast_open", "backlog",
                    "upstream", "timeouts", "max_connections", "routes", "accept_proxy",
                    "accept_proxy_from", "protocol", "udp"})) {
        return;
    }
    plan::Listener l;
    l.transparent = true;
    if (const YamlNode* v = n.find("name")) {
        lw.name = v->pos;
        l.name = name(*v, join(path, "name"), 64).value_or("");
    } else {
        err(n, path, "a listener needs a name");
    }
    IpAddr addr;
    addr.family = AF_INET6;  // "::"
    if (const YamlNode* v = n.find("address")) {
        lw.address = v->pos;
        if (auto s = string(*v, join(path, "address"))) {
            if (auto a = parse_ip(*s)) {
                addr = *a;
            } else {
                err(*v, join(path, "address"),
                    "\"" + *s + "\" is not an IPv4 or IPv6 address (use \"::\" for any)");
            }
        }
    }
    uint16_t port = 0;
    if (const YamlNode* v = n.find("port")) {
        lw.port = v->pos;
        port = static_cast<uint16_t>(
            integer(*v, join(path, "port"), 1, 65535, false, "a port").value_or(0));
    } else {
        err(n, path, "a listener needs a port");
    }
    l.address = sockaddr_of(addr, port);
    if (const YamlNode* v = n.find("transparent")) {
        lw.transparent = v->pos;
        l.transparent = boolean(*v, join(path, "transparent")).value_or(true);
    }
    if (const YamlNode* v = n.find("v6only")) {
        l.v6only = boolean(*v, join(path, "v6only")).value_or(false);
        if (l.v6only && addr.family == AF_INET) {
            err(*v, join(path, "v6only"), "v6only applies to an IPv6 address only");
        }
    }
    if (const YamlNode* v = n.find("fast_open")) {
        lw.udp.fast_open = v->pos;
        lw.udp.fast_open_set = true;
        l.fast_open = boolean(*v, join(path, "fast_open")).value_or(false);
    }
    if (const YamlNode* v = n.find("backlog")) {
        l.backlog = static_cast<int>(
            integer(*v, join(path, "backlog"), 1, 65535, false, "a backlog").value_or(4096));
    }
    if (const YamlNode* v = n.find("upstream")) {
        read_upstream(*v, join(path, "upstream"), l);
    }
    if (const YamlNode* v = n.find("timeouts")) {
        std::string tp = join(path, "timeouts");
        if (check_map(*v, tp, {"connect", "idle", "half_closed", "handshake", "sniff"})) {
            if (const YamlNode* t = v->find("handshake")) {
                l.timeouts.handshake_ms =
                    duration(*t, join(tp, "handshake")).value_or(l.timeouts.handshake_ms);
            }
            if (const YamlNode* t = v->find("sniff")) {
                l.timeouts.sniff_ms = duration(*t, join(tp, "sniff")).value_or(l.timeouts.sniff_ms);
            }
            if (const YamlNode* t = v->find("connect")) {
                l.timeouts.connect_ms =
                    duration(*t, join(tp, "connect"), true).value_or(l.timeouts.connect_ms);
            }
            if (const YamlNode* t = v->find("idle")) {
                l.timeouts.idle_ms =
                    duration(*t, join(tp, "idle"), true).value_or(l.timeouts.idle_ms);
            }
            if (const YamlNode* t = v->find("half_closed")) {
                l.timeouts.half_closed_ms =
                    duration(*t, join(tp, "half_closed"), true).value_or(l.timeouts.half_closed_ms);
            }
        }
    }
    if (const YamlNode* v = n.find("accept_proxy")) {
        if (auto s = choice(*v, join(path, "accept_proxy"), {"v1", "v2", "any"})) {
            l.accept_proxy = *s == "v1"   ? plan::AcceptProxy::v1
                             : *s == "v2" ? plan::AcceptProxy::v2
                                          : plan::AcceptProxy::any;
        }
        const YamlNode* from = n.find("accept_proxy_from");
        if (!from) {
            err(*v, join(path, "accept_proxy"),
                "needs accept_proxy_from: the trusted proxies' addresses (a header from anyone "
                "else could claim any client)");
        } else {
            for (const Cidr& c : read_addresses(*from, join(path, "accept_proxy_from"))) {
                plan::Prefix p;
                p.family = c.addr.family;
                std::memcpy(p.addr, c.addr.bytes.data(), 16);
                p.len = static_cast<uint8_t>(c.prefix);
                l.accept_proxy_from.push_back(p);
            }
        }
    } else if (const YamlNode* from = n.find("accept_proxy_from")) {
        err(*from, join(path, "accept_proxy_from"), "only with accept_proxy");
    }
    if (const YamlNode* v = n.find("max_connections")) {
        l.max_connections = static_cast<uint32_t>(
            integer(*v, join(path, "max_connections"), 0, 16'777'216, false, "a connection limit")
                .value_or(l.max_connections));
    }
    if (const YamlNode* v = n.find("protocol")) {
        lw.udp.protocol = v->pos;
        uint8_t bits = read_protocol(*v, join(path, "protocol"), d_);
        l.protocol = bits == kProtoUdp                 ? plan::Protocol::udp
                     : bits == (kProtoTcp | kProtoUdp) ? plan::Protocol::both
                                                       : plan::Protocol::tcp;
    }
    if (const YamlNode* v = n.find("udp")) {
        lw.udp.udp = v->pos;
        lw.udp.udp_set = true;
        read_listener_udp(*v, join(path, "udp"), l.udp, d_);
    }
    if (const YamlNode* v = n.find("routes")) {
        // Last: a route's checks (udp upstreams) depend on the listener's other keys.
        read_routes(*v, join(path, "routes"), l);
    }
    m.listeners.push_back(std::move(l));
    w.listeners.push_back(std::move(lw));
}

void Reader::read_upstream(const YamlNode& n, const std::string& path, plan::Listener& l) {
    if (!check_map(n, path, {"to", "source"})) {
        return;
    }
    if (const YamlNode* v = n.find("to")) {
        if (v->is_scalar() && v->value == "original") {
            l.target = plan::UpstreamTarget::original;
        } else if (auto a = host_port(*v, join(path, "to"), true)) {
            l.target = plan::UpstreamTarget::fixed;
            l.upstream_address = *a;
        }
    }
    if (const YamlNode* v = n.find("source")) {
        if (auto s = choice(*v, join(path, "source"), {"proxy", "client", "client-port"})) {
            l.source = *s == "proxy"    ? plan::SourceMode::proxy
                       : *s == "client" ? plan::SourceMode::client
                                        : plan::SourceMode::client_port;
        }
    }
}

// A listener's routes, first match wins; each names an upstream (upstreams.cc reads those).
void Reader::read_routes(const YamlNode& n, const std::string& path, plan::Listener& l) {
    if (!n.is_sequence()) {
        err(n, path, std::string("expected a list of routes, got ") + kind_name(n));
        return;
    }
    for (size_t i = 0; i < n.items.size() && !d_.full(); ++i) {
        const YamlNode& rn = *n.items[i];
        std::string rp = index(path, i);
        if (!check_map(rn, rp, {"destinations", "ports", "domains", "upstream"})) {
            continue;
        }
        plan::Route r;
        if (const YamlNode* v = rn.find("destinations")) {
            for (const Cidr& c : read_addresses(*v, join(rp, "destinations"))) {
                plan::Prefix p;
                p.family = c.addr.family;
                std::memcpy(p.addr, c.addr.bytes.data(), 16);
                p.len = static_cast<uint8_t>(c.prefix);
                r.destinations.push_back(p);
            }
        }
        if (const YamlNode* v = rn.find("ports")) {
            for (const PortRange& pr : read_ports(*v, join(rp, "ports"))) {
                r.ports.emplace_back(pr.low, pr.high);
            }
        }
        if (const YamlNode* v = rn.find("domains")) {
            if (l.protocol == plan::Protocol::udp) {
                // No name is ever known for a UDP flow: such a route could never match.
                err(*v, join(rp, "domains"),
                    "domains never match UDP flows (no name is sniffed from datagrams), and "
                    "listener \"" +
                        l.name + "\" serves udp only; route by destinations or ports");
            } else {
                ups_.read_domains(*v, join(rp, "domains"), r);
            }
        }
        if (const YamlNode* v = rn.find("upstream")) {
            if (auto idx = ups_.use(*v, join(rp, "upstream"), l)) {
                r.upstream = *idx;
            }
        } else {
            err(rn, rp, "a route needs an upstream");
        }
        l.routes.push_back(std::move(r));
    }
}

// HOST:PORT, [V6]:PORT, or (for `port_optional`) the same without :PORT. Hostnames only when
// `resolve`; they are resolved once, here.
std::optional<plan::SockAddr> Reader::host_port(const YamlNode& n, const std::string& path,
                                                bool resolve) {
    auto s = string(n, path);
    if (!s) {
        return std::nullopt;
    }
    std::string host, port_text;
    if ((*s)[0] == '[') {
        auto close = s->find(']');
        if (close == std::string::npos || close + 1 >= s->size() || (*s)[close + 1] != ':') {
            err(n, path, "\"" + *s + "\" is not [IPV6]:PORT");
            return std::nullopt;
        }
        host = s->substr(1, close - 1);
        port_text = s->substr(close + 2);
        if (host.find(':') == std::string::npos) {
            err(n, path, "brackets are for IPv6 addresses only: \"" + *s + "\"");
            return std::nullopt;
        }
    } else {
        auto colon = s->rfind(':');
        if (colon == std::string::npos) {
            err(n, path, "\"" + *s + "\" needs a port: HOST:PORT or [IPV6]:PORT");
            return std::nullopt;
        }
        host = s->substr(0, colon);
        port_text = s->substr(colon + 1);
        if (host.find(':') != std::string::npos) {
            err(n, path, "write an IPv6 address in brackets: [" + host + "]:" + port_text);
            return std::nullopt;
        }
    }
    if (port_text.empty() || port_text.size() > 5 || !all_of(port_text, is_digit) ||
        port_text[0] == '0' || std::stoul(port_text) > 65535) {
        err(n, path, "port \"" + port_text + "\" in \"" + *s + "\" is not a number from 1-65535");
        return std::nullopt;
    }
    auto port = static_cast<uint16_t>(std::stoul(port_text));
    if (auto a = parse_ip(host)) {
        return sockaddr_of(*a, port);
    }
    bool hostname = !host.empty() && host.size() <= 253 && all_of(host, [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-';
    });
    if (!resolve || !hostname) {
        err(n, path, "\"" + host + "\" is not an IPv4 or IPv6 address");
        return std::nullopt;
    }
    addrinfo hints{};
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    addrinfo* res = nullptr;
    int rc = getaddrinfo(host.c_str(), port_text.c_str(), &hints, &res);
    if (rc != 0 || res == nullptr) {
        err(n, path, "cannot resolve \"" + host + "\": " + gai_strerror(rc));
        return std::nullopt;
    }
    plan::SockAddr out;
    std::memcpy(&out.storage, res->ai_addr, res->ai_addrlen);
    out.len = res->ai_addrlen;
    freeaddrinfo(res);
    return out;
}

void Reader::read_rule(const YamlNode& n, const std::string& path, Model& m, ModelWhere& w) {
    RuleWhere rw;
    rw.path = path;
    rw.self = n.pos;
    if (!check_map(n, path,
                   {"name", "interfaces", "protocol", "sources", "destinations", "ports", "action",
                    "listener", "to", "block_quic"})) {
        return;
    }
    Rule r;
    if (const YamlNode* v = n.find("name")) {
        rw.name = v->pos;
        r.name = name(*v, join(path, "name"), 32).value_or("");
    } else {
        err(n, path, "a rule needs a name (it names the rule's counter)");
    }
    if (const YamlNode* v = n.find("interfaces")) {
        std::string ip = join(path, "interfaces");
        auto items = list(*v, ip);
        for (size_t i = 0; i < items.size(); ++i) {
            std::string p = item_path(*v, ip, i);
            auto s = string(*items[i], p);
            if (!s) {
                continue;
            }
            if (s->size() > 15 || !all_of(*s, is_name_char) || *s == "." || *s == "..") {
                err(*items[i], p,
                    "interface name \"" + *s +
                        "\" may use only A-Z a-z 0-9 _ . - and at most 15 characters");
                continue;
            }
            if (std::find(r.interfaces.begin(), r.interfaces.end(), *s) == r.interfaces.end()) {
                r.interfaces.push_back(*s);
            }
        }
        if (v->is_sequence() && v->items.empty()) {
            err(*v, ip, "empty list; leave the key out to match any interface");
        }
    }
    if (const YamlNode* v = n.find("protocol")) {
        rw.udp.protocol = v->pos;
        r.protocols = read_protocol(*v, join(path, "protocol"), d_);
    }
    if (const YamlNode* v = n.find("block_quic")) {
        rw.udp.block_quic = v->pos;
        r.block_quic = boolean(*v, join(path, "block_quic")).value_or(false);
    }
    if (const YamlNode* v = n.find("sources")) {
        rw.sources = v->pos;
        r.sources = read_addresses(*v, join(path, "sources"));
    }
    if (const YamlNode* v = n.find("destinations")) {
        rw.destinations = v->pos;
        r.destinations = read_addresses(*v, join(path, "destinations"));
    }
    if (const YamlNode* v = n.find("ports")) {
        r.ports = read_ports(*v, join(path, "ports"));
    }
    bool action_ok = false;
    if (const YamlNode* v = n.find("action")) {
        rw.action = v->pos;
        if (auto s = choice(*v, join(path, "action"), {"tproxy", "redirect", "dnat", "bypass"})) {
            action_ok = true;
            r.action = *s == "tproxy"     ? Action::tproxy
                       : *s == "redirect" ? Action::redirect
                       : *s == "dnat"     ? Action::dnat
                                          : Action::bypass;
        }
    } else {
        err(n, path, "a rule needs an action: tproxy | redirect | dnat | bypass");
    }
    const YamlNode* listener = n.find("listener");
    const YamlNode* to = n.find("to");
    if (action_ok) {
        bool wants_listener = r.action == Action::tproxy || r.action == Action::redirect;
        if (wants_listener && !listener) {
            err(n, path,
                "action " + std::string(r.action == Action::tproxy ? "tproxy" : "redirect") +
                    " needs a listener");
        }
        if (!wants_listener && listener) {
            err(*listener, join(path, "listener"),
                "listener is only for tproxy and redirect rules");
        }
        if (r.action == Action::dnat && !to) {
            err(n, path, "action dnat needs to: HOST:PORT");
        }
        if (r.action != Action::dnat && to) {
            err(*to, join(path, "to"), "to is only for dnat rules");
        }
    }
    if (listener) {
        rw.listener = listener->pos;
        rw.listener_name = name(*listener, join(path, "listener"), 64).value_or("");
    }
    if (to && action_ok && r.action == Action::dnat) {
        rw.to = to->pos;
        // A bare address keeps the original port.
        if (to->is_scalar() && !to->value.empty() && to->value[0] != '[') {
            if (auto a = parse_ip(to->value)) {
                r.to.addr = *a;
                r.to.port = 0;
                m.rules.push_back(std::move(r));
                w.rules.push_back(std::move(rw));
                return;
            }
        }
        if (auto a = host_port(*to, join(path, "to"), false)) {
            const sockaddr* sa = a->get();
            if (sa->sa_family == AF_INET) {
                auto* sin = reinterpret_cast<const sockaddr_in*>(sa);
                r.to.addr.family = AF_INET;
                std::memcpy(r.to.addr.bytes.data(), &sin->sin_addr, 4);
                r.to.port = ntohs(sin->sin_port);
            } else {
                auto* sin6 = reinterpret_cast<const sockaddr_in6*>(sa);
                r.to.addr.family = AF_INET6;
                std::memcpy(r.to.addr.bytes.data(), &sin6->sin6_addr, 16);
                r.to.port = ntohs(sin6->sin6_port);
            }
        }
    }
    m.rules.push_back(std::move(r));
    w.rules.push_back(std::move(rw));
}

std::vector<Cidr> Reader::read_addresses(const YamlNode& n, const std::string& path) {
    std::vector<Cidr> v4, v6;
    auto items = list(n, path);
    if (n.is_sequence() && n.items.empty()) {
        err(n, path, "empty list; leave the key out to match any address");
    }
    std::vector<Cidr> all;
    for (size_t i = 0; i < items.size() && !d_.full(); ++i) {
        const YamlNode& item = *items[i];
        std::string p = item_path(n, path, i);
        if (!item.is_scalar()) {
            err(item, p,
                std::string("expected an address, CIDR or \"@file\", got ") + kind_name(item));
            continue;
        }
        if (!item.value.empty() && item.value[0] == '@') {
            read_address_file(item, p, item.value.substr(1), all);
            continue;
        }
        std::string why;
        if (auto c = parse_cidr(item.value, why)) {
            all.push_back(*c);
        } else {
            err(item, p, why);
        }
    }
    addresses_ += all.size();
    if (addresses_ > kMaxAddresses) {
        if (!too_many_addresses_) {
            too_many_addresses_ = true;
            err(n, path,
                "the rule set holds more than " + std::to_string(kMaxAddresses) +
                    " addresses in all (lists repeated through aliases count each time)");
        }
        return {};
    }
    for (const Cidr& c : all) {
        (c.addr.family == AF_INET ? v4 : v6).push_back(c);
    }
    v4 = merge_cidrs(std::move(v4));
    v6 = merge_cidrs(std::move(v6));
    v4.insert(v4.end(), v6.begin(), v6.end());
    return v4;
}

void Reader::read_address_file(const YamlNode& n, const std::string& path, const std::string& file,
                               std::vector<Cidr>& out) {
    if (file.empty()) {
        err(n, path, "\"@\" needs a file name: \"@lan.txt\"");
        return;
    }
    std::string full = file[0] == '/' || base_dir_.empty() ? file : base_dir_ + "/" + file;
    if (auto it = file_cache_.find(full); it != file_cache_.end()) {
        out.insert(out.end(), it->second.begin(), it->second.end());
        return;
    }
    std::vector<Cidr> list;
    std::string text;
    switch (FileRead r = read_file_text(full, text); r.status) {
        case FileRead::Status::ok:
            break;
        case FileRead::Status::sys_error:
            err(n, path, "cannot read address list " + full + ": " + std::strerror(r.error));
            return;
        case FileRead::Status::not_regular:
            err(n, path, "address list " + full + " is not a regular file");
            return;
        case FileRead::Status::too_large:
            err(n, path, "address list " + full + " is larger than 16 MiB");
            return;
    }
    int line_no = 0;
    bool had_errors = false;
    for (size_t start = 0; start < text.size() && !d_.full();) {
        size_t nl = text.find('\n', start);
        std::string_view line(text.data() + start,
                              (nl == std::string::npos ? text.size() : nl) - start);
        start = nl == std::string::npos ? text.size() : nl + 1;
        ++line_no;
        auto hash = line.find('#');
        std::string_view body = line.substr(0, hash);
        size_t b = body.find_first_not_of(" \t\r");
        if (b == std::string_view::npos) {
            continue;
        }
        size_t e = body.find_last_not_of(" \t\r");
        std::string_view token = body.substr(b, e - b + 1);
        std::string why;
        if (token.find_first_of(" \t") != std::string_view::npos) {
            d_.error_in(full, {line_no, static_cast<int>(b) + 1}, path,
                        "one address or CIDR a line");
            had_errors = true;
            continue;
        }
        if (auto c = parse_cidr(token, why)) {
            list.push_back(*c);
        } else {
            d_.error_in(full, {line_no, static_cast<int>(b) + 1}, path, why);
            had_errors = true;
        }
    }
    if (list.empty() && !had_errors) {
        // Never "any": a list left empty (by mistake, or truncated before a reload) would drop
        // the match and widen the rule to every address.
        err(n, path,
            "address list " + full +
                " holds no address (empty or only comments); an empty list would match every "
                "address, so it is refused");
        return;
    }
    // Cached even when it had errors: they are reported once, and the load fails anyway.
    out.insert(out.end(), list.begin(), list.end());
    file_cache_.emplace(full, std::move(list));
}

std::vector<PortRange> Reader::read_ports(const YamlNode& n, const std::string& path) {
    std::vector<PortRange> ports;
    auto items = list(n, path);
    if (n.is_sequence() && n.items.empty()) {
        err(n, path, "empty list; leave the key out to match any port");
    }
    for (size_t i = 0; i < items.size(); ++i) {
        const YamlNode& item = *items[i];
        std::string p = item_path(n, path, i);
        auto dash = item.is_scalar() ? item.value.find('-') : std::string::npos;
        if (dash == std::string::npos || dash == 0) {
            if (auto v = integer(item, p, 1, 65535, false, "a port")) {
                ports.push_back({static_cast<uint16_t>(*v), static_cast<uint16_t>(*v)});
            }
            continue;
        }
        std::string lo = item.value.substr(0, dash), hi = item.value.substr(dash + 1);
        auto num = [](const std::string& s) -> long {
            if (s.empty() || s.size() > 5 || !all_of(s, is_digit) ||
                (s.size() > 1 && s[0] == '0')) {
                return -1;
            }
            return std::stol(s);
        };
        long l = num(lo), h = num(hi);
        if (l < 0 || h < 0) {
            err(item, p, "\"" + item.value + "\" is not a port range LOW-HIGH of decimal numbers");
        } else if (l < 1 || h > 65535 || l > 65535) {
            err(item, p, "port range " + item.value + " is outside 1-65535");
        } else if (l > h) {
            err(item, p, "port range " + item.value + " has its low end above its high end");
        } else {
            ports.push_back({static_cast<uint16_t>(l), static_cast<uint16_t>(h)});
        }
    }
    // Sort and merge overlapping or adjacent ranges: nft interval sets reject overlaps.
    std::sort(ports.begin(), ports.end(),
              [](const PortRange& a, const PortRange& b) { return a.low < b.low; });
    std::vector<PortRange> merged;
    for (const PortRange& r : ports) {
        if (!merged.empty() && r.low <= static_cast<uint32_t>(merged.back().high) + 1) {
            merged.back().high = std::max(merged.back().high, r.high);
        } else {
            merged.push_back(r);
        }
    }
    return merged;
}

}  // namespace

std::optional<Model> read_model(const YamlNode& root, const std::string& base_dir, Diags& diags) {
    return Reader(base_dir, diags).read(root);
}

}  // namespace tp::config

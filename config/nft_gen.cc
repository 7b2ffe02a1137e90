// Writes the nft batch. Chains:
//   divert   (filter, prerouting, mangle)      packets of existing transparent sockets -> local
//   pre      (filter, prerouting, mangle + 1)  rules in order: tproxy, bypass; fail-closed drops
//   nat_pre  (nat, prerouting, dstnat)         rules in order: redirect (never to a local
//                                              address, as tproxy), dnat
//   out      (route, output, mangle)           capture_local: mark local traffic for tproxy
//   nat_out  (nat, output, -100)               capture_local: redirect, dnat of local traffic
// nft's tproxy is non-terminal, does not set the mark and finds no socket = NFT_BREAK (the
// packet goes on unproxied), hence the explicit `meta mark set`, `accept` and fail-closed drop.
// A rule acts in one chain; in the others an earlier rule that matches stops evaluation, so
// "first match wins" holds across chains.

#include "config/nft_gen.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cstdio>
#include <cstring>

#include "config/nft_bigsets.h"
#include "config/schema.h"
#include "config/udp_schema.h"

namespace tp::config {

namespace {

std::string hex(uint32_t v) {
    char buf[16];
    std::snprintf(buf, sizeof buf, "0x%x", v);
    return buf;
}

bool has_family(const std::vector<Cidr>& list, int family) {
    for (const Cidr& c : list) {
        if (c.addr.family == family) {
            return true;
        }
    }
    return false;
}

// With capture_local, rules without interfaces, or naming lo, also act on this host's own
// traffic.
bool applies_locally(const Rule& r) {
    return r.interfaces.empty() ||
           std::find(r.interfaces.begin(), r.interfaces.end(), "lo") != r.interfaces.end();
}
bool is_nat(const Rule& r) {
    return r.action == Action::redirect || r.action == Action::dnat;
}

class Writer {
  public:
    explicit Writer(const Model& m) : m_(m) { out_.reserve(4096); }

    std::string run();

  private:
    // 4, 6, or 0 for "either family, no family match needed".
    std::vector<int> families(const Rule& r) const {
        std::string why;
        RuleFamilies f = rule_families(m_, r, &why);
        bool addressed = !r.sources.empty() || !r.destinations.empty();
        bool family_free = r.action == Action::bypass || r.action == Action::redirect;
        if (f.v4 && f.v6 && !addressed && family_free) {
            return {0};
        }
        std::vector<int> out;
        if (f.v4) {
            out.push_back(4);
        }
        if (f.v6) {
            out.push_back(6);
        }
        return out;
    }

    // The match part of a rule's line for family `fam`. `quic`: the rule's UDP/443 instead of
    // its protocols and ports (block_quic).
    std::string match(const Rule& r, int fam, bool output = false, bool quic = false) const {
        std::string s;
        if (output) {
            // Output hooks have no input interface; `lo` there means "this host".
        } else if (r.interfaces.size() == 1) {
            s += "iifname \"" + r.interfaces[0] + "\" ";
        } else if (!r.interfaces.empty()) {
            s += "iifname { ";
            for (size_t i = 0; i < r.interfaces.size(); ++i) {
                s += (i ? ", \"" : "\"") + r.interfaces[i] + "\"";
            }
            s += " } ";
        }
        int af = fam == 4 ? AF_INET : AF_INET6;
        bool src = fam != 0 && has_family(r.sources, af);
        bool dst = fam != 0 && has_family(r.destinations, af);
        if (fam != 0 && !src && !dst) {
            s += fam == 4 ? "meta nfproto ipv4 " : "meta nfproto ipv6 ";
        }
        uint8_t proto = quic ? kProtoUdp : r.protocols == 0 ? kProtoTcp : r.protocols;
        // th (transport header) covers both TCP and UDP ports when a rule catches both.
        const char* l4 = proto == kProtoTcp ? "tcp" : proto == kProtoUdp ? "udp" : "th";
        s += proto == kProtoTcp   ? "meta l4proto tcp "
             : proto == kProtoUdp ? "meta l4proto udp "
                                  : "meta l4proto { tcp, udp } ";
        const char* ip = fam == 4 ? "ip" : "ip6";
        if (src) {
            s += std::string(ip) + " saddr @src" + std::to_string(fam) + "-" + r.name + " ";
        }
        if (dst) {
            s += std::string(ip) + " daddr @dst" + std::to_string(fam) + "-" + r.name + " ";
        }
        if (quic) {
            s += "udp dport 443 ";
        } else if (r.ports.size() == 1) {
            s += std::string(l4) + " dport " + port_text(r.ports[0]) + " ";
        } else if (!r.ports.empty()) {
            s += std::string(l4) + " dport { ";
            for (size_t i = 0; i < r.ports.size(); ++i) {
                s += (i ? ", " : "") + port_text(r.ports[i]);
            }
            s += " } ";
        }
        return s;
    }

    static std::string port_text(const PortRange& p) {
        return p.low == p.high ? std::to_string(p.low)
                               : std::to_string(p.low) + "-" + std::to_string(p.high);
    }
    static std::string counter(const std::string& name) { return "counter name \"" + name + "\" "; }

    std::string tproxy_target(const Rule& r, int fam) const {
        const plan::Listener& l = m_.listeners[r.listener];
        const sockaddr* sa = l.address.get();
        uint16_t port;
        std::string addr;
        char buf[INET6_ADDRSTRLEN];
        if (sa->sa_family == AF_INET) {
            auto* sin = reinterpret_cast<const sockaddr_in*>(sa);
            port = ntohs(sin->sin_port);
            if (sin->sin_addr.s_addr != INADDR_ANY) {
                addr = inet_ntop(AF_INET, &sin->sin_addr, buf, sizeof buf);
            }
        } else {
            auto* sin6 = reinterpret_cast<const sockaddr_in6*>(sa);
            port = ntohs(sin6->sin6_port);
            if (!IN6_IS_ADDR_UNSPECIFIED(&sin6->sin6_addr)) {
                addr.assign("[")
                    .append(inet_ntop(AF_INET6, &sin6->sin6_addr, buf, sizeof buf))
                    .append("]");
            }
        }
        return std::string(fam == 4 ? "tproxy ip to " : "tproxy ip6 to ") + addr + ":" +
               std::to_string(port);
    }

    static uint16_t listener_port(const plan::Listener& l) {
        const sockaddr* sa = l.address.get();
        return ntohs(sa->sa_family == AF_INET
                         ? reinterpret_cast<const sockaddr_in*>(sa)->sin_port
                         : reinterpret_cast<const sockaddr_in6*>(sa)->sin6_port);
    }

    // Like tproxy rules (`pre` returns for local destinations first), a redirect never takes
    // a connection to one of this host's own addresses (a LAN client's request to the
    // gateway's own web UI): it goes on to the later rules. dnat does: forwarding a port of
    // this host's own address is what it is for.
    static std::string nat_prefix(const Rule& r) {
        return r.action == Action::redirect ? "fib daddr type != local " : "";
    }

    std::string nat_action(const Rule& r) const {
        if (r.action == Action::redirect) {
            return "redirect to :" + std::to_string(listener_port(m_.listeners[r.listener]));
        }
        std::string a = format_ip(r.to.addr);
        if (r.to.addr.family == AF_INET) {
            std::string s = "dnat ip to ";
            s += a;
            if (r.to.port) {
                s += ':';
                s += std::to_string(r.to.port);
            }
            return s;
        }
        std::string s = "dnat ip6 to ";
        if (r.to.port) {
            s += '[';
            s += a;
            s += "]:";
            s += std::to_string(r.to.port);
        } else {
            s += a;
        }
        return s;
    }

    void line(const std::string& text) {
        out_ += "\t\t";
        out_ += text;
        out_ += '\n';
    }
    // block_quic: whole UDP/443 flows of the rule's match dropped (not relayed), so that
    // browsers fall back to TCP (RFC 9312: dropping some packets only would not).
    void quic_drops(const Rule& r) {
        if (!r.block_quic) {
            return;
        }
        for (int fam : families(r)) {
            line(match(r, fam, false, true) + counter("quic-" + r.name) + "drop");
        }
    }
    // UDP upstream sockets bound to a client's address (source: client, client-port) receive
    // Z's replies to that address only through a divert. Reply sockets are transparent too and
    // bound to the original destination, and nft's socket lookup does not tell connected from
    // unconnected UDP sockets, so a plain UDP divert would hand them client datagrams that
    // nobody reads. The two kinds carry different marks: divert only the bypass-marked ones.
    bool serves_udp() const {
        for (const plan::Listener& l : m_.listeners) {
            if (protocol_bits(l.protocol) & kProtoUdp) {
                return true;
            }
        }
        return false;
    }
    void divert_udp(const std::string& set_mark) {
        bool needed = false;
        for (const plan::Listener& l : m_.listeners) {
            needed = needed || ((protocol_bits(l.protocol) & kProtoUdp) &&
                                l.source != plan::SourceMode::proxy);
        }
        if (needed) {
            line("meta l4proto udp socket transparent 1 socket mark " +
                 hex(m_.routing.bypass_mark) + " " + set_mark + " accept");
        }
    }
    void lines(const Rule& r, const std::string& prefix, const std::string& tail,
               bool output = false) {
        for (int fam : families(r)) {
            line(prefix + match(r, fam, output) + tail);
        }
    }

    // Whether `b` is the address right after `a` (the lists are sorted: config/cidr.h).
    static bool follows(const IpAddr& a, const IpAddr& b) {
        int n = a.family == AF_INET ? 4 : 16;
        IpAddr next = a;
        for (int i = n - 1; i >= 0; --i) {
            if (++next.bytes[i] != 0) {
                return next.bytes == b.bytes;
            }
        }
        return false;  // a was the last address
    }

    // Sets only for the families the rule acts on (an IPv6 source list is of no use when
    // the destinations are all IPv4).
    void write_set(const Rule& r, const char* dir, const std::vector<Cidr>& list) {
        std::vector<int> fams = families(r);
        for (int fam : {4, 6}) {
            int af = fam == 4 ? AF_INET : AF_INET6;
            if (!has_family(list, af) || std::find(fams.begin(), fams.end(), fam) == fams.end()) {
                continue;
            }
            out_ += "\tset ";
            out_ += dir;
            out_ += std::to_string(fam) + "-" + r.name + " {\n\t\ttype ";
            out_ += fam == 4 ? "ipv4_addr" : "ipv6_addr";
            // A big list of single addresses and nothing else is a plain (hash) set of that
            // size when that holds fewer elements than an interval tree, which holds two nodes
            // per run of adjacent addresses: the same matches, and the kernel fills it about
            // three times faster for separate addresses (bench/RESULTS.md).
            size_t count = 0, runs = 0;
            bool hosts = true;
            const IpAddr* prev = nullptr;
            for (const Cidr& c : list) {
                if (c.addr.family == af) {
                    ++count;
                    hosts = hosts && c.prefix == (fam == 4 ? 32 : 128);
                    runs += prev == nullptr || !follows(*prev, c.addr) ? 1 : 0;
                    prev = &c.addr;
                }
            }
            hosts = hosts && count >= kBigSetElements && count <= 2 * runs;
            out_ += hosts ? "\n\t\tsize " + std::to_string(count) + "\n\t\telements = {"
                          : std::string("\n\t\tflags interval\n\t\tauto-merge\n\t\telements = {");
            bool first = true;
            for (const Cidr& c : list) {
                if (c.addr.family != af) {
                    continue;
                }
                out_ += first ? "\n\t\t\t" : ",\n\t\t\t";
                out_ += hosts ? format_ip(c.addr) : format_cidr(c);
                first = false;
            }
            out_ += "\n\t\t}\n\t}\n";
        }
    }

    void chain_head(const char* name, const char* spec) {
        out_ += "\tchain ";
        out_ += name;
        out_ += " {\n\t\t";
        out_ += spec;
        out_ += "\n";
    }
    void chain_end() { out_ += "\t}\n"; }

    const Model& m_;
    std::string out_;
};

std::string Writer::run() {
    const std::string& t = m_.nft_table;
    // Only the bits under the mask are ours: other software's bits are kept.
    const Routing& rt = m_.routing;
    std::string set_mark =
        rt.mask == 0xffffffff ? "meta mark set " + hex(rt.mark)
                              : "meta mark set meta mark & " + hex(~rt.mask) + " | " + hex(rt.mark);
    std::string bypass = "meta mark " + hex(m_.routing.bypass_mark) + " return";
    bool closed = m_.fail == FailMode::closed;

    size_t last_tproxy = SIZE_MAX, last_nat = SIZE_MAX, last_pre = SIZE_MAX;
    size_t last_local_tproxy = SIZE_MAX, last_local_nat = SIZE_MAX;
    for (size_t i = 0; i < m_.rules.size(); ++i) {
        const Rule& r = m_.rules[i];
        bool local = m_.capture_local && applies_locally(r);
        if (r.action == Action::tproxy || r.block_quic) {
            last_pre = i;
        }
        if (r.action == Action::tproxy) {
            last_tproxy = i;
            if (local) {
                last_local_tproxy = i;
            }
        } else if (is_nat(r)) {
            last_nat = i;
            if (local) {
                last_local_nat = i;
            }
        }
    }
    auto after = [](size_t i, size_t last) { return last != SIZE_MAX && last > i; };

    out_ += "add table inet " + t + "\ndelete table inet " + t + "\ntable inet " + t + " {\n";
    for (const Rule& r : m_.rules) {
        out_ += "\tcounter rule-" + r.name + " {\n\t}\n";
        if (closed && r.action == Action::tproxy) {
            out_ += "\tcounter drop-" + r.name + " {\n\t}\n";
        }
        if (r.block_quic) {
            out_ += "\tcounter quic-" + r.name + " {\n\t}\n";
        }
    }
    for (const Rule& r : m_.rules) {
        write_set(r, "src", r.sources);
        write_set(r, "dst", r.destinations);
    }

    if (last_tproxy != SIZE_MAX) {
        chain_head("divert", "type filter hook prerouting priority mangle; policy accept;");
        line("meta l4proto tcp socket transparent 1 " + set_mark + " accept");
        divert_udp(set_mark);
        chain_end();
    }
    if (last_pre != SIZE_MAX) {
        chain_head("pre", "type filter hook prerouting priority mangle + 1; policy accept;");
        line("fib daddr type local return");
        line(bypass);
        for (size_t i = 0; i < m_.rules.size(); ++i) {
            const Rule& r = m_.rules[i];
            if (r.action != Action::bypass) {
                quic_drops(r);
            }
            if (r.action == Action::bypass) {
                lines(r, "", counter("rule-" + r.name) + "return");
            } else if (r.action == Action::tproxy) {
                for (int fam : families(r)) {
                    std::string m = match(r, fam);
                    line(m + counter("rule-" + r.name) + tproxy_target(r, fam) + " " + set_mark +
                         " accept");
                    if (closed) {
                        line(m + counter("drop-" + r.name) + "drop");
                    }
                }
            } else if (after(i, last_pre)) {
                lines(r, "", "accept");  // handled in nat_pre; stops later tproxy rules
            }
        }
        chain_end();
    }

    if (last_nat != SIZE_MAX) {
        chain_head("nat_pre", "type nat hook prerouting priority dstnat; policy accept;");
        line(bypass);
        for (size_t i = 0; i <= last_nat; ++i) {
            const Rule& r = m_.rules[i];
            if (r.action == Action::bypass) {
                lines(r, "", (last_pre == SIZE_MAX ? counter("rule-" + r.name) : "") + "return");
            } else if (r.action == Action::tproxy) {
                lines(r, "fib daddr type != local ", "return");  // taken by pre
            } else {
                lines(r, nat_prefix(r), counter("rule-" + r.name) + nat_action(r));
            }
        }
        chain_end();
    }

    if (last_local_tproxy != SIZE_MAX) {
        // Output has no tproxy: mark, so the policy rule routes it via lo into prerouting,
        // where `pre` takes it (and counts it).
        chain_head("out", "type route hook output priority mangle; policy accept;");
        line(bypass);
        if (serves_udp()) {
            // UDP replies to clients leave from reply sockets: never catch them again.
            line("meta mark " + hex(m_.routing.reply_mark) + " return");
        }
        line("fib daddr type local return");
        for (size_t i = 0; i <= last_local_tproxy; ++i) {
            const Rule& r = m_.rules[i];
            if (!applies_locally(r)) {
                continue;
            }
            if (r.action == Action::bypass) {
                lines(r, "", "return", true);
            } else if (r.action == Action::tproxy) {
                lines(r, "", set_mark + " accept", true);
            } else {
                lines(r, "", "accept", true);  // handled in nat_out
            }
        }
        chain_end();
    }

    if (last_local_nat != SIZE_MAX) {
        chain_head("nat_out", "type nat hook output priority -100; policy accept;");
        line(bypass);
        for (size_t i = 0; i <= last_local_nat; ++i) {
            const Rule& r = m_.rules[i];
            if (!applies_locally(r)) {
                continue;
            }
            if (r.action == Action::bypass) {
                lines(r, "", "return", true);
            } else if (r.action == Action::tproxy) {
                lines(r, "fib daddr type != local ", "return", true);  // taken by out
            } else {
                lines(r, nat_prefix(r), counter("rule-" + r.name) + nat_action(r), true);
            }
        }
        chain_end();
    }
    out_ += "}\n";
    return std::move(out_);
}

}  // namespace

std::string generate_nft(const Model& model) {
    return Writer(model).run();
}

}  // namespace tp::config

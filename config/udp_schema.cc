// The UDP keys of the rule set and their cross-key checks (see udp_schema.h).

#include "config/udp_schema.h"

#include "config/values.h"

namespace tp::config {

namespace {

// The plain value readers, for the UDP keys.
class UdpReader : public ValueReader {
  public:
    explicit UdpReader(Diags& d) : ValueReader(d) {}

    uint8_t protocol(const YamlNode& n, const std::string& path) {
        auto s = choice(n, path, {"tcp", "udp", "both"});
        if (!s) {
            return 0;
        }
        return *s == "tcp" ? kProtoTcp : *s == "udp" ? kProtoUdp : kProtoTcp | kProtoUdp;
    }

    void udp(const YamlNode& n, const std::string& path, plan::Udp& u) {
        if (!check_map(n, path,
                       {"idle", "dns_idle", "dns_close_after_answer", "quic_idle",
                        "max_flows_per_worker", "max_flows_per_client", "max_datagram"})) {
            return;
        }
        if (const YamlNode* v = n.find("idle")) {
            u.idle_ms = duration(*v, join(path, "idle")).value_or(u.idle_ms);
        }
        if (const YamlNode* v = n.find("dns_idle")) {
            u.dns_idle_ms = duration(*v, join(path, "dns_idle")).value_or(u.dns_idle_ms);
        }
        if (const YamlNode* v = n.find("dns_close_after_answer")) {
            u.dns_close_after_answer = boolean(*v, join(path, "dns_close_after_answer"))
                                           .value_or(u.dns_close_after_answer);
        }
        if (const YamlNode* v = n.find("quic_idle")) {
            u.quic_idle_ms = duration(*v, join(path, "quic_idle")).value_or(u.quic_idle_ms);
        }
        // 0 would mean "no flow ever", which is a listener that drops everything: refused.
        if (const YamlNode* v = n.find("max_flows_per_worker")) {
            u.max_flows_per_worker =
                static_cast<uint32_t>(integer(*v, join(path, "max_flows_per_worker"), 1, 16'777'216,
                                              false, "a flow limit from 1")
                                          .value_or(u.max_flows_per_worker));
        }
        if (const YamlNode* v = n.find("max_flows_per_client")) {
            u.max_flows_per_client =
                static_cast<uint32_t>(integer(*v, join(path, "max_flows_per_client"), 1, 16'777'216,
                                              false, "a flow limit from 1")
                                          .value_or(u.max_flows_per_client));
        }
        // 65,507 = 65,535 - 8 (UDP header) - 20 (IPv4 header): the largest IPv4 payload.
        if (const YamlNode* v = n.find("max_datagram")) {
            u.max_datagram =
                static_cast<uint32_t>(integer(*v, join(path, "max_datagram"), 1, 65'507, false,
                                              "a datagram size in bytes")
                                          .value_or(u.max_datagram));
        }
    }
};

}  // namespace

uint8_t protocol_bits(plan::Protocol p) {
    switch (p) {
        case plan::Protocol::tcp:
            return kProtoTcp;
        case plan::Protocol::udp:
            return kProtoUdp;
        case plan::Protocol::both:
            return kProtoTcp | kProtoUdp;
    }
    return kProtoTcp;
}

const char* protocol_name(uint8_t bits) {
    return bits == kProtoTcp ? "tcp" : bits == kProtoUdp ? "udp" : "both";
}

uint8_t read_protocol(const YamlNode& n, const std::string& path, Diags& d) {
    return UdpReader(d).protocol(n, path);
}

void read_listener_udp(const YamlNode& n, const std::string& path, plan::Udp& udp, Diags& d) {
    UdpReader(d).udp(n, path, udp);
}

void check_listener_udp(const plan::Listener& l, const std::string& path, const UdpListenerWhere& w,
                        Diags& d) {
    uint8_t bits = protocol_bits(l.protocol);
    if (w.udp_set && !(bits & kProtoUdp)) {
        d.error(w.udp, path + ".udp",
                "udp settings on a listener that serves tcp only; add protocol: udp or both");
    }
    if (w.fast_open_set && l.fast_open && !(bits & kProtoTcp)) {
        d.error(w.fast_open, path + ".fast_open",
                "fast_open is TCP only; this listener serves udp");
    }
}

void check_rule_protocols(const Model& m, Rule& rule, const std::string& path, Pos self,
                          const UdpRuleWhere& w, Diags& d) {
    bool written = rule.protocols != 0;
    Pos at = written ? w.protocol : self;
    if (rule.block_quic && rule.action == Action::bypass) {
        d.error(w.block_quic, path + ".block_quic",
                "block_quic drops what a rule would intercept; a bypass rule intercepts nothing");
    }
    if (rule.action == Action::bypass) {
        return;  // resolve_bypass_protocols
    }
    if (rule.action == Action::dnat) {
        if (!written) {
            rule.protocols = kProtoTcp;
        }
        return;
    }
    if (rule.listener < 0) {
        return;
    }
    const plan::Listener& l = m.listeners[rule.listener];
    uint8_t serves = protocol_bits(l.protocol);
    if (!written) {
        rule.protocols = serves;
    } else if ((rule.protocols & ~serves) != 0) {
        bool udp = (rule.protocols & ~serves) & kProtoUdp;
        d.error(at, path + ".protocol",
                std::string("the rule catches ") + (udp ? "UDP" : "TCP") + " but listener \"" +
                    l.name + "\" serves " + protocol_name(serves) +
                    " only; set protocol: " + (udp ? "udp" : "tcp") + " or both on the listener");
        return;
    }
    if (rule.action == Action::redirect && (rule.protocols & kProtoUdp) &&
        l.target == plan::UpstreamTarget::original) {
        d.error(at, path + ".protocol",
                "redirect rewrites a datagram's destination and a UDP socket cannot ask "
                "conntrack for the original one; use action: tproxy for UDP, or give listener "
                "\"" +
                    l.name + "\" a fixed upstream");
    }
}

// A bypass rule exempts what the rule set intercepts: by default every protocol that some
// intercepting rule catches, so `bypass` written before a UDP rule exempts UDP too.
void resolve_bypass_protocols(Model& m) {
    uint8_t all = 0;
    for (const Rule& r : m.rules) {
        if (r.action != Action::bypass) {
            all |= r.protocols;
        }
    }
    for (Rule& r : m.rules) {
        if (r.action == Action::bypass && r.protocols == 0) {
            r.protocols = all != 0 ? all : kProtoTcp;
        }
    }
}

}  // namespace tp::config

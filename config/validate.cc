// Cross-key checks on a model whose values are each valid: unique names, listener references,
// port clashes, marks under the mask, address families, and the allow_all guard.

#include <netinet/in.h>

#include <cstdio>
#include <cstring>
#include <map>

#include "config/schema.h"

namespace tp::config {

namespace {

std::string hex(uint32_t v) {
    char buf[16];
    std::snprintf(buf, sizeof buf, "0x%x", v);
    return buf;
}

IpAddr ip_of(const plan::SockAddr& s) {
    IpAddr a;
    a.family = s.family();
    if (a.family == AF_INET) {
        std::memcpy(a.bytes.data(), &reinterpret_cast<const sockaddr_in*>(s.get())->sin_addr, 4);
    } else if (a.family == AF_INET6) {
        std::memcpy(a.bytes.data(), &reinterpret_cast<const sockaddr_in6*>(s.get())->sin6_addr, 16);
    }
    return a;
}

bool is_zero(const IpAddr& a) {
    size_t n = a.family == AF_INET ? 4 : 16;
    for (size_t i = 0; i < n; ++i) {
        if (a.bytes[i] != 0) {
            return false;
        }
    }
    return true;
}

// Does listener `a` take connections addressed to what `b` binds?
bool covers(const plan::Listener& a, const plan::Listener& b) {
    IpAddr aa = ip_of(a.address), ba = ip_of(b.address);
    if (aa == ba) {
        return true;
    }
    if (!is_zero(aa)) {
        return false;
    }
    RuleFamilies fa = listener_families(a);
    return ba.family == AF_INET ? fa.v4 : fa.v6;
}

struct Has {
    bool v4 = false, v6 = false;
};
Has families(const std::vector<Cidr>& list) {
    Has h;
    for (const Cidr& c : list) {
        (c.addr.family == AF_INET ? h.v4 : h.v6) = true;
    }
    return h;
}

}  // namespace

bool listener_is_wildcard(const plan::Listener& l) {
    return is_zero(ip_of(l.address));
}

RuleFamilies listener_families(const plan::Listener& l) {
    IpAddr a = ip_of(l.address);
    if (a.family == AF_INET) {
        return {true, false};
    }
    return {is_zero(a) && !l.v6only, true};
}

RuleFamilies rule_families(const Model& model, const Rule& rule, std::string* why) {
    Has src = families(rule.sources), dst = families(rule.destinations);
    bool want4 = (rule.sources.empty() || src.v4) && (rule.destinations.empty() || dst.v4);
    bool want6 = (rule.sources.empty() || src.v6) && (rule.destinations.empty() || dst.v6);
    if (!want4 && !want6) {
        *why = "sources and destinations share no address family: the rule can never match";
        return {};
    }
    RuleFamilies serve{true, true};
    std::string server;
    if ((rule.action == Action::tproxy || rule.action == Action::redirect) && rule.listener >= 0) {
        serve = listener_families(model.listeners[rule.listener]);
        server = "listener \"" + model.listeners[rule.listener].name + "\"";
    } else if (rule.action == Action::dnat) {
        serve = {rule.to.addr.family == AF_INET, rule.to.addr.family == AF_INET6};
        server = "to";
    }
    bool explicit4 = src.v4 || dst.v4, explicit6 = src.v6 || dst.v6;
    if (want4 && explicit4 && !serve.v4) {
        *why = "the rule matches IPv4 addresses but " + server + " is IPv6 only";
        return {};
    }
    if (want6 && explicit6 && !serve.v6) {
        *why = "the rule matches IPv6 addresses but " + server + " is IPv4 only";
        return {};
    }
    RuleFamilies out{want4 && serve.v4, want6 && serve.v6};
    if (!out.v4 && !out.v6) {
        *why = "the rule's addresses and " + server + " share no address family";
    }
    return out;
}

void validate_model(Model& m, const ModelWhere& w, Diags& d) {
    const Routing& r = m.routing;
    Pos mark_pos = w.mark_set ? w.mark : w.mask_set ? w.mask : w.root;
    if ((r.mark & ~r.mask) != 0) {
        d.error(mark_pos, "routing.mark",
                "mark " + hex(r.mark) + " has bits outside mask " + hex(r.mask));
    }
    if ((r.bypass_mark & r.mask) == r.mark) {
        Pos p = w.bypass_set ? w.bypass_mark : w.mask_set ? w.mask : mark_pos;
        d.error(p, "routing.bypass_mark",
                "bypass_mark " + hex(r.bypass_mark) + " under mask " + hex(r.mask) +
                    " equals the intercept mark " + hex(r.mark) +
                    ": tpengine's own upstream traffic would be routed back to it");
    }
    if (w.reply_set && (r.reply_mark & r.mask) == r.mark) {
        d.error(w.reply_mark, "routing.reply_mark",
                "reply_mark " + hex(r.reply_mark) + " under mask " + hex(r.mask) +
                    " equals the intercept mark " + hex(r.mark) +
                    ": UDP replies to clients would be routed back to this host");
    } else if (r.reply_mark == r.bypass_mark) {
        Pos p = w.reply_set ? w.reply_mark : w.bypass_set ? w.bypass_mark : w.root;
        d.error(p, "routing.reply_mark",
                "reply_mark equals bypass_mark " + hex(r.bypass_mark) +
                    ": the UDP divert rule tells upstream sockets from reply sockets by it; set "
                    "routing.reply_mark to another mark");
    }

    std::map<std::string, size_t> listener_index;
    for (size_t i = 0; i < m.listeners.size(); ++i) {
        const plan::Listener& l = m.listeners[i];
        const ListenerWhere& lw = w.listeners[i];
        check_listener_udp(l, lw.path, lw.udp, d);
        if (l.name.empty()) {
            continue;
        }
        auto [it, fresh] = listener_index.emplace(l.name, i);
        if (!fresh) {
            d.error(lw.name, lw.path + ".name",
                    "listener name \"" + l.name + "\" is already used by " +
                        w.listeners[it->second].path);
        }
        for (size_t j = 0; j < i; ++j) {
            const plan::Listener& o = m.listeners[j];
            uint16_t port = l.address.port();
            // TCP and UDP ports are separate: a tcp and a udp listener may share one.
            if (port == 0 || port != o.address.port() ||
                (protocol_bits(l.protocol) & protocol_bits(o.protocol)) == 0) {
                continue;
            }
            if (covers(l, o) || covers(o, l)) {
                d.error(lw.port, lw.path + ".port",
                        "port " + std::to_string(port) + " on " + format_ip(ip_of(l.address)) +
                            " clashes with " + w.listeners[j].path + " (" +
                            format_ip(ip_of(o.address)) + ")");
            }
        }
    }

    std::map<std::string, size_t> rule_index;
    for (size_t i = 0; i < m.rules.size(); ++i) {
        Rule& rule = m.rules[i];
        const RuleWhere& rw = w.rules[i];
        if (!rule.name.empty()) {
            auto [it, fresh] = rule_index.emplace(rule.name, i);
            if (!fresh) {
                d.error(rw.name, rw.path + ".name",
                        "rule name \"" + rule.name + "\" is already used by " +
                            w.rules[it->second].path);
            }
        }
        bool wants_listener = rule.action == Action::tproxy || rule.action == Action::redirect;
        if (wants_listener && !rw.listener_name.empty()) {
            auto it = listener_index.find(rw.listener_name);
            if (it == listener_index.end()) {
                d.error(rw.listener, rw.path + ".listener",
                        "no listener is named \"" + rw.listener_name + "\"");
                continue;
            }
            rule.listener = static_cast<int>(it->second);
            const plan::Listener& l = m.listeners[it->second];
            if (rule.action == Action::tproxy && !l.transparent) {
                d.error(rw.listener, rw.path + ".listener",
                        "tproxy needs a transparent listener, but \"" + l.name +
                            "\" has transparent: false");
                continue;
            }
            if (rule.action == Action::redirect && !listener_is_wildcard(l)) {
                d.error(rw.listener, rw.path + ".listener",
                        "redirect sends connections to the incoming interface's address, so "
                        "listener \"" +
                            l.name + "\" must bind \"::\" or \"0.0.0.0\"");
                continue;
            }
        } else if (wants_listener) {
            continue;  // already reported
        }
        check_rule_protocols(m, rule, rw.path, rw.self, rw.udp, d);
        std::string why;
        rule_families(m, rule, &why);
        if (!why.empty()) {
            d.error(rw.self, rw.path, why);
            continue;
        }
        bool intercepts = rule.action != Action::bypass;
        auto everything = [](const std::vector<Cidr>& list) {
            if (list.empty()) {
                return true;
            }
            for (const Cidr& c : list) {
                if (is_any(c)) {
                    return true;
                }
            }
            return false;
        };
        if (intercepts && !m.allow_all && rule.interfaces.empty() && everything(rule.sources) &&
            everything(rule.destinations)) {
            Pos p = rule.destinations.empty() ? rw.self : rw.destinations;
            d.error(
                p, rw.path,
                "this rule intercepts traffic to every destination from every interface; restrict "
                "it with interfaces, sources or destinations, or set allow_all: true at the top "
                "level");
        }
    }
    resolve_bypass_protocols(m);
    if (m.listeners.empty() && m.rules.empty()) {
        d.error(w.root, "", "nothing to do: no listeners and no rules");
    }
}

}  // namespace tp::config

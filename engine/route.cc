// Route lookups (see route.h). Suffix lists are matched by looking up the name and each of its
// parent names in a hash set, so a long list costs one lookup per label, not per entry.
#include "engine/route.h"

#include <arpa/inet.h>

#include <cstring>

namespace tp::engine {

RouteTable::RouteTable(const plan::Listener& l) {
    for (const plan::Route& pr : l.routes) {
        R r;
        r.dst = pr.destinations;
        r.ports = pr.ports;
        r.exact.insert(pr.domains.begin(), pr.domains.end());
        r.suffix.insert(pr.suffixes.begin(), pr.suffixes.end());
        r.by_name = !pr.domains.empty() || !pr.suffixes.empty();
        wants_name_ = wants_name_ || r.by_name;
        routes_.push_back(std::move(r));
    }
}

namespace {
// Address bytes and port of `a`, with v4-mapped v6 seen as v4.
bool split(const plan::SockAddr& a, int& family, const uint8_t*& bytes, uint16_t& port) {
    static constexpr uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF};
    if (a.family() == AF_INET) {
        auto* s = reinterpret_cast<const sockaddr_in*>(a.get());
        family = AF_INET;
        bytes = reinterpret_cast<const uint8_t*>(&s->sin_addr);
        port = ntohs(s->sin_port);
        return true;
    }
    if (a.family() == AF_INET6) {
        auto* s = reinterpret_cast<const sockaddr_in6*>(a.get());
        bytes = s->sin6_addr.s6_addr;
        family = AF_INET6;
        if (std::memcmp(bytes, mapped, 12) == 0) {
            bytes += 12;
            family = AF_INET;
        }
        port = ntohs(s->sin6_port);
        return true;
    }
    return false;
}

bool in_prefix(const plan::Prefix& p, int family, const uint8_t* b) {
    if (p.family != family) {
        return false;
    }
    unsigned full = p.len / 8;
    if (std::memcmp(p.addr, b, full) != 0) {
        return false;
    }
    unsigned rest = p.len % 8;
    if (rest == 0) {
        return true;
    }
    uint8_t mask = static_cast<uint8_t>(0xFF << (8 - rest));
    return (p.addr[full] & mask) == (b[full] & mask);
}
}  // namespace

bool in_prefixes(const std::vector<plan::Prefix>& list, const plan::SockAddr& a) {
    int family = AF_UNSPEC;
    const uint8_t* bytes = nullptr;
    uint16_t port = 0;
    if (!split(a, family, bytes, port)) {
        return false;
    }
    for (const plan::Prefix& p : list) {
        if (in_prefix(p, family, bytes)) {
            return true;
        }
    }
    return false;
}

bool RouteTable::name_matches(const R& r, std::string_view name) {
    if (name.empty()) {
        return false;
    }
    // The hash sets take std::string keys: one small copy per probe, only for sniffed names.
    std::string key(name);
    if (r.exact.count(key) > 0) {
        return true;
    }
    if (r.suffix.empty()) {
        return false;
    }
    size_t pos = 0;
    while (true) {
        if (r.suffix.count(key.substr(pos)) > 0) {
            return true;
        }
        size_t dot = key.find('.', pos);
        if (dot == std::string::npos) {
            return false;
        }
        pos = dot + 1;
    }
}

int RouteTable::match(const plan::SockAddr& dst, bool sniffed, std::string_view name) const {
    int family = AF_UNSPEC;
    const uint8_t* bytes = nullptr;
    uint16_t port = 0;
    bool have_dst = split(dst, family, bytes, port);
    for (size_t i = 0; i < routes_.size(); ++i) {
        const R& r = routes_[i];
        if (!r.dst.empty()) {
            bool hit = false;
            for (const plan::Prefix& p : r.dst) {
                if (have_dst && in_prefix(p, family, bytes)) {
                    hit = true;
                    break;
                }
            }
            if (!hit) {
                continue;
            }
        }
        if (!r.ports.empty()) {
            bool hit = false;
            for (auto [lo, hi] : r.ports) {
                if (have_dst && port >= lo && port <= hi) {
                    hit = true;
                    break;
                }
            }
            if (!hit) {
                continue;
            }
        }
        if (r.by_name) {
            if (!sniffed) {
                return need_name;  // it may match once the name is known
            }
            if (!name_matches(r, name)) {
                continue;
            }
        }
        return static_cast<int>(i);
    }
    return no_match;
}

}  // namespace tp::engine

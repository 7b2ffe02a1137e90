// Route lookups (see route.h). Destination lists are searched as sorted intervals (a binary
// search: country-sized lists made a linear scan cost microseconds per connection). Suffix lists
// are matched by looking up the name and each of its parent names in a hash set, so a long list
// costs one lookup per label, not per entry.
#include "engine/route.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cstring>

namespace tp::engine {

namespace {
// The prefix as the interval [first, last] of `bits`-bit host-order addresses.
template <class T>
std::pair<T, T> interval(const uint8_t* addr, unsigned len, unsigned bits) {
    T a = 0;
    for (unsigned i = 0; i < bits / 8; ++i) {
        a = static_cast<T>(a << 8) | addr[i];
    }
    len = len < bits ? len : bits;
    const T host = len == 0 ? static_cast<T>(~T{0}) : static_cast<T>((T{1} << (bits - len)) - 1);
    return {static_cast<T>(a & ~host), static_cast<T>(a | host)};
}

// Sorts the intervals and merges overlapping and adjacent ones.
template <class T>
void normalize(std::vector<std::pair<T, T>>& v) {
    std::sort(v.begin(), v.end());
    size_t out = 0;
    for (size_t i = 0; i < v.size(); ++i) {
        if (out > 0 && (v[i].first <= v[out - 1].second || v[i].first - 1 == v[out - 1].second)) {
            v[out - 1].second = std::max(v[out - 1].second, v[i].second);
        } else {
            v[out++] = v[i];
        }
    }
    v.resize(out);
    v.shrink_to_fit();
}

template <class T>
bool contains(const std::vector<std::pair<T, T>>& v, T x) {
    auto it = std::upper_bound(v.begin(), v.end(), x,
                               [](T key, const std::pair<T, T>& r) { return key < r.first; });
    return it != v.begin() && x <= std::prev(it)->second;
}
}  // namespace

RouteTable::RouteTable(const plan::Listener& l) {
    for (const plan::Route& pr : l.routes) {
        R r;
        r.has_dst = !pr.destinations.empty();
        for (const plan::Prefix& p : pr.destinations) {
            if (p.family == AF_INET) {
                r.v4.push_back(interval<V4>(p.addr, p.len, 32));
            } else if (p.family == AF_INET6) {
                r.v6.push_back(interval<V6>(p.addr, p.len, 128));
            }
        }
        normalize(r.v4);
        normalize(r.v6);
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
    V4 v4 = 0;
    V6 v6 = 0;
    if (have_dst && family == AF_INET) {
        v4 = interval<V4>(bytes, 32, 32).first;
    } else if (have_dst) {
        v6 = interval<V6>(bytes, 128, 128).first;
    }
    for (size_t i = 0; i < routes_.size(); ++i) {
        const R& r = routes_[i];
        if (r.has_dst) {
            if (!have_dst) {
                continue;
            }
            bool hit = family == AF_INET ? contains(r.v4, v4) : contains(r.v6, v6);
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

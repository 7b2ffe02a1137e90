// Strict address and prefix parsing on top of inet_pton, and prefix-list merging.

#include "config/cidr.h"

#include <arpa/inet.h>

#include <algorithm>

namespace tp::config {

std::optional<IpAddr> parse_ip(std::string_view text) {
    if (text.empty() || text.size() > INET6_ADDRSTRLEN) {
        return std::nullopt;
    }
    std::string s(text);
    IpAddr a;
    if (s.find(':') == std::string::npos) {
        if (inet_pton(AF_INET, s.c_str(), a.bytes.data()) != 1) {
            return std::nullopt;
        }
        a.family = AF_INET;
        return a;
    }
    // inet_pton accepts a zone-less RFC 4291 text only; "%eth0" and brackets fail here.
    if (inet_pton(AF_INET6, s.c_str(), a.bytes.data()) != 1) {
        return std::nullopt;
    }
    a.family = AF_INET6;
    return a;
}

std::optional<Cidr> parse_cidr(std::string_view text, std::string& why) {
    auto slash = text.find('/');
    std::string_view addr_text = text.substr(0, slash);
    auto addr = parse_ip(addr_text);
    if (!addr) {
        // Appended piece by piece: g++ 12 -O3 warns falsely (-Wrestrict) on `"..." + string`.
        std::string msg(1, '"');
        msg += addr_text;
        msg += "\" is not an IPv4 or IPv6 address";
        why = std::move(msg);
        return std::nullopt;
    }
    int max = addr->family == AF_INET ? 32 : 128;
    int prefix = max;
    if (slash != std::string_view::npos) {
        std::string_view p = text.substr(slash + 1);
        bool digits = !p.empty() && p.size() <= 3 &&
                      std::all_of(p.begin(), p.end(), [](char c) { return c >= '0' && c <= '9'; });
        if (!digits || (p.size() > 1 && p[0] == '0')) {
            why = "prefix length \"" + std::string(p) + "\" is not a decimal number";
            return std::nullopt;
        }
        prefix = std::stoi(std::string(p));
        if (prefix > max) {
            why = "prefix length /" + std::to_string(prefix) + " is out of range for " +
                  (max == 32 ? "IPv4 (0-32)" : "IPv6 (0-128)");
            return std::nullopt;
        }
    }
    Cidr c{*addr, prefix};
    Cidr net = c;
    int bytes = max / 8;
    for (int i = 0; i < bytes; ++i) {
        int bits = std::clamp(prefix - i * 8, 0, 8);
        net.addr.bytes[i] &= static_cast<uint8_t>(0xff00 >> bits);
    }
    if (net.addr != c.addr) {
        why = std::string(text) + " has host bits set beyond /" + std::to_string(prefix) +
              "; did you mean " + format_cidr(net) + "?";
        return std::nullopt;
    }
    return c;
}

std::string format_ip(const IpAddr& addr) {
    char buf[INET6_ADDRSTRLEN];
    if (!inet_ntop(addr.family, addr.bytes.data(), buf, sizeof buf)) {
        return "?";
    }
    return buf;
}

std::string format_cidr(const Cidr& c) {
    return format_ip(c.addr) + '/' + std::to_string(c.prefix);
}

namespace {

bool contains(const Cidr& outer, const Cidr& inner) {
    if (outer.prefix > inner.prefix || outer.addr.family != inner.addr.family) {
        return false;
    }
    int full = outer.prefix / 8;
    if (!std::equal(outer.addr.bytes.begin(), outer.addr.bytes.begin() + full,
                    inner.addr.bytes.begin())) {
        return false;
    }
    int rest = outer.prefix % 8;
    if (rest == 0) {
        return true;
    }
    auto mask = static_cast<uint8_t>(0xff00 >> rest);
    return (outer.addr.bytes[full] & mask) == (inner.addr.bytes[full] & mask);
}

}  // namespace

std::vector<Cidr> merge_cidrs(std::vector<Cidr> list) {
    // Network order, shorter prefix first: a containing prefix always precedes what it contains.
    std::sort(list.begin(), list.end());
    std::vector<Cidr> out;
    out.reserve(list.size());
    for (const Cidr& c : list) {
        if (!out.empty() && contains(out.back(), c)) {
            continue;
        }
        out.push_back(c);
    }
    return out;
}

bool is_any(const Cidr& c) {
    return c.prefix == 0;
}

}  // namespace tp::config

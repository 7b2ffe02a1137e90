#pragma once
// IPv4/IPv6 addresses and prefixes: strict parsing (no host bits, no shorthand), formatting,
// and merging of prefix lists for interval sets.

#include <sys/socket.h>

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace tp::config {

struct IpAddr {
    int family = AF_UNSPEC;  // AF_INET (first 4 bytes used) or AF_INET6
    std::array<uint8_t, 16> bytes{};

    auto operator<=>(const IpAddr&) const = default;
};

struct Cidr {
    IpAddr addr;
    int prefix = 0;

    auto operator<=>(const Cidr&) const = default;
};

// Dotted-quad IPv4 or RFC 4291 IPv6 text; nothing else (no "1.2.3", no leading zeros).
std::optional<IpAddr> parse_ip(std::string_view text);
// ADDR/LEN, or a bare ADDR (a host prefix). On failure returns nullopt and sets `why`.
std::optional<Cidr> parse_cidr(std::string_view text, std::string& why);

std::string format_ip(const IpAddr& addr);
std::string format_cidr(const Cidr& cidr);

// Sorts, drops duplicates and prefixes contained in others. Input of one family.
std::vector<Cidr> merge_cidrs(std::vector<Cidr> list);

bool is_any(const Cidr& c);  // 0.0.0.0/0 or ::/0

}  // namespace tp::config

#pragma once
// What a rule set asks of the kernel, as data: one nftables batch for the table tpengine owns,
// plus the policy-routing entries. Produced by the generators (pure), consumed by apply/cleanup.

#include <cstdint>
#include <string>
#include <vector>

#include "config/cidr.h"

namespace tp::config {

// ip rule add fwmark MARK/MASK lookup TABLE priority PRIORITY  (one per family)
struct PolicyRule {
    int family = 0;  // AF_INET or AF_INET6
    uint32_t mark = 0;
    uint32_t mask = 0;
    uint32_t table = 0;
    uint32_t priority = 0;
};

// ip route add local default dev lo table TABLE  (one per family)
struct LocalRoute {
    int family = 0;  // AF_INET or AF_INET6
    uint32_t table = 0;
};

// A rule of the set as the UDP conntrack flush sees it (conntrack_flush.h): conntrack does not
// record input interfaces, so those are not part of it. Empty lists match anything.
struct UdpCatch {
    bool bypass = false;  // a bypass rule: entries it matches first are kept
    std::vector<Cidr> sources, destinations;
    std::vector<std::pair<uint16_t, uint16_t>> ports;  // destination port ranges
};

struct KernelSetup {
    std::string nft_table;  // name of the `inet` table tpengine owns
    std::string nft_batch;  // the whole transaction text; replaces the table in one go
    std::vector<PolicyRule> rules;
    std::vector<LocalRoute> routes;
    // The rules that act on UDP, in order: after the rules go in, conntrack entries of UDP
    // flows they intercept are deleted, so flows born before them do not keep old NAT state.
    std::vector<UdpCatch> udp_catches;
};

}  // namespace tp::config

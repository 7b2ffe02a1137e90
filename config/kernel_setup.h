#pragma once
// What a rule set asks of the kernel, as data: one nftables batch for the table tpengine owns,
// plus the policy-routing entries. Produced by the generators (pure), consumed by apply/cleanup.

#include <cstdint>
#include <string>
#include <vector>

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

struct KernelSetup {
    std::string nft_table;  // name of the `inet` table tpengine owns
    std::string nft_batch;  // the whole transaction text; replaces the table in one go
    std::vector<PolicyRule> rules;
    std::vector<LocalRoute> routes;
};

}  // namespace tp::config

// The sweep of tpengine's own kernel state, matched strictly so nothing foreign is touched.
#include "config/cleanup.h"

#include <sys/socket.h>

#include <vector>

namespace tp::config {

std::string SweepResult::summary() const {
    if (!removed_anything()) {
        return "nothing";
    }
    std::string s;
    auto add = [&](int n, const char* one, const char* many) {
        if (n == 0) {
            return;
        }
        if (!s.empty()) {
            s += ", ";
        }
        s += std::to_string(n) + " " + (n == 1 ? one : many);
    };
    add(tables, "nft table", "nft tables");
    add(rules, "ip rule", "ip rules");
    add(routes, "route", "routes");
    return s;
}

SweepResult sweep(NftContext& nft, Rtnl& rtnl, const KernelSetup& setup, bool include_table) {
    SweepResult result;
    if (include_table && !setup.nft_table.empty()) {
        bool deleted = false;
        std::string err = nft.delete_table(setup.nft_table, &deleted);
        if (!err.empty()) {
            result.errors += err + "\n";
        }
        result.tables += deleted ? 1 : 0;
    }
    for (int family : {AF_INET, AF_INET6}) {
        std::vector<RuleEntry> rules;
        NlError e = rtnl.list_rules(family, &rules);
        if (!e.ok()) {
            result.errors += e.message + "\n";
            continue;
        }
        for (const RuleEntry& r : rules) {
            if (!is_our_rule(r, setup)) {
                continue;
            }
            PolicyRule exact{r.family, r.fwmark, r.fwmask, r.table, r.priority};
            NlError d = rtnl.del_rule(exact);
            if (d.ok()) {
                ++result.rules;
            } else {
                result.errors += describe(exact) + ": " + d.message + "\n";
            }
        }
    }
    for (int family : {AF_INET, AF_INET6}) {
        std::vector<RouteEntry> routes;
        NlError e = rtnl.list_routes(family, &routes);
        if (!e.ok()) {
            result.errors += e.message + "\n";
            continue;
        }
        for (const RouteEntry& r : routes) {
            if (!is_our_route(r, setup, rtnl.loopback_index())) {
                continue;
            }
            NlError d = rtnl.del_route_entry(r);
            if (d.ok()) {
                ++result.routes;
            } else {
                result.errors += r.describe() + ": " + d.message + "\n";
            }
        }
    }
    return result;
}

}  // namespace tp::config

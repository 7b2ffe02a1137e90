// Policy rules and local routes from the model, and their `ip` command text.

#include "config/route_gen.h"

#include <sys/socket.h>

#include <cstdio>

#include "config/load.h"
#include "config/schema.h"

namespace tp::config {

void generate_routes(const Model& m, KernelSetup& setup) {
    bool v4 = false, v6 = false;
    for (const Rule& r : m.rules) {
        if (r.action != Action::tproxy) {
            continue;
        }
        std::string why;
        RuleFamilies f = rule_families(m, r, &why);
        v4 = v4 || f.v4;
        v6 = v6 || f.v6;
    }
    for (int family : {AF_INET, AF_INET6}) {
        if ((family == AF_INET && !v4) || (family == AF_INET6 && !v6)) {
            continue;
        }
        setup.routes.push_back({family, m.routing.table});
        setup.rules.push_back(
            {family, m.routing.mark, m.routing.mask, m.routing.table, m.routing.priority});
    }
}

std::string routes_text(const KernelSetup& setup) {
    std::string out;
    char buf[160];
    // Routes first: a rule pointing at an empty table would briefly blackhole marked packets.
    for (const LocalRoute& r : setup.routes) {
        std::snprintf(buf, sizeof buf, "ip %s route add local %s dev lo table %u\n",
                      r.family == AF_INET ? "-4" : "-6", r.family == AF_INET ? "0.0.0.0/0" : "::/0",
                      r.table);
        out += buf;
    }
    for (const PolicyRule& r : setup.rules) {
        std::snprintf(buf, sizeof buf, "ip %s rule add fwmark 0x%x/0x%x lookup %u priority %u\n",
                      r.family == AF_INET ? "-4" : "-6", r.mark, r.mask, r.table, r.priority);
        out += buf;
    }
    return out;
}

}  // namespace tp::config

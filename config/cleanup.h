#pragma once
// The sweep: removes what a tpengine instance described by a KernelSetup leaves in the
// kernel (its nft table by name, its ip rules, its local default routes) and nothing else.
// Used at start (state of a killed instance), at stop, and by `tpengine --cleanup`.

#include <string>

#include "config/kernel_setup.h"
#include "config/nft_apply.h"
#include "config/route_apply.h"

namespace tp::config {

struct SweepResult {
    int tables = 0;  // entries actually removed
    int rules = 0;
    int routes = 0;
    std::string errors;  // one line per thing that could not be removed; "" = all fine

    bool ok() const { return errors.empty(); }
    bool removed_anything() const { return tables + rules + routes > 0; }
    std::string summary() const;  // "table inet T, 2 ip rules, 2 routes" or "nothing"
};

// Ours: `table inet setup.nft_table`; ip rules with our priority AND table AND fwmark;
// routes in our table that are `local default dev lo`. The table goes first (traffic stops
// being marked), then the rules, then the routes.
SweepResult sweep(NftContext& nft, Rtnl& rtnl, const KernelSetup& setup, bool include_table = true);

}  // namespace tp::config

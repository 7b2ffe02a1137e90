#pragma once
// Preflight for `tpengine --check`: can this kernel, with these privileges, run this rule set?
// Touches nothing: nft runs in check mode, sockets are opened, bound and closed at once.

#include <string>
#include <vector>

#include "config/load.h"

namespace tp::config {

struct PreflightReport {
    std::vector<std::string> failures;  // one line each: what is wrong and how to fix it
    std::vector<std::string> warnings;  // worth knowing, not fatal
    bool ok() const { return failures.empty(); }
};

// `with_rules` false (--no-rules) skips everything about nftables and policy routing.
PreflightReport preflight(const LoadedConfig& config, bool with_rules = true);

}  // namespace tp::config

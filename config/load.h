#pragma once
// Loading a rule set: YAML file -> validated model -> the engine's plan + the kernel set-up.
// Errors never throw out of here: they come back as diagnostics with file:line:column.

#include <string>
#include <variant>
#include <vector>

#include "config/kernel_setup.h"
#include "config/observe.h"
#include "config/plan.h"

namespace tp::config {

struct Diagnostic {
    std::string file;
    int line = 0;         // 1-based; 0 when the error is not tied to a place
    int column = 0;       // 1-based
    std::string key;      // dotted path, e.g. "rules[2].ports[1]"
    std::string message;  // why

    // "FILE:LINE:COLUMN: KEY: MESSAGE"
    std::string format() const;
};

struct LoadedConfig {
    plan::Plan plan;                    // listeners, workers, bypass mark: for engine::Engine
    KernelSetup kernel;                 // nft batch + policy routing: for apply
    bool uses_tproxy = false;           // some rule has action tproxy (needs nft tproxy+socket)
    bool intercepts_forwarded = false;  // some rule catches forwarded traffic (needs ip_forward)
    bool capture_local = false;
    // Input interfaces the tproxy rules name (preflight's src_valid_mark and rp_filter checks);
    // tproxy_any_interface when some tproxy rule names none.
    std::vector<std::string> tproxy_interfaces;
    bool tproxy_any_interface = false;
    std::vector<std::string> interfaces;  // every input interface a rule names (preflight)
    std::string user;   // `user:`: name or numeric id to switch to after start-up; "" = stay
    std::string group;  // `group:`; "" = the user's primary group
    Observe observe;    // metrics:, control:, log: (for the front end)
};

using LoadResult = std::variant<LoadedConfig, std::vector<Diagnostic>>;

LoadResult load_config_file(const std::string& path);
// Same, from text; `name` stands for the file in diagnostics.
LoadResult load_config_text(const std::string& text, const std::string& name);

// The policy-routing entries as `ip` commands, one a line (for --dry-run and .routes goldens).
std::string routes_text(const KernelSetup& setup);

}  // namespace tp::config

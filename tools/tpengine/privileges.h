#pragma once
// Least privilege after start-up: keep only the capabilities reload and transparent sockets
// need, drop the rest from every set (bounding included, when allowed), and switch to the
// `user:`/`group:` of the rule set. Raw capget/capset/prctl: no libcap needed.
//
// Capabilities are per thread and inherited at thread creation, so this runs before the
// engine starts its workers: every thread then holds the reduced set.

#include <cstdint>
#include <string>

#include "config/plan.h"

namespace tp::tools {

struct PrivilegeRequest {
    uint64_t keep = 0;  // capability bits (1 << CAP_x) to keep
    std::string user;   // name or numeric id; "" = stay
    std::string group;  // name or numeric id; "" = the user's primary group
};

// The capabilities a plan needs at run time. `reloadable`: a rule set whose reload may
// replace nftables and policy routing and add transparent listeners (CAP_NET_ADMIN and
// CAP_NET_RAW always). CAP_NET_BIND_SERVICE when a listener port is below 1024 or a listener
// binds upstream sockets to the client's port (which may be below 1024), or is a transparent
// UDP listener (reply sockets bind the original destination's port).
uint64_t needed_capabilities(const plan::Plan& plan, bool reloadable);

// "cap_net_admin,cap_net_raw" (for log lines and errors).
std::string capability_names(uint64_t caps);

// Returns "" on success, else why it failed (nothing is half-done that matters: the caller
// exits).
std::string drop_privileges(const PrivilegeRequest& req);

}  // namespace tp::tools

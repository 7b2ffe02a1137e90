#pragma once
// The validated rule set: what the YAML file says, with every value checked and typed.
// Produced by the schema reader (schema.cc), consumed by the generators and by compile.cc.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "config/cidr.h"
#include "config/observe.h"
#include "config/plan.h"

namespace tp::config {

enum class Action { tproxy, redirect, dnat, bypass };
enum class FailMode { open, closed };

struct PortRange {
    uint16_t low = 0;
    uint16_t high = 0;
};

// A dnat target: address and optional port (0 = keep the original port).
struct Endpoint {
    IpAddr addr;
    uint16_t port = 0;
};

struct Rule {
    std::string name;
    std::vector<std::string> interfaces;  // iifname; empty = any
    std::vector<Cidr> sources;            // both families, merged; empty = any
    std::vector<Cidr> destinations;
    std::vector<PortRange> ports;  // sorted, merged; empty = any
    Action action = Action::bypass;
    int listener = -1;  // index into Model::listeners (tproxy, redirect)
    Endpoint to;        // dnat
    // kProtoTcp | kProtoUdp (udp_schema.h); resolved by validate_model when not written.
    uint8_t protocols = 0;
    bool block_quic = false;  // drop UDP/443 of this rule's match (browsers fall back to TCP)
};

struct Routing {
    uint32_t mark = 0x1;
    uint32_t mask = 0x1;
    uint32_t table = 100;
    uint32_t priority = 100;
    // Not 0xff: 0xff & 0x1 == 0x1 would send tpengine's own upstream traffic back to lo.
    uint32_t bypass_mark = 0xfe;
    // SO_MARK of UDP reply sockets (plan::Plan::udp_reply_mark); its bits under `mask` must
    // not equal `mark` either.
    uint32_t reply_mark = 0xfc;
};

struct Model {
    unsigned workers = 0;  // 0 = auto
    Routing routing;
    std::string nft_table = "tpengine";
    FailMode fail = FailMode::open;
    bool capture_local = false;
    bool allow_all = false;
    uint32_t drain_timeout_ms = 10'000;
    bool log_connections = false;
    uint64_t memory_limit = 0;  // bytes; 0 = the memory cgroup's limit, if any
    std::string user;           // run as this user after start-up; "" = stay
    std::string group;          // and this group; "" = the user's own group
    Observe observe;            // metrics:, control:, log:
    std::vector<plan::Listener> listeners;
    std::vector<Rule> rules;
};

}  // namespace tp::config

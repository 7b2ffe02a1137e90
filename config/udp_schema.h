#pragma once
// The UDP parts of the rule set (issue 9): a listener's `protocol` and `udp:` keys, a rule's
// `protocol` and `block_quic`, and the cross-key checks between rules and the listeners they
// use. schema.cc and validate.cc call in here so the UDP logic lives in one place.

#include <cstdint>
#include <string>

#include "config/diag.h"
#include "config/model.h"
#include "config/yaml_tree.h"

namespace tp::config {

// Bits of Rule::protocols.
constexpr uint8_t kProtoTcp = 1;
constexpr uint8_t kProtoUdp = 2;

uint8_t protocol_bits(plan::Protocol p);
// "tcp", "udp" or "both".
const char* protocol_name(uint8_t bits);

// `protocol: tcp | udp | both`; reports and returns 0 when invalid.
uint8_t read_protocol(const YamlNode& n, const std::string& path, Diags& d);

// A listener's `udp:` map into `udp` (keys and ranges checked here).
void read_listener_udp(const YamlNode& n, const std::string& path, plan::Udp& udp, Diags& d);

// Where the UDP keys of a rule and a listener were written.
struct UdpRuleWhere {
    Pos protocol, block_quic;
};
struct UdpListenerWhere {
    Pos protocol, udp, fast_open;
    bool udp_set = false, fast_open_set = false;
};

// Listener-level checks: `udp:` or fast_open where they do not apply.
void check_listener_udp(const plan::Listener& l, const std::string& path, const UdpListenerWhere& w,
                        Diags& d);

// Resolves rule.protocols for a rule with a resolved listener (or none: dnat, bypass) and
// checks it against what the listener serves. Bypass rules are resolved by
// resolve_bypass_protocols once every other rule is known.
void check_rule_protocols(const Model& m, Rule& rule, const std::string& path, Pos self,
                          const UdpRuleWhere& w, Diags& d);
void resolve_bypass_protocols(Model& m);

}  // namespace tp::config

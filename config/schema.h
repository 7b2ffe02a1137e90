#pragma once
// Reading the YAML tree into the validated model: every key, type and value is checked here
// (schema.cc), then the cross-key checks run (validate.cc). Nothing reaches rule text unchecked.

#include <optional>
#include <string>
#include <vector>

#include "config/diag.h"
#include "config/model.h"
#include "config/udp_schema.h"
#include "config/yaml_tree.h"

namespace tp::config {

// Where things were written, for the cross-key checks' messages.
struct ListenerWhere {
    std::string path;  // "listeners[1]"
    Pos self, name, address, port, transparent;
    UdpListenerWhere udp;
};

struct RuleWhere {
    std::string path;  // "rules[2]"
    Pos self, name, listener, to, action, sources, destinations;
    std::string listener_name;
    UdpRuleWhere udp;
};

struct ModelWhere {
    Pos root, mark, mask, bypass_mark, reply_mark;
    bool mark_set = false, mask_set = false, bypass_set = false, reply_set = false;
    std::vector<ListenerWhere> listeners;
    std::vector<RuleWhere> rules;
};

// `base_dir` resolves relative `@file` lists. Returns nullopt when anything was reported.
std::optional<Model> read_model(const YamlNode& root, const std::string& base_dir, Diags& diags);

// Cross-key checks (names, references, families, ports, marks, allow_all). Resolves
// Rule::listener from `where`. Reports to `diags`.
void validate_model(Model& model, const ModelWhere& where, Diags& diags);

struct RuleFamilies {
    bool v4 = false;
    bool v6 = false;
};
// The address families a rule acts on; sets `why` (and returns none) when it cannot act.
RuleFamilies rule_families(const Model& model, const Rule& rule, std::string* why);
// The families a listener accepts connections for.
RuleFamilies listener_families(const plan::Listener& listener);
bool listener_is_wildcard(const plan::Listener& listener);

}  // namespace tp::config

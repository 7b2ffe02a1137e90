#pragma once
// Preflight that looks beyond tpengine's own table: the rest of the firewall (other tables'
// input chains that would drop intercepted packets, masquerade that hides the client), the
// interfaces the rules name, other sockets on a listener's port, and careless limits. Run by
// --check and at start; touches nothing.

#include <cstdint>
#include <string>
#include <vector>

#include "config/load.h"
#include "config/preflight.h"

namespace tp::config {

// Everything below: warnings and failures appended to `r`. The same with and without
// `with_rules` (--no-rules): a firewall that includes the rules has the same surroundings.
void check_environment(const LoadedConfig& config, bool with_rules, PreflightReport& r);

// bind() of a TCP socket as the engine's listener `l` would make it, with or without
// SO_REUSEPORT; 0 or the errno of the first call that failed.
int probe_bind(const plan::Listener& l, bool reuseport);

// --- pure parts, on `nft list ruleset` text (tested without a kernel) ---

// Base chains at the input hook of tables other than `own_table` that may drop packets
// intercepted with `mark`/`mask`: policy drop, or a drop/reject reachable through jumps, and no
// rule accepting the mark. One message each, naming the chain and the rule, with the fix.
std::vector<std::string> input_drop_warnings(const std::string& ruleset,
                                             const std::string& own_table, uint32_t mark,
                                             uint32_t mask);

// masquerade/snat rules in postrouting nat chains of tables other than `own_table`.
std::vector<std::string> source_nat_rules(const std::string& ruleset, const std::string& own_table);

}  // namespace tp::config

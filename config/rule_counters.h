#pragma once
// The per-rule counters the generator puts in tpengine's table (`counter rule-NAME`,
// `counter drop-NAME`), read back from the kernel as libnftables JSON. Used by the control
// thread for metrics and `ctl status`; never by workers.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

struct nft_ctx;

namespace tp::config {

struct RuleCounterValue {
    std::string name;  // the rule's name; "NAME/drop" for a fail: closed drop counter
    uint64_t packets = 0;
    uint64_t bytes = 0;
};

// Picks the named counters of `table inet TABLE` out of `nft -j list counters` output (pure;
// tested). Counters that are not tpengine's rule-/drop- counters are skipped.
std::vector<RuleCounterValue> parse_rule_counters_json(const std::string& json,
                                                       const std::string& table);

// Its own libnftables context, so the control thread never shares one with reloads.
class RuleCounterReader {
  public:
    static std::unique_ptr<RuleCounterReader> create();
    ~RuleCounterReader();
    RuleCounterReader(const RuleCounterReader&) = delete;
    RuleCounterReader& operator=(const RuleCounterReader&) = delete;
    // Empty when the table is not there or cannot be read.
    std::vector<RuleCounterValue> read(const std::string& table);

  private:
    RuleCounterReader() = default;
    nft_ctx* ctx_ = nullptr;
};

}  // namespace tp::config

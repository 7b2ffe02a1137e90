// Reads the rule counters with `list counters table inet T` in JSON and scans the counter
// objects (flat: name, packets, bytes) without a JSON library.
#include "config/rule_counters.h"

#include <nftables/libnftables.h>

#include <cstdlib>

namespace tp::config {
namespace {

// The value of "key": in `obj` as a string (quoted) or a number; "" when absent.
std::string field(const std::string& obj, const std::string& key) {
    std::string pat = "\"" + key + "\":";
    size_t p = obj.find(pat);
    if (p == std::string::npos) {
        return {};
    }
    p += pat.size();
    while (p < obj.size() && obj[p] == ' ') {
        ++p;
    }
    if (p < obj.size() && obj[p] == '"') {
        size_t e = p + 1;
        std::string out;
        for (; e < obj.size() && obj[e] != '"'; ++e) {
            if (obj[e] == '\\' && e + 1 < obj.size()) {
                ++e;
            }
            out += obj[e];
        }
        return out;
    }
    size_t e = p;
    while (e < obj.size() && obj[e] >= '0' && obj[e] <= '9') {
        ++e;
    }
    return obj.substr(p, e - p);
}

}  // namespace

std::vector<RuleCounterValue> parse_rule_counters_json(const std::string& json,
                                                       const std::string& table) {
    std::vector<RuleCounterValue> out;
    const std::string key = "\"counter\":";
    for (size_t p = json.find(key); p != std::string::npos; p = json.find(key, p + 1)) {
        size_t open = json.find('{', p);
        size_t close = open == std::string::npos ? open : json.find('}', open);
        if (close == std::string::npos) {
            break;
        }
        std::string obj = json.substr(open, close - open + 1);
        if (field(obj, "family") != "inet" || field(obj, "table") != table) {
            continue;
        }
        std::string name = field(obj, "name");
        RuleCounterValue v;
        if (name.rfind("rule-", 0) == 0) {
            v.name = name.substr(5);
        } else if (name.rfind("drop-", 0) == 0) {
            v.name = name.substr(5) + "/drop";
        } else {
            continue;
        }
        v.packets = std::strtoull(field(obj, "packets").c_str(), nullptr, 10);
        v.bytes = std::strtoull(field(obj, "bytes").c_str(), nullptr, 10);
        out.push_back(std::move(v));
    }
    return out;
}

std::unique_ptr<RuleCounterReader> RuleCounterReader::create() {
    std::unique_ptr<RuleCounterReader> r(new RuleCounterReader());
    r->ctx_ = nft_ctx_new(NFT_CTX_DEFAULT);
    if (r->ctx_ == nullptr) {
        return nullptr;
    }
    nft_ctx_output_set_flags(r->ctx_, NFT_CTX_OUTPUT_JSON);
    if (nft_ctx_buffer_output(r->ctx_) != 0 || nft_ctx_buffer_error(r->ctx_) != 0) {
        return nullptr;
    }
    return r;
}

RuleCounterReader::~RuleCounterReader() {
    if (ctx_ != nullptr) {
        nft_ctx_free(ctx_);
    }
}

std::vector<RuleCounterValue> RuleCounterReader::read(const std::string& table) {
    std::string cmd = "list counters table inet " + table;
    int rc = nft_run_cmd_from_buffer(ctx_, cmd.c_str());
    const char* out = nft_ctx_get_output_buffer(ctx_);  // reading also resets the buffers
    nft_ctx_get_error_buffer(ctx_);
    if (rc != 0 || out == nullptr) {
        return {};
    }
    return parse_rule_counters_json(out, table);
}

}  // namespace tp::config

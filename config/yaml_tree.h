#pragma once
// A small YAML document tree built from yaml-cpp's parser events. Unlike YAML::Node it keeps
// every map entry (so duplicate keys can be reported), whether a scalar was quoted, and the
// 1-based position of every key and value. Aliases share the anchored node.

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "config/diag.h"

namespace tp::config {

struct YamlNode {
    enum class Kind { null, scalar, sequence, map };
    Kind kind = Kind::null;
    Pos pos;
    bool quoted = false;  // scalar written in quotes (or as a block scalar)
    // Nodes in this subtree with every alias expanded (saturating): bounds the work any walk
    // over the tree can do, whatever aliases it contains.
    uint64_t weight = 1;
    std::string value;                                   // scalar text
    std::vector<std::shared_ptr<const YamlNode>> items;  // sequence
    // map entries in file order, duplicates kept
    std::vector<std::pair<std::shared_ptr<const YamlNode>, std::shared_ptr<const YamlNode>>>
        entries;

    bool is_scalar() const { return kind == Kind::scalar; }
    bool is_null() const { return kind == Kind::null; }
    bool is_sequence() const { return kind == Kind::sequence; }
    bool is_map() const { return kind == Kind::map; }
    // First value for `key` in a map, or nullptr.
    const YamlNode* find(std::string_view key) const;
};

// Largest rule-set or `@file` list accepted.
inline constexpr size_t kMaxFileBytes = 16u << 20;
// Largest document counted with aliases expanded (an alias "billion laughs" stops here).
inline constexpr uint64_t kMaxExpandedNodes = 4'000'000;

// Checks the raw bytes (size, BOM, UTF-8, tabs, control characters) of `text`; reports to
// `diags` under `file` and returns false on any problem.
bool check_text(std::string_view text, const std::string& file, Diags& diags);

// Parses one YAML document. Returns nullptr (with diagnostics) on syntax errors, several
// documents, tags or other unsupported constructs. An empty document gives a null node.
std::shared_ptr<const YamlNode> parse_yaml(const std::string& text, Diags& diags);

}  // namespace tp::config

#pragma once
// Reading single YAML values strictly: numbers, booleans, strings, names, durations, lists,
// and maps with an allow-list of keys. Each reader reports its own error (with the value's
// position and key path) and returns nullopt, so callers just move on.

#include <cstdint>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "config/diag.h"
#include "config/yaml_tree.h"

namespace tp::config {

std::string join(const std::string& path, std::string_view key);  // "a" + "b" -> "a.b"
std::string index(const std::string& path, size_t i);             // "a", 2 -> "a[2]"
bool all_of(std::string_view s, bool (*pred)(char));
bool is_digit(char c);
bool is_name_char(char c);  // A-Z a-z 0-9 _ . -
const char* kind_name(const YamlNode& n);

class ValueReader {
  public:
    explicit ValueReader(Diags& diags) : d_(diags) {}

  protected:
    void err(const YamlNode& n, const std::string& path, std::string msg);

    // Reports unknown and duplicate keys; returns false if `n` is not a map.
    bool check_map(const YamlNode& n, const std::string& path,
                   std::initializer_list<std::string_view> allowed);
    // Plain decimal (or 0x hex when `hex_ok`) in [min, max]; `what` names it in messages.
    std::optional<uint64_t> integer(const YamlNode& n, const std::string& path, uint64_t min,
                                    uint64_t max, bool hex_ok, const char* what);
    std::optional<bool> boolean(const YamlNode& n, const std::string& path);
    // A non-empty scalar; plain `no`, `yes`, `null`... are refused.
    std::optional<std::string> string(const YamlNode& n, const std::string& path);
    std::optional<std::string> choice(const YamlNode& n, const std::string& path,
                                      std::initializer_list<std::string_view> choices);
    std::optional<std::string> name(const YamlNode& n, const std::string& path, size_t max);
    // config/duration.h's grammar: 5s, 500ms, 5m, 1h; more than 0 and at most 24h; with
    // `none_ok`, `none` or `0` = no timeout (0). In milliseconds.
    std::optional<uint32_t> duration(const YamlNode& n, const std::string& path,
                                     bool none_ok = false);
    // A list, or a single scalar taken as a one-item list.
    std::vector<const YamlNode*> list(const YamlNode& n, const std::string& path);
    // The key path of item `i` of what list() returned for `n`.
    std::string item_path(const YamlNode& n, const std::string& path, size_t i);

    Diags& d_;
};

}  // namespace tp::config

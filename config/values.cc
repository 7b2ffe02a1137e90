// Strict readers for single YAML values (see values.h).

#include "config/values.h"

#include "config/duration.h"

#include <algorithm>
#include <array>

namespace tp::config {

using Kind = YamlNode::Kind;

std::string join(const std::string& path, std::string_view key) {
    return path.empty() ? std::string(key) : path + "." + std::string(key);
}
std::string index(const std::string& path, size_t i) {
    return path + "[" + std::to_string(i) + "]";
}
bool all_of(std::string_view s, bool (*pred)(char)) {
    return std::all_of(s.begin(), s.end(), pred);
}
bool is_digit(char c) {
    return c >= '0' && c <= '9';
}
static bool is_hex(char c) {
    return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}
bool is_name_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || is_digit(c) || c == '_' ||
           c == '.' || c == '-';
}
// Plain scalars YAML 1.1 reads as booleans or null (the "Norway problem").
static bool is_ambiguous_plain(std::string_view v) {
    static constexpr std::array<std::string_view, 26> words = {
        "y",  "Y",    "yes",  "Yes",  "YES",   "n",     "N",     "no", "No",
        "NO", "true", "True", "TRUE", "false", "False", "FALSE", "on", "On",
        "ON", "off",  "Off",  "OFF",  "null",  "Null",  "NULL",  "~"};
    return std::find(words.begin(), words.end(), v) != words.end();
}
const char* kind_name(const YamlNode& n) {
    switch (n.kind) {
        case Kind::null:
            return "nothing";
        case Kind::scalar:
            return "a single value";
        case Kind::sequence:
            return "a list";
        case Kind::map:
            return "a map";
    }
    return "?";
}

void ValueReader::err(const YamlNode& n, const std::string& path, std::string msg) {
    d_.error(n.pos, path, std::move(msg));
}

// Reports unknown and duplicate keys; returns false if `n` is not a map.
bool ValueReader::check_map(const YamlNode& n, const std::string& path,
                            std::initializer_list<std::string_view> allowed) {
    if (!n.is_map()) {
        err(n, path, std::string("expected a map of keys, got ") + kind_name(n));
        return false;
    }
    for (size_t i = 0; i < n.entries.size(); ++i) {
        const YamlNode& k = *n.entries[i].first;
        if (!k.is_scalar()) {
            err(k, path, "map keys must be plain names");
            continue;
        }
        std::string key_path = join(path, k.value);
        if (std::find(allowed.begin(), allowed.end(), k.value) == allowed.end()) {
            std::string list;
            for (auto a : allowed) {
                list += (list.empty() ? "" : ", ") + std::string(a);
            }
            err(k, key_path, "unknown key \"" + k.value + "\" (allowed here: " + list + ")");
            continue;
        }
        for (size_t j = 0; j < i; ++j) {
            const YamlNode& prev = *n.entries[j].first;
            if (prev.is_scalar() && prev.value == k.value) {
                err(k, key_path,
                    "duplicate key \"" + k.value + "\" (first given at line " +
                        std::to_string(prev.pos.line) + ")");
                break;
            }
        }
    }
    return true;
}

std::optional<uint64_t> ValueReader::integer(const YamlNode& n, const std::string& path,
                                             uint64_t min, uint64_t max, bool hex_ok,
                                             const char* what) {
    std::string range = std::to_string(min) + "-" + std::to_string(max);
    if (!n.is_scalar()) {
        err(n, path, std::string("expected ") + what + ", got " + kind_name(n));
        return std::nullopt;
    }
    const std::string& v = n.value;
    if (n.quoted) {
        err(n, path,
            "expected " + std::string(what) + ", not a quoted string; write " + v +
                " without quotes");
        return std::nullopt;
    }
    uint64_t value = 0;
    if (hex_ok && v.size() > 2 && v[0] == '0' && (v[1] == 'x' || v[1] == 'X')) {
        std::string_view digits(v.data() + 2, v.size() - 2);
        if (digits.size() > 8 || !all_of(digits, is_hex)) {
            err(n, path, "\"" + v + "\" is not a 32-bit hexadecimal number");
            return std::nullopt;
        }
        value = std::stoull(std::string(digits), nullptr, 16);
    } else {
        if (v.empty() || v.size() > 10 || !all_of(v, is_digit)) {
            err(n, path,
                "\"" + v + "\" is not a " + (hex_ok ? "decimal or 0x-hex" : "decimal") +
                    " number (" + what + ")");
            return std::nullopt;
        }
        if (v.size() > 1 && v[0] == '0') {
            err(n, path,
                "\"" + v + "\" has a leading zero (YAML 1.1 would read it as octal); write " +
                    "it without");
            return std::nullopt;
        }
        value = std::stoull(v);
    }
    if (value < min || value > max) {
        err(n, path, v + " is out of range for " + what + " (" + range + ")");
        return std::nullopt;
    }
    return value;
}

std::optional<bool> ValueReader::boolean(const YamlNode& n, const std::string& path) {
    if (n.is_scalar() && !n.quoted && (n.value == "true" || n.value == "false")) {
        return n.value == "true";
    }
    if (n.is_scalar() && n.quoted) {
        err(n, path, "expected true or false, not a quoted string");
    } else if (n.is_scalar()) {
        err(n, path, "\"" + n.value + "\" is not a boolean here; write true or false");
    } else {
        err(n, path, std::string("expected true or false, got ") + kind_name(n));
    }
    return std::nullopt;
}

std::optional<std::string> ValueReader::string(const YamlNode& n, const std::string& path) {
    if (!n.is_scalar()) {
        err(n, path, std::string("expected a string, got ") + kind_name(n));
        return std::nullopt;
    }
    if (!n.quoted && is_ambiguous_plain(n.value)) {
        err(n, path,
            "plain " + n.value + " reads as a boolean or null in YAML; quote it (\"" + n.value +
                "\") if you mean the text");
        return std::nullopt;
    }
    if (n.value.empty()) {
        err(n, path, "empty string");
        return std::nullopt;
    }
    return n.value;
}

// One of `choices`.
std::optional<std::string> ValueReader::choice(const YamlNode& n, const std::string& path,
                                               std::initializer_list<std::string_view> choices) {
    auto s = string(n, path);
    if (!s) {
        return std::nullopt;
    }
    std::string list;
    for (auto c : choices) {
        if (c == *s) {
            return s;
        }
        list += (list.empty() ? "" : " | ") + std::string(c);
    }
    err(n, path, "\"" + *s + "\" is not one of: " + list);
    return std::nullopt;
}

std::optional<std::string> ValueReader::name(const YamlNode& n, const std::string& path,
                                             size_t max) {
    auto s = string(n, path);
    if (!s) {
        return std::nullopt;
    }
    if (s->size() > max || !all_of(*s, is_name_char)) {
        err(n, path,
            "name \"" + *s + "\" may use only A-Z a-z 0-9 _ . - and at most " +
                std::to_string(max) + " characters");
        return std::nullopt;
    }
    return s;
}

// 5s, 500ms, 5m, 1h; more than 0 and at most 24h.
std::optional<uint32_t> ValueReader::duration(const YamlNode& n, const std::string& path,
                                              bool none_ok) {
    if (!n.is_scalar()) {
        err(n, path, std::string("expected a duration such as 5s, got ") + kind_name(n));
        return std::nullopt;
    }
    std::string why;
    auto ms = parse_duration(n.value, none_ok, &why);
    if (!ms) {
        err(n, path, why);
    }
    return ms;
}

// A list, or a single scalar taken as a one-item list.
std::vector<const YamlNode*> ValueReader::list(const YamlNode& n, const std::string& path) {
    std::vector<const YamlNode*> out;
    if (n.is_sequence()) {
        for (const auto& item : n.items) {
            out.push_back(item.get());
        }
    } else if (n.is_scalar()) {
        out.push_back(&n);
    } else {
        err(n, path, std::string("expected a list, got ") + kind_name(n));
    }
    return out;
}
std::string ValueReader::item_path(const YamlNode& n, const std::string& path, size_t i) {
    return n.is_sequence() ? index(path, i) : path;
}

}  // namespace tp::config

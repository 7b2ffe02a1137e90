// Parsing durations (see duration.h): digits only, so nan, inf, 1e9, 0x10 and -1s never pass.

#include "config/duration.h"

namespace tp::config {

std::optional<uint32_t> parse_duration(std::string_view v, bool none_ok, std::string* why) {
    const char* none_hint = none_ok ? ", or none for no timeout" : "";
    if (none_ok && (v == "none" || v == "0")) {
        return 0;
    }
    size_t digits = 0;
    while (digits < v.size() && v[digits] >= '0' && v[digits] <= '9') {
        ++digits;
    }
    std::string_view unit = v.substr(digits);
    uint64_t scale = unit == "ms"  ? 1
                     : unit == "s" ? 1000
                     : unit == "m" ? 60'000
                     : unit == "h" ? 3'600'000
                                   : 0;
    if (digits == 0 || digits > 9 || scale == 0) {
        *why = "\"" + std::string(v) +
               "\" is not a duration: write a whole number with a unit, e.g. 500ms, 5s, 5m, 1h" +
               none_hint;
        return std::nullopt;
    }
    uint64_t n = 0;
    for (size_t i = 0; i < digits; ++i) {
        n = n * 10 + static_cast<uint64_t>(v[i] - '0');
    }
    uint64_t ms = n * scale;
    if (ms == 0) {
        *why = std::string("duration must be more than 0") +
               (none_ok ? "; write none for no timeout" : "");
        return std::nullopt;
    }
    if (ms > kMaxDurationMs) {
        *why = "duration " + std::string(v) + " is longer than 24h";
        return std::nullopt;
    }
    return static_cast<uint32_t>(ms);
}

}  // namespace tp::config

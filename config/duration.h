#pragma once
// The one duration grammar of tpengine, for the YAML file and every command-line option: a
// whole number and a unit (500ms, 5s, 5m, 1h), more than 0 and at most 24h. Where a timeout
// can be switched off, `none` (or a bare `0`) means "no timeout". Pure; tested on its own.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace tp::config {

inline constexpr uint32_t kMaxDurationMs = 24u * 3'600'000u;

// Milliseconds (0 for `none`/`0` when `none_ok`), or nullopt with *why set to the reason.
std::optional<uint32_t> parse_duration(std::string_view text, bool none_ok, std::string* why);

}  // namespace tp::config
